import type { App } from '../app.js';
import { isTerminal, type ActionStatus } from '../engine/statuses.js';
import { statusChannel } from '../engine/status-publisher.js';
import { briefError, withRedisTimeout } from '../engine/infra-errors.js';

/** How long a wait goes without news before it re-reads the database (a lost publish delays an update by at most this). */
const IDLE_RECHECK_MS = 2_000;

export interface StatusStep {
  seq: number;
  status: ActionStatus;
  message: string | null;
  timestamp: string;
}

export interface WaitOutcome {
  /** The last status seen. */
  status: ActionStatus;
  /** True when the deadline (or a cancelled request) ended the wait before a status in `until`. */
  timedOut: boolean;
}

/**
 * Waits until the action reaches a status in `until` (or one it never leaves), `deadline` passes or `signal` aborts,
 * calling `onStep` for every status update after `afterSeq`, in order, each once.
 *
 * Woken by the engine's status events on Redis (the same per-space channel the GraphQL
 * subscriptions read); each event only triggers a read of the action's stored updates, which
 * are the truth, so a lost or reordered publish cannot skip one. Without news for
 * {@link IDLE_RECHECK_MS} it re-reads anyway, and when Redis cannot be subscribed to it falls
 * back to reading on that period alone (slower, never wrong).
 */
export async function waitForStatus(
  app: Pick<App, 'db' | 'pubsub' | 'config' | 'logger'>,
  action: { id: string; spaceId: string },
  options: { until: ReadonlySet<ActionStatus>; status: ActionStatus; afterSeq: number; deadline: number; signal: AbortSignal; onStep: (step: StatusStep) => Promise<void> },
): Promise<WaitOutcome> {
  let wake: (() => void) | null = null;
  let pinged = false;
  const poke = () => {
    pinged = true;
    wake?.();
  };
  let subscriptionId: number | null = null;
  const subscribing = app.pubsub.subscribe<{ actionId?: unknown }>(statusChannel(app.config.redisPrefix, action.spaceId), (message) => {
    if (message && message.actionId === action.id) poke();
  });
  try {
    subscriptionId = await withRedisTimeout(subscribing, app.config.redisCommandTimeoutMs, 'the status subscription');
  } catch (error) {
    app.logger.warn({ err: briefError(error), actionId: action.id }, 'wait_for_action: no live status events (Redis); reading the database periodically instead');
    subscribing.then((id) => app.pubsub.unsubscribe(id)).catch(() => {});
  }
  const onAbort = () => wake?.();
  options.signal.addEventListener('abort', onAbort);
  try {
    let lastSeq = options.afterSeq;
    let status = options.status;
    for (;;) {
      pinged = false;
      const updates = await app.db.statusUpdate.findMany({
        where: { actionId: action.id, seq: { gt: lastSeq } },
        orderBy: { seq: 'asc' },
        select: { seq: true, status: true, message: true, createdAt: true },
      });
      for (const u of updates) {
        lastSeq = u.seq;
        status = u.status;
        await options.onStep({ seq: u.seq, status: u.status, message: u.message, timestamp: u.createdAt.toISOString() });
        // A status the action never leaves ends the wait even when it is not one asked for: nothing else can come.
        if (options.until.has(u.status) || isTerminal(u.status)) return { status: u.status, timedOut: false };
      }
      const left = options.deadline - Date.now();
      if (left <= 0 || options.signal.aborted) return { status, timedOut: true };
      if (pinged) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, IDLE_RECHECK_MS));
        function done() {
          clearTimeout(timer);
          wake = null;
          resolve();
        }
        wake = done;
      });
    }
  } finally {
    options.signal.removeEventListener('abort', onAbort);
    if (subscriptionId !== null) app.pubsub.unsubscribe(subscriptionId);
  }
}
