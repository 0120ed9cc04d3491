import { Worker } from 'bullmq';
import type { App } from './app.js';
import { executeActionJob, type ExecutionDeps } from './engine/execution.js';
import { ACTION_QUEUE_NAME, jobIdFor, type ActionJobData } from './engine/queue.js';

/** A running execution worker. */
export interface ActionWorker {
  /** Re-queues APPROVED actions that have no job (lost enqueue after commit); returns how many. */
  reconcile(): Promise<number>;
  /** Stops taking jobs and waits for the running handlers to finish. */
  close(): Promise<void>;
}

export interface WorkerOptions {
  /** How long a job's lock lasts without renewal; a worker that dies loses its jobs after this (BullMQ default 30 s). */
  lockDurationMs?: number;
  /** How often stalled jobs (of dead workers) are looked for (BullMQ default 30 s). */
  stalledIntervalMs?: number;
}

/**
 * The BullMQ worker of the execution queue: `WORKER_CONCURRENCY` jobs at once, stalled-job
 * recovery on (a job whose worker died goes back to the queue), and a reconciler that queues
 * APPROVED actions without a job, at start and every `RECONCILE_SECONDS`.
 */
export function startWorker(app: App, options: WorkerOptions = {}): ActionWorker {
  const { config, logger } = app;
  const deps: ExecutionDeps = { ...app.engine, handlers: app.handlers, services: app.handlerServices };
  const worker = new Worker<ActionJobData>(ACTION_QUEUE_NAME, (job) => executeActionJob(deps, job), {
    connection: app.queueConnection,
    prefix: `${config.redisPrefix}:bull`,
    concurrency: config.workerConcurrency,
    lockDuration: options.lockDurationMs ?? 30_000,
    stalledInterval: options.stalledIntervalMs ?? 30_000,
    maxStalledCount: 2,
  });
  worker.on('failed', (job, error) =>
    logger.warn({ actionId: job?.data.actionId, attempt: job?.attemptsMade, err: error.message }, 'execution attempt failed'),
  );
  worker.on('error', (error) => logger.error({ err: error }, 'worker error'));

  async function reconcile(): Promise<number> {
    const approved = await app.db.action.findMany({
      where: { status: 'APPROVED' },
      select: { id: true, priority: true, scheduledFor: true },
      orderBy: { updatedAt: 'asc' },
      take: 500,
    });
    let queued = 0;
    for (const action of approved) {
      const job = await app.engine.queue.queue.getJob(jobIdFor(action.id));
      const state = job ? await job.getState() : null;
      if (state === 'waiting' || state === 'active' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') continue;
      // No job, or a finished one while the action is still APPROVED: queue it (again).
      if (job) await job.remove();
      await app.engine.queue.enqueue(action);
      queued += 1;
    }
    if (queued) logger.info({ queued }, 'reconciler queued approved actions that had no job');
    return queued;
  }

  const run = () =>
    reconcile().catch((error: unknown) => logger.warn({ err: error }, 'reconciler failed; retrying next round'));
  void run();
  const timer = setInterval(run, config.reconcileSeconds * 1000);
  timer.unref();

  return {
    reconcile,
    async close() {
      clearInterval(timer);
      await worker.close();
    },
  };
}
