import { Queue, type RedisOptions } from 'bullmq';
import { withRedisTimeout } from './infra-errors.js';

/** What a webhook send job carries: the endpoint whose PENDING deliveries it sends, in order. */
export interface WebhookJobData {
  endpointId: string;
}

export const WEBHOOK_QUEUE_NAME = 'webhooks';

/**
 * One job per endpoint (BullMQ refuses `:` in custom ids): while one is waiting, delayed or
 * running, adding another is a no-op, so many status changes at once make one job, and an
 * endpoint's deliveries are never sent by two jobs at once.
 */
export function webhookJobId(endpointId: string): string {
  return `webhook-${endpointId}`;
}

/** Queues the sending of endpoints' deliveries (outbound event webhooks, spec §6). */
export interface WebhookQueue {
  /**
   * Makes sure each endpoint has a send job, due in `delayMs` (default now). An endpoint that has
   * one already keeps it. Bounded by `REDIS_COMMAND_TIMEOUT_MS`; a lost call is repaired by the
   * webhook sweeper.
   */
  wake(endpointIds: readonly string[], delayMs?: number): Promise<void>;
  readonly queue: Queue<WebhookJobData>;
  close(): Promise<void>;
}

export interface WebhookQueueOptions {
  connection: RedisOptions;
  prefix: string;
  commandTimeoutMs?: number;
  onError?: (error: Error) => void;
}

export function createWebhookQueue(options: WebhookQueueOptions): WebhookQueue {
  const queue = new Queue<WebhookJobData>(WEBHOOK_QUEUE_NAME, {
    connection: options.connection,
    prefix: `${options.prefix}:bull`,
    // A finished job is removed at once, so the endpoint's id is free for the next one (the
    // worker re-queues after each job when deliveries remain; the database keeps the log).
    defaultJobOptions: { attempts: 1, removeOnComplete: true, removeOnFail: true },
  });
  queue.on('error', (error) => options.onError?.(error));
  return {
    queue,
    async wake(endpointIds, delayMs = 0) {
      const unique = [...new Set(endpointIds)];
      if (!unique.length) return;
      const add = () =>
        queue.addBulk(unique.map((endpointId) => ({ name: 'send', data: { endpointId }, opts: { jobId: webhookJobId(endpointId), delay: Math.max(0, delayMs) } })));
      await (options.commandTimeoutMs ? withRedisTimeout(add(), options.commandTimeoutMs, 'the webhook enqueue') : add());
    },
    close: () => queue.close(),
  };
}
