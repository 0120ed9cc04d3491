import type { Job } from 'bullmq';
import type { App } from './app.js';
import { briefError } from './engine/infra-errors.js';
import { closeQueueWorker, createQueueWorker, everyReconcileRound } from './queue-worker.js';
import { sendEndpointDeliveries, sweepWebhookDeliveries, wakeEndpoint, type WebhookSenderDeps } from './engine/webhook-delivery.js';
import { WEBHOOK_QUEUE_NAME, type WebhookJobData } from './engine/webhook-queue.js';

/** Endpoints one process sends to at once (each endpoint's deliveries go one at a time). */
const WEBHOOK_CONCURRENCY = 10;

/** Pause before a webhook send job that broke (not a failed delivery) runs again. */
const FAILED_JOB_RETRY_MS = 5000;

/** A running sender of outbound event webhooks. */
export interface WebhookWorker {
  /** Queues every enabled endpoint with PENDING deliveries; returns how many. */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

/**
 * The BullMQ worker of the `webhooks` queue (started with the execution worker): one job per
 * endpoint sends its PENDING deliveries in order; after each job the endpoint is queued again for
 * what is left (now, or when its first delivery's backoff ends); and a sweeper, at start and every
 * `RECONCILE_SECONDS`, queues every endpoint that has deliveries waiting (a lost enqueue or a
 * crash loses nothing). Nothing here runs on an action's own path.
 */
export function startWebhookWorker(app: App): WebhookWorker {
  const { config, logger } = app;
  const webhooks = app.engine.webhooks;
  if (!webhooks) throw new Error('startWebhookWorker needs app.engine.webhooks (the webhook queue)');
  const deps: WebhookSenderDeps = {
    db: app.db,
    secrets: app.engine.secrets,
    logger,
    clock: app.engine.clock,
    fetch: app.handlerServices.fetch,
    webhooks,
    retryBaseMs: config.webhookRetryBaseMs,
    maxFailures: config.webhookMaxFailures,
  };

  const worker = createQueueWorker<WebhookJobData>(app, WEBHOOK_QUEUE_NAME, (job: Job<WebhookJobData>) => sendEndpointDeliveries(deps, job.data.endpointId), {
    concurrency: WEBHOOK_CONCURRENCY,
  });
  // The job's id is free once it has finished (removed at once): queue the endpoint again for
  // what is left, including deliveries written while the job ran (their own enqueue was a no-op).
  const again = (job: Job<WebhookJobData> | undefined) => {
    if (!job) return;
    wakeEndpoint(deps, job.data.endpointId).catch((error: unknown) =>
      logger.warn({ endpointId: job.data.endpointId, err: briefError(error) }, 'could not queue a webhook endpoint again; the sweeper will'),
    );
  };
  worker.on('completed', again);
  worker.on('failed', (job, error) => {
    // The job itself broke (not a delivery: those are recorded and backed off per delivery), e.g.
    // the database went away: try again after a pause, never in a tight loop.
    logger.warn({ endpointId: job?.data.endpointId, err: briefError(error), retryInMs: FAILED_JOB_RETRY_MS }, 'webhook send job failed; retrying');
    if (job) {
      deps.webhooks.wake([job.data.endpointId], FAILED_JOB_RETRY_MS).catch((e: unknown) =>
        logger.warn({ endpointId: job.data.endpointId, err: briefError(e) }, 'could not queue a webhook endpoint again; the sweeper will'),
      );
    }
  });
  worker.on('error', (error) => logger.error({ err: error }, 'webhook worker error'));

  const sweep = () => sweepWebhookDeliveries(deps);
  const stop = everyReconcileRound(app, sweep, 'webhook sweep failed; retrying next round');

  return {
    sweep,
    async close() {
      stop();
      await closeQueueWorker(app, worker);
    },
  };
}
