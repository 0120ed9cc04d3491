import { Queue, type JobsOptions, type RedisOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Action } from '../generated/prisma/client.js';
import type { Claim } from './lifecycle/steps.js';
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
  /**
   * Attempts already made before this job (a run started in the approving process handed its
   * retry to the queue): the job's attempts count on from there.
   */
  attemptsBefore?: number;
  /**
   * Queued by this runner (`Action.runner`) for the rest of its own run: the job resumes the
   * action even though that process is alive, as long as the action is still claimed by it.
   */
  handedOverBy?: string;
}

/** What starting an action needs of it. */
export type QueueableAction = Pick<Action, 'id' | 'priority' | 'scheduledFor'> & Partial<Pick<Action, 'spaceId' | 'type' | 'decidedBy'>>;

/**
 * Runs approved actions in this process without the queue's hop, when it can (see
 * worker.ts): `tryStart` returns false when it will not (no free slot, not due yet, closing),
 * and the action is queued as usual.
 */
export interface LocalStarter {
  tryStart(action: QueueableAction, data: ActionJobData): boolean;
  /**
   * A slot for an action this process is about to approve (by a decision, or at creation): the
   * approving statement claims it too (`claim`); then `committed` starts it here, or gives the
   * slot back when the statement did not move it to EXECUTING (`release`: it failed). Null when
   * it cannot run here now (see tryStart), is not due, or needs a check at dispatch.
   */
  reserve(action: Pick<Action, 'id' | 'spaceId' | 'type' | 'scheduledFor'>): Promise<Reservation | null>;
  /** Whether this process, when it is `runner`, is running the action now; undefined when it is not `runner`. */
  runs(runner: string, actionId: string): boolean | undefined;
}

export interface Reservation {
  claim: Claim;
  /**
   * The approving statement committed: starts the run here when it claimed the action (it came back
   * EXECUTING), else gives the slot back. Whether the run started.
   */
  committed(action: Action | null): action is Action;
  /** The approving statement failed: gives the slot back. */
  release(): void;
}

/** When a handed-over job is to run, the attempts already made (see {@link ActionJobData.attemptsBefore}), and who hands it over. */
export interface Handover {
  /** Milliseconds from now. */
  delay: number;
  attemptsBefore: number;
  runner: string;
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
  /**
   * Starts the action in this process when its {@link LocalStarter} can, else queues its job.
   * `here: false`: always the job (a stranded EXECUTING action: only a job resumes one).
   */
  enqueue(action: QueueableAction, options?: { here?: boolean }): Promise<void>;
  /**
   * Queues the rest of a run started in this process (a retry, a delay). A job a reconciler
   * queued meanwhile is replaced unless it is running (it then finds the action and decides).
   */
  handOver(action: QueueableAction, data: ActionJobData, handover: Handover): Promise<void>;
  /** Lets `starter` start approved actions here; returns what stops it. */
  attachLocal(starter: LocalStarter): () => void;
  /** {@link LocalStarter.reserve} of the attached starter; null when none is. */
  reserveHere(action: Pick<Action, 'id' | 'spaceId' | 'type' | 'scheduledFor'>): Promise<Reservation | null>;
  /**
   * The heartbeat of a process that runs actions itself (`Action.runner`), in Redis so that every
   * reconciler and job sees it: set (or renewed) for `ms`. While it beats, no job resumes what
   * that process claimed.
   */
  beat(runner: string, ms: number): Promise<void>;
  /** Stops the heartbeat (the process has nothing running any more). */
  endBeat(runner: string): Promise<void>;
  /**
   * Whether `runner` is running the action: this process knows (its own runs); another process
   * is taken to be while its heartbeat is alive (it queues again what it stopped running, see
   * worker.ts).
   */
  runnerBusy(runner: string, actionId: string): Promise<boolean>;
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
  /** Where the heartbeats of processes that run actions themselves are kept (the app's general Redis connection). */
  heartbeats: Redis;
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
  const beatKey = (runner: string) => `${options.prefix}:runner:${runner}`;
  let local: LocalStarter | null = null;
  return {
    queue,
    async enqueue(action, { here = true } = {}) {
      const delay = action.scheduledFor ? Math.max(0, action.scheduledFor.getTime() - options.clock().getTime()) : 0;
      const data: ActionJobData = action.spaceId && action.type ? { actionId: action.id, spaceId: action.spaceId, type: action.type } : { actionId: action.id };
      if (action.decidedBy?.startsWith(GRANT_DECIDER_PREFIX)) data.grant = action.decidedBy.slice(GRANT_DECIDER_PREFIX.length);
      if (here && delay === 0 && local?.tryStart(action, data)) return;
      const opts: JobsOptions = { jobId: jobIdFor(action.id), priority: action.priority, delay };
      await bounded('the enqueue', () => queue.add('execute', data, opts));
    },
    async handOver(action, data, { delay, attemptsBefore, runner }) {
      const opts: JobsOptions = {
        jobId: jobIdFor(action.id),
        priority: action.priority,
        delay,
        attempts: Math.max(1, MAX_ATTEMPTS - attemptsBefore),
        // The backoff doubles on from where the run here left it.
        backoff: { type: 'exponential', delay: options.backoffMs * 2 ** attemptsBefore },
      };
      await bounded('the hand-over to the queue', async () => {
        const job = await queue.getJob(jobIdFor(action.id));
        // A reconciler's job (finished: it found the run going here; or still waiting): this one
        // carries the attempts and the delay. An active one cannot be removed (the add fails and
        // is tried again next reconciler round).
        if (job && !(await job.isActive())) await job.remove();
        await queue.add('execute', { ...data, attemptsBefore, handedOverBy: runner }, opts);
      });
    },
    attachLocal(starter) {
      local = starter;
      return () => {
        if (local === starter) local = null;
      };
    },
    async reserveHere(action) {
      return local ? local.reserve(action) : null;
    },
    async beat(runner, ms) {
      await bounded('the runner heartbeat', () => options.heartbeats.set(beatKey(runner), '1', 'PX', ms));
    },
    async endBeat(runner) {
      await bounded('the runner heartbeat', () => options.heartbeats.del(beatKey(runner)));
    },
    async runnerBusy(runner, actionId) {
      const here = local?.runs(runner, actionId);
      if (here !== undefined) return here;
      return (await bounded('the runner heartbeat lookup', () => options.heartbeats.exists(beatKey(runner)))) === 1;
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
