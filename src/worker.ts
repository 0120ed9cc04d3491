import { DelayedError, type Job } from 'bullmq';
import type { App } from './app.js';
import { executeActionJob, HandlerAttemptError, NotYetError, type ExecutionDeps } from './engine/execution.js';
import { briefError, unavailableDependency } from './engine/infra-errors.js';
import { ACTION_QUEUE_NAME, jobIdFor, type ActionJobData } from './engine/queue.js';
import { startWebhookWorker } from './webhook-worker.js';
import { startApprovalWorker } from './approval-worker.js';
import { closeQueueWorker, createQueueWorker, everyReconcileRound } from './queue-worker.js';

/** A running execution worker. */
export interface ActionWorker {
  /**
   * Queues every due APPROVED action that has no live job (lost enqueue after commit), and runs
   * again every EXECUTING action with no live job and nothing to wait for (its job failed or
   * vanished during an outage); returns how many it queued.
   */
  reconcile(): Promise<number>;
  /** The approval jobs' reconciler (expiry and escalation of PENDING actions; see approval-worker.ts). */
  reconcileApprovals(): Promise<number>;
  /** Stops taking jobs and waits for the running handlers to finish. */
  close(): Promise<void>;
}

export interface WorkerOptions {
  /** How long a job's lock lasts without renewal; a worker that dies loses its jobs after this (`WORKER_LOCK_MS`). */
  lockDurationMs?: number;
  /** How often stalled jobs (of dead workers) are looked for (`WORKER_STALLED_CHECK_MS`). */
  stalledIntervalMs?: number;
}

/** How long a job waits after PostgreSQL or Redis was unreachable before it runs again (no attempt used). */
const OUTAGE_RETRY_DELAY_MS = 2000;
/** Actions read per page by the reconciler. */
const RECONCILE_PAGE = 500;
/** APPROVED actions scheduled up to this far ahead count as due (their job is queued with the rest of the delay). */
const DUE_MARGIN_MS = 60_000;
/** Job states in which a job will still run (or is running) without help. */
const LIVE_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);

/**
 * The BullMQ worker of the execution queue: `WORKER_CONCURRENCY` jobs at once, stalled-job
 * recovery on (a job whose worker died goes back to the queue after `WORKER_LOCK_MS`, found
 * within `WORKER_STALLED_CHECK_MS`), outages of PostgreSQL or Redis delay a job without using
 * up its attempts, and a reconciler, at start and every `RECONCILE_SECONDS`, queues what has
 * no job (see {@link ActionWorker.reconcile}).
 */
export function startWorker(app: App, options: WorkerOptions = {}): ActionWorker {
  const { config, logger } = app;
  const deps: ExecutionDeps = { ...app.engine, handlers: app.handlers, services: app.handlerServices };

  async function processJob(job: Job<ActionJobData>, token?: string): Promise<void> {
    try {
      await executeActionJob(deps, job);
    } catch (error) {
      if (!token) throw error;
      if (error instanceof NotYetError) {
        await job.moveToDelayed(error.at.getTime(), token);
        throw new DelayedError();
      }
      // A handler's recorded failure is an attempt, whatever its message reads like.
      const dependency = error instanceof HandlerAttemptError ? null : unavailableDependency(error);
      if (!dependency) throw error;
      // An outage of our own database or Redis is nobody's failure: try again shortly, with the
      // attempt not counted. Should this move fail too (Redis away), the job's lock expires and
      // the stalled-job check or the reconciler brings it back.
      logger.warn(
        { actionId: job.data.actionId, dependency, err: briefError(error), retryInMs: OUTAGE_RETRY_DELAY_MS },
        'dependency unavailable during execution; retrying without using an attempt',
      );
      await job.moveToDelayed(Date.now() + OUTAGE_RETRY_DELAY_MS, token);
      throw new DelayedError();
    }
  }

  const worker = createQueueWorker<ActionJobData>(app, ACTION_QUEUE_NAME, processJob, {
    concurrency: config.workerConcurrency,
    lockDuration: options.lockDurationMs ?? config.workerLockMs,
    stalledInterval: options.stalledIntervalMs ?? config.workerStalledCheckMs,
    maxStalledCount: 2,
  });
  worker.on('failed', (job, error) =>
    logger.warn({ actionId: job?.data.actionId, attempt: job?.attemptsMade, err: error.message }, 'execution attempt failed'),
  );
  worker.on('error', (error) => logger.error({ err: error }, 'worker error'));

  /** Whether the action's job will run without help; a finished or missing one is removed. */
  async function hasLiveJob(actionId: string): Promise<boolean> {
    const job = await app.engine.queue.queue.getJob(jobIdFor(actionId));
    if (!job) return false;
    if (LIVE_STATES.has(await job.getState())) return true;
    // A finished job (completed or failed) while the action is still not done: replace it.
    await job.remove();
    return false;
  }

  /** What the reconciler needs of an action to queue it. */
  type Queueable = { id: string; spaceId: string; type: string; priority: number; scheduledFor: Date | null };

  /** Every row of a keyset-paginated query: `page(last)` reads the rows after `last` (null: from the start). */
  async function* everyPage(page: (last: Queueable | null) => Promise<Queueable[]>): AsyncGenerator<Queueable> {
    for (let last: Queueable | null = null; ; ) {
      const rows = await page(last);
      yield* rows;
      if (rows.length < RECONCILE_PAGE) return;
      last = rows[rows.length - 1]!;
    }
  }

  const select = { id: true, spaceId: true, type: true, priority: true, scheduledFor: true } as const;

  /** Due APPROVED actions: unscheduled ones (keyset by id), then those scheduled by DUE_MARGIN_MS from now (keyset by scheduledFor, id). */
  async function* dueApproved(): AsyncGenerator<Queueable> {
    yield* everyPage((last) =>
      app.db.action.findMany({
        where: { status: 'APPROVED', scheduledFor: null, ...(last ? { id: { gt: last.id } } : {}) },
        select,
        orderBy: { id: 'asc' },
        take: RECONCILE_PAGE,
      }),
    );
    const dueBy = new Date(app.engine.clock().getTime() + DUE_MARGIN_MS);
    yield* everyPage((last) =>
      app.db.action.findMany({
        where: {
          status: 'APPROVED',
          scheduledFor: { not: null, lte: dueBy },
          ...(last ? { OR: [{ scheduledFor: { gt: last.scheduledFor! } }, { scheduledFor: last.scheduledFor!, id: { gt: last.id } }] } : {}),
        },
        select,
        orderBy: [{ scheduledFor: 'asc' }, { id: 'asc' }],
        take: RECONCILE_PAGE,
      }),
    );
  }

  /** EXECUTING actions with nothing to wait for: no open manual task, no execution waiting for a callback. */
  function strandedCandidates(): AsyncGenerator<Queueable> {
    return everyPage((last) =>
      app.db.action.findMany({
        where: {
          status: 'EXECUTING',
          manualTasks: { none: { status: 'OPEN' } },
          executions: { none: { status: 'WAITING' } },
          ...(last ? { id: { gt: last.id } } : {}),
        },
        select,
        orderBy: { id: 'asc' },
        take: RECONCILE_PAGE,
      }),
    );
  }

  async function reconcile(): Promise<number> {
    let queued = 0;
    let resumed = 0;
    for await (const action of dueApproved()) {
      if (await hasLiveJob(action.id)) continue;
      await app.engine.queue.enqueue(action);
      queued += 1;
    }
    for await (const action of strandedCandidates()) {
      if (await hasLiveJob(action.id)) continue;
      // The job runs it as a recovery: an interrupted execution is marked so and the handler
      // runs again under the same idempotency key.
      await app.engine.queue.enqueue({ ...action, scheduledFor: null });
      resumed += 1;
    }
    if (queued) logger.info({ queued }, 'reconciler queued approved actions that had no job');
    if (resumed) logger.info({ resumed }, 'reconciler queued executing actions that had no job again');
    return queued + resumed;
  }

  const stopReconciling = everyReconcileRound(app, reconcile, 'reconciler failed; retrying next round');
  // Outbound event webhooks are sent wherever actions are executed.
  const webhooks = startWebhookWorker(app);
  // So are the expiry and escalation jobs of PENDING actions.
  const approvals = startApprovalWorker(app);

  return {
    reconcile,
    reconcileApprovals: () => approvals.reconcile(),
    async close() {
      stopReconciling();
      // Side by side with the execution worker's close, so an outage does not double the wait.
      const webhooksClosed = webhooks.close();
      const approvalsClosed = approvals.close();
      if (!(await closeQueueWorker(app, worker))) logger.warn({ timeoutMs: config.shutdownTimeoutMs }, 'worker did not close in time; disconnected it');
      await Promise.all([webhooksClosed, approvalsClosed]);
    },
  };
}
