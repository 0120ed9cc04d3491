import { Worker, type Processor, type WorkerOptions } from 'bullmq';
import type { App } from './app.js';
import { briefError } from './engine/infra-errors.js';

/**
 * A BullMQ worker of one of the engine's queues on the app's queue connection and key prefix,
 * with the shared lock and stalled-check settings (a killed worker's job is free again after
 * WORKER_LOCK_MS). `options` adds to or overrides them.
 */
export function createQueueWorker<T>(app: App, queueName: string, processor: Processor<T>, options: Partial<WorkerOptions> & { concurrency: number }): Worker<T> {
  return new Worker<T>(queueName, processor, {
    connection: app.queueConnection,
    prefix: `${app.config.redisPrefix}:bull`,
    lockDuration: app.config.workerLockMs,
    stalledInterval: app.config.workerStalledCheckMs,
    ...options,
  });
}

/**
 * Runs `round` now and every RECONCILE_SECONDS, one round at a time (a long round — many pages, a
 * slow Redis — is not started twice); a failed round is logged as `failure` and retried next
 * time. Returns the function that stops it.
 */
export function everyReconcileRound(app: App, round: () => Promise<unknown>, failure: string): () => void {
  let running: Promise<unknown> | null = null;
  const run = () => {
    running ??= round()
      .catch((error: unknown) => app.logger.warn({ err: briefError(error) }, failure))
      .finally(() => {
        running = null;
      });
  };
  void run();
  const timer = setInterval(run, app.config.reconcileSeconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Closes a worker within SHUTDOWN_TIMEOUT_MS. BullMQ's close can wait forever on a connection that
 * went through a Redis outage (its blocking client stuck reconnecting): after the timeout the
 * worker is disconnected outright. Resolves false when it had to be.
 */
export async function closeQueueWorker(app: App, worker: Worker): Promise<boolean> {
  const closed = worker.close().then(() => true);
  const late = new Promise<false>((resolve) => setTimeout(resolve, app.config.shutdownTimeoutMs, false).unref());
  if (await Promise.race([closed, late])) return true;
  closed.catch(() => {});
  await Promise.race([worker.disconnect(), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  return false;
}
