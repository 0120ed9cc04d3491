import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { App } from './app.js';
import { dispatchCheck, executeActionJob, HandlerAttemptError, NotYetError, runClaimedAction, type ExecutionDeps } from './engine/execution.js';
import type { Action } from './generated/prisma/client.js';
import { briefError, unavailableDependency } from './engine/infra-errors.js';
import { ACTION_QUEUE_NAME, jobIdFor, MAX_ATTEMPTS, type ActionJobData, type QueueableAction } from './engine/queue.js';
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

  /** Jobs of the queue running now, and runs started here (see runHere). */
  let jobsRunning = 0;
  const local = new Map<string, Promise<void>>();
  let closing = false;

  /**
   * When a failed run goes on without using an attempt: the action is scheduled later, or our own
   * PostgreSQL or Redis went away (an outage is nobody's failure: logged, retried shortly). Null
   * when the failure is an attempt (a handler's recorded failure is one, whatever its message
   * reads like) or final.
   */
  function uncountedRetryAt(actionId: string, error: unknown): number | null {
    if (error instanceof NotYetError) return error.at.getTime();
    const dependency = error instanceof HandlerAttemptError ? null : unavailableDependency(error);
    if (!dependency) return null;
    logger.warn(
      { actionId, dependency, err: briefError(error), retryInMs: OUTAGE_RETRY_DELAY_MS },
      'dependency unavailable during execution; retrying without using an attempt',
    );
    return Date.now() + OUTAGE_RETRY_DELAY_MS;
  }

  async function processJob(job: Job<ActionJobData>, token?: string): Promise<void> {
    jobsRunning += 1;
    try {
      await executeActionJob(deps, job);
    } catch (error) {
      if (!token) throw error;
      const at = uncountedRetryAt(job.data.actionId, error);
      if (at === null) throw error;
      // Should this move fail too (Redis away), the job's lock expires and the stalled-job check
      // or the reconciler brings it back.
      await job.moveToDelayed(at, token);
      throw new DelayedError();
    } finally {
      jobsRunning -= 1;
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

  // Runs started here: an action approved (or created approved) in this process starts in this
  // process at once, without the queue's add, wake-up and fetch, while the worker has a slot to
  // spare (WORKER_CONCURRENCY is shared: the queue's worker takes fewer jobs meanwhile). The claim
  // records this process as the action's runner, and its heartbeat in Redis (renewed like a job's
  // lock) tells every reconciler and job that it runs there. A retry or a delay goes on as a queue
  // job; a process that dies stops beating within WORKER_LOCK_MS, and the reconciler then queues
  // what it was running as stranded (the job resumes it like one of a dead worker).
  const lockMs = options.lockDurationMs ?? config.workerLockMs;
  const ownRunner = `${hostname()}:${process.pid}:${randomUUID()}`;
  const setQueueShare = () => {
    worker.concurrency = Math.max(1, config.workerConcurrency - local.size);
  };
  /** Hand-overs that could not be queued (Redis away): tried again each reconciler round. */
  const unhanded = new Map<string, () => Promise<void>>();

  /** Hands the rest of a run started here to the queue. */
  async function handOver(action: QueueableAction, data: ActionJobData, delay: number, attemptsBefore: number): Promise<void> {
    try {
      await app.engine.queue.handOver(action, data, { delay, attemptsBefore, runner: ownRunner });
      unhanded.delete(action.id);
    } catch (error) {
      logger.error({ err: briefError(error), actionId: action.id }, 'could not queue the rest of a run started here; trying again next reconciler round');
      unhanded.set(action.id, () => handOver(action, data, delay, attemptsBefore));
    }
  }

  /** Runs `body` (the first attempt) here, and hands what it leaves (a retry, a delay) to the queue. */
  async function runHere(action: QueueableAction, data: ActionJobData, body: () => Promise<void>): Promise<void> {
    let after: { delay: number; attemptsBefore: number } | null = null;
    try {
      await body();
    } catch (error) {
      // A final failure is recorded (FAILED, refused), whatever its message reads like.
      const at = error instanceof UnrecoverableError ? null : uncountedRetryAt(action.id, error);
      if (at !== null) after = { delay: Math.max(0, at - Date.now()), attemptsBefore: 0 };
      else {
        logger.warn({ actionId: action.id, attempt: 1, err: briefError(error) }, 'execution attempt failed');
        // Any other failure is attempt 1 of the retries.
        if (!(error instanceof UnrecoverableError)) after = { delay: config.retryBackoffMs, attemptsBefore: 1 };
      }
    }
    if (after) await handOver(action, data, after.delay, after.attemptsBefore);
  }

  // No run starts here before the first beat is in Redis (a claim must never be seen without
  // it), nor while beats fail (Redis away): approved actions then go through the queue.
  let alive = false;
  const beat = () =>
    app.engine.queue.beat(ownRunner, lockMs).then(
      () => (alive = true),
      (error: unknown) => {
        if (alive) logger.warn({ err: briefError(error) }, 'could not renew the runner heartbeat; approved actions go through the queue');
        alive = false;
      },
    );
  void beat();
  const heart = setInterval(() => void beat(), Math.max(250, Math.floor(lockMs / 3)));
  heart.unref();

  /** Whether a run can start here now. */
  const slotFree = (actionId: string) =>
    // One slot is always the queue's (its worker waits for a job there), so the queue is never
    // starved and the two together stay within WORKER_CONCURRENCY.
    !closing && alive && !local.has(actionId) && jobsRunning + local.size < config.workerConcurrency - 1;

  /** Takes a slot for `actionId` until `run` settles. */
  function occupy(actionId: string, run: Promise<void>): void {
    const tracked = run
      .catch((error: unknown) => logger.error({ err: briefError(error), actionId }, 'run started here failed'))
      .finally(() => {
        local.delete(actionId);
        setQueueShare();
      });
    local.set(actionId, tracked);
    setQueueShare();
  }

  const detachLocal = app.engine.queue.attachLocal({
    tryStart(action, data) {
      if (!data.spaceId || !data.type || !slotFree(action.id)) return false;
      occupy(action.id, runHere(action, data, () => executeActionJob(deps, { data, attemptsMade: 0, opts: { attempts: MAX_ATTEMPTS } }, { runner: ownRunner })));
      return true;
    },
    runs(runner, actionId) {
      return runner === ownRunner ? local.has(actionId) : undefined;
    },
    async reserve(action) {
      if (!slotFree(action.id) || (action.scheduledFor && action.scheduledFor.getTime() > app.engine.clock().getTime())) return null;
      if ((await dispatchCheck(deps, action)).check) return null;
      // Again: another run may have taken the slot while the rules were looked up.
      if (!slotFree(action.id)) return null;
      let release!: () => void;
      let start!: (claimed: Action) => void;
      const decided = new Promise<Action | null>((resolve) => {
        release = () => resolve(null);
        start = resolve;
      });
      const data: ActionJobData = { actionId: action.id, spaceId: action.spaceId, type: action.type };
      occupy(
        action.id,
        decided.then((claimed) => (claimed ? runHere(claimed, data, () => runClaimedAction(deps, claimed)) : undefined)),
      );
      const chain = deps.handlers.chainFor(action.type).map((h) => h.name);
      return {
        claim: { attempt: 1, chain, runner: ownRunner },
        committed(claimed): claimed is Action {
          if (claimed?.status !== 'EXECUTING') {
            release();
            return false;
          }
          start(claimed);
          return true;
        },
        release,
      };
    },
  });

  /** Whether the action will run without help: a live job, or its runner beating (see runHere); a finished job is removed. */
  async function hasLiveJob(actionId: string, runner: string | null = null): Promise<boolean> {
    const job = await app.engine.queue.queue.getJob(jobIdFor(actionId));
    if (job && LIVE_STATES.has(await job.getState())) return true;
    if (runner && (unhanded.has(actionId) || (await app.engine.queue.runnerBusy(runner, actionId)))) return true;
    // A finished job (completed or failed) while the action is still not done: replace it.
    if (job) await job.remove();
    return false;
  }

  /** What the reconciler needs of an action to queue it. */
  type Queueable = { id: string; spaceId: string; type: string; priority: number; scheduledFor: Date | null; runner: string | null; attempts: number };

  /** Every row of a keyset-paginated query: `page(last)` reads the rows after `last` (null: from the start). */
  async function* everyPage(page: (last: Queueable | null) => Promise<Queueable[]>): AsyncGenerator<Queueable> {
    for (let last: Queueable | null = null; ; ) {
      const rows = await page(last);
      yield* rows;
      if (rows.length < RECONCILE_PAGE) return;
      last = rows[rows.length - 1]!;
    }
  }

  const select = { id: true, spaceId: true, type: true, priority: true, scheduledFor: true, runner: true, attempts: true } as const;

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
    for (const handOverAgain of [...unhanded.values()]) await handOverAgain();
    let queued = 0;
    let resumed = 0;
    for await (const action of dueApproved()) {
      if (await hasLiveJob(action.id)) continue;
      await app.engine.queue.enqueue(action);
      queued += 1;
    }
    for await (const action of strandedCandidates()) {
      if (await hasLiveJob(action.id, action.runner)) continue;
      if (action.runner === ownRunner) {
        // Claimed here and no longer running here (its run ended without a hand-over, or that
        // failed): only this process knows, so it queues it as the rest of its own run.
        // Its attempts so far count (the claim or resume recorded the last one).
        await handOver(action, { actionId: action.id, spaceId: action.spaceId, type: action.type }, 0, action.attempts);
        resumed += 1;
        continue;
      }
      // The job runs it as a recovery: an interrupted execution is marked so and the handler
      // runs again under the same idempotency key.
      await app.engine.queue.enqueue({ ...action, scheduledFor: null }, { here: false });
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
      // No new runs here; those going finish (within the shutdown timeout, as the worker's jobs).
      closing = true;
      detachLocal();
      const drained = Promise.all(local.values());
      // One SHUTDOWN_TIMEOUT_MS for these runs and the queue's jobs together.
      const late = new Promise<false>((resolve) => setTimeout(resolve, config.shutdownTimeoutMs, false).unref());
      // Side by side with the execution worker's close, so an outage does not double the wait.
      const webhooksClosed = webhooks.close();
      const approvalsClosed = approvals.close();
      if (!(await closeQueueWorker(app, worker))) logger.warn({ timeoutMs: config.shutdownTimeoutMs }, 'worker did not close in time; disconnected it');
      const finished = await Promise.race([drained.then(() => true), late]);
      // Beating until now: a run going here must not look stranded.
      clearInterval(heart);
      if (!finished) {
        logger.warn({ running: local.size }, 'runs started here did not finish in time; the heartbeat expires and the reconciler takes them');
      } else if (!unhanded.size) {
        // Nothing claimed here is left: others need not wait for the heartbeat to expire.
        await app.engine.queue.endBeat(ownRunner).catch(() => {});
      }
      await Promise.all([webhooksClosed, approvalsClosed]);
    },
  };
}
