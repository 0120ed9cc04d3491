import { Queue, type JobsOptions, type RedisOptions } from 'bullmq';
import type { Action } from '../generated/prisma/client.js';
import { withRedisTimeout } from './infra-errors.js';

/**
 * What a queued job carries: the action id, and its space and type, which never change, so the
 * worker can claim it without reading it first (the database is the truth for everything else).
 * Jobs queued before the hints existed carry only the id.
 */
export interface ActionJobData {
  actionId: string;
  spaceId?: string;
  type?: string;
  /** The standing approval that approved it, checked again before it runs (revoked since: refused). */
  grant?: string;
}

/** `Action.decidedBy` of an action a standing approval approved at creation. */
export const GRANT_DECIDER_PREFIX = 'standing-approval:';

export const ACTION_QUEUE_NAME = 'actions';
/** Attempts per action for retryable failures (spec §6). */
export const MAX_ATTEMPTS = 3;

/** One job per action: enqueueing twice is harmless. (BullMQ refuses `:` in custom ids.) */
export function jobIdFor(actionId: string): string {
  return `action-${actionId}`;
}

/** Puts approved actions on the execution queue. */
export interface ActionQueue {
  enqueue(action: Pick<Action, 'id' | 'priority' | 'scheduledFor'> & Partial<Pick<Action, 'spaceId' | 'type' | 'decidedBy'>>): Promise<void>;
  /** Removes a job that has not started (after cancelAction). */
  remove(actionId: string): Promise<void>;
  /** The job's state, or null when there is none. */
  state(actionId: string): Promise<string | null>;
  readonly queue: Queue<ActionJobData>;
  close(): Promise<void>;
}

export interface ActionQueueOptions {
  connection: RedisOptions;
  prefix: string;
  /** First retry delay; doubles each attempt. */
  backoffMs: number;
  clock: () => Date;
  /**
   * Longest wait for Redis per call (`REDIS_COMMAND_TIMEOUT_MS`): while Redis is away ioredis
   * keeps commands in its offline queue, and a request must not wait for that. A call given up
   * on throws RedisTimeoutError (an enqueue lost that way is repaired by the reconciler).
   */
  commandTimeoutMs?: number;
  /** Connection errors of the queue's Redis client (without a listener they are printed raw). */
  onError?: (error: Error) => void;
}

export function createActionQueue(options: ActionQueueOptions): ActionQueue {
  const queue = new Queue<ActionJobData>(ACTION_QUEUE_NAME, {
    connection: options.connection,
    prefix: `${options.prefix}:bull`,
    defaultJobOptions: {
      attempts: MAX_ATTEMPTS,
      backoff: { type: 'exponential', delay: options.backoffMs },
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
  queue.on('error', (error) => options.onError?.(error));
  const bounded = <T>(what: string, run: () => Promise<T>): Promise<T> =>
    options.commandTimeoutMs ? withRedisTimeout(run(), options.commandTimeoutMs, what) : run();
  return {
    queue,
    async enqueue(action) {
      const delay = action.scheduledFor ? Math.max(0, action.scheduledFor.getTime() - options.clock().getTime()) : 0;
      const opts: JobsOptions = { jobId: jobIdFor(action.id), priority: action.priority, delay };
      const data: ActionJobData = action.spaceId && action.type ? { actionId: action.id, spaceId: action.spaceId, type: action.type } : { actionId: action.id };
      if (action.decidedBy?.startsWith(GRANT_DECIDER_PREFIX)) data.grant = action.decidedBy.slice(GRANT_DECIDER_PREFIX.length);
      await bounded('the enqueue', () => queue.add('execute', data, opts));
    },
    async remove(actionId) {
      await bounded('the job removal', async () => {
        const job = await queue.getJob(jobIdFor(actionId));
        // An active job cannot be removed; the worker sees the CANCELLED status and skips it.
        if (job && !(await job.isActive())) await job.remove();
      });
    },
    async state(actionId) {
      return bounded('the job lookup', async () => {
        const job = await queue.getJob(jobIdFor(actionId));
        return job ? await job.getState() : null;
      });
    },
    close: () => queue.close(),
  };
}
