import { GraphQLError } from 'graphql';
import type { App } from '../app.js';
import type { Principal } from '../context.js';
import { canRead } from '../engine/policy.js';
import type { StatusEvent } from '../engine/status-event.js';
import { statusChannel } from '../engine/status-publisher.js';
import { isTerminal, type ActionStatus } from '../engine/statuses.js';
import { withRedisTimeout } from '../engine/infra-errors.js';
import { statusEvent } from '../engine/status-event.js';
import { ActionFilter, ActionStatusEnum, visibleActions } from './action.js';
import { builder } from './builder.js';
import { UUID } from '../engine/ids.js';

/** Put on a feed when the subscriber connection is back after a drop: events may have been lost meanwhile. */
const RESYNC = Symbol('resync');
type FeedItem = StatusEvent | typeof RESYNC;

/**
 * The status events of one space as they arrive on Redis, buffered from the moment Redis has
 * confirmed the subscription, so whatever is read from the database afterwards cannot miss one.
 * When the subscriber connection comes back after a drop (Redis restarted, network cut), the
 * feed yields {@link RESYNC}: whatever was published meanwhile is lost, and the stream reading
 * the feed must re-read the database (actionStatus) or end with an error (actionEvents).
 */
interface SpaceFeed {
  /**
   * The next event or RESYNC, or null once the feed is closed. With `idleMs`, RESYNC also comes
   * after that long without anything on the feed.
   */
  next(idleMs?: number): Promise<FeedItem | null>;
  /** Releases the Redis subscription and ends a pending `next()`; safe to call twice. */
  close(): void;
}

/** Feeds to tell when a subscriber connection is ready again after a drop, per connection. */
const resyncListeners = new WeakMap<App['subscriber'], Set<() => void>>();

function onSubscriberReconnect(subscriber: App['subscriber'], listener: () => void): () => void {
  let listeners = resyncListeners.get(subscriber);
  if (!listeners) {
    const set = new Set<() => void>();
    listeners = set;
    resyncListeners.set(subscriber, set);
    let dropped = false;
    const drop = () => {
      dropped = true;
    };
    subscriber.on('close', drop);
    subscriber.on('reconnecting', drop);
    subscriber.on('ready', () => {
      if (!dropped) return;
      dropped = false;
      // ioredis re-sends SUBSCRIBE right after 'ready'; a PING answered after it means Redis has
      // the subscriptions again, so nothing published from now on is missed by a re-read.
      subscriber.ping().then(
        () => {
          for (const notify of set) notify();
        },
        () => {
          for (const notify of set) notify();
        },
      );
    });
  }
  const set = listeners;
  set.add(listener);
  return () => set.delete(listener);
}

/** Subscribes to a space's status channel; resolves once Redis has acknowledged SUBSCRIBE (bounded by REDIS_COMMAND_TIMEOUT_MS). */
async function openSpaceFeed(app: Pick<App, 'pubsub' | 'config' | 'subscriber'>, spaceId: string): Promise<SpaceFeed> {
  const buffer: FeedItem[] = [];
  let waiting: ((item: FeedItem | null) => void) | null = null;
  let closed = false;
  const deliver = (item: FeedItem) => {
    if (closed) return;
    if (waiting) {
      const wake = waiting;
      waiting = null;
      wake(item);
    } else {
      buffer.push(item);
    }
  };
  const subscribing = app.pubsub.subscribe<unknown>(statusChannel(app.config.redisPrefix, spaceId), (message) => {
    if (isStatusEvent(message)) deliver(message);
  });
  let subscriptionId: number;
  try {
    subscriptionId = await withRedisTimeout(subscribing, app.config.redisCommandTimeoutMs, 'the subscription');
  } catch (error) {
    // Given up on: should Redis confirm it later, release it then.
    closed = true;
    subscribing.then((id) => app.pubsub.unsubscribe(id)).catch(() => {});
    throw error;
  }
  const stopListening = onSubscriberReconnect(app.subscriber, () => {
    // Only the latest RESYNC matters; events before it are re-read anyway.
    if (!buffer.includes(RESYNC)) deliver(RESYNC);
  });
  return {
    next(idleMs) {
      const buffered = buffer.shift();
      if (buffered) return Promise.resolve(buffered);
      if (closed) return Promise.resolve(null);
      return new Promise((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        const wake = (item: FeedItem | null) => {
          clearTimeout(timer);
          resolve(item);
        };
        waiting = wake;
        if (idleMs) {
          timer = setTimeout(() => {
            if (waiting !== wake) return;
            waiting = null;
            resolve(RESYNC);
          }, idleMs);
          timer.unref();
        }
      });
    },
    close() {
      if (closed) return;
      closed = true;
      buffer.length = 0;
      stopListening();
      app.pubsub.unsubscribe(subscriptionId);
      waiting?.(null);
      waiting = null;
    },
  };
}

function isStatusEvent(message: unknown): message is StatusEvent {
  const m = message as Partial<StatusEvent> | null;
  return typeof m === 'object' && m !== null && typeof m.actionId === 'string' && typeof m.seq === 'number' && typeof m.status === 'string';
}

/**
 * Wraps a generator reading from `feed` so that `return()` (client completes or disconnects)
 * releases the Redis subscription at once. An async generator's own `return()` waits behind a
 * pending `next()` — i.e. until the next event of the space — and never runs `finally` if the
 * generator was not started yet.
 */
function closeWithFeed<T>(generator: AsyncGenerator<T>, feed: SpaceFeed): AsyncGenerator<T> {
  return {
    next: () => generator.next(),
    return(value) {
      feed.close();
      return generator.return(value);
    },
    throw(error) {
      feed.close();
      return generator.throw(error);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

type ActionScopeRow = { id: string; spaceId: string; userId: string; type: string };

/**
 * How long an actionStatus stream waits without news before it re-reads the action's updates
 * from the database: a lost publish (Redis slow or away for the publisher only) delays an update
 * by at most this much, never for good. One indexed query per idle stream per period.
 */
const STATUS_STREAM_IDLE_RECHECK_MS = 5_000;

/**
 * The current state, then every later status update of one action in `seq` order, each once.
 * Ends after a terminal status ({@link isTerminal}). COMPLETED is deliberately not terminal here:
 * a completed action can still be ROLLED_BACK, and a client watching it must see that.
 */
async function* actionStatusStream(app: App, feed: SpaceFeed, action: ActionScopeRow, current: StatusEvent): AsyncGenerator<StatusEvent> {
  try {
    let last = current;
    yield current;
    if (isTerminal(current.status)) return;
    for (let item = await feed.next(STATUS_STREAM_IDLE_RECHECK_MS); item; item = await feed.next(STATUS_STREAM_IDLE_RECHECK_MS)) {
      if (item === RESYNC) {
        // Redis was away, or nothing came for a while (a publish may have been lost: it is not
        // retried): read everything after the last update sent from the database (the truth),
        // then go on with the feed.
        const missed = await app.db.statusUpdate.findMany({ where: { actionId: action.id, seq: { gt: last.seq } }, orderBy: { seq: 'asc' } });
        for (const update of missed) {
          const next = statusEvent(action, update);
          yield next;
          last = next;
          if (isTerminal(next.status)) return;
        }
        continue;
      }
      const event = item;
      if (event.actionId !== action.id || event.seq <= last.seq) continue;
      // Publishing happens after commit and may be lost or overtaken (another process, a failed
      // PUBLISH); anything below this event's seq is already committed, so read what was skipped.
      const missed =
        event.seq > last.seq + 1
          ? (
              await app.db.statusUpdate.findMany({
                where: { actionId: action.id, seq: { gt: last.seq, lt: event.seq } },
                orderBy: { seq: 'asc' },
              })
            ).map((update) => statusEvent(action, update))
          : [];
      for (const next of [...missed, event]) {
        yield next;
        last = next;
        if (isTerminal(next.status)) return;
      }
    }
  } finally {
    feed.close();
  }
}

/** Stands for "this stream was interrupted": its resolver answers with an error, and the stream ends. */
interface StreamInterrupted {
  interrupted: true;
}
type StreamItem = StatusEvent | StreamInterrupted;

/**
 * Every event on the feed that `principal` may read and `accept` lets through. After a Redis
 * outage (RESYNC) events may be missing and there is no per-stream position to re-read from:
 * the stream ends with a STREAM_INTERRUPTED error, so the client subscribes again (and reads
 * the current state of what it watches).
 */
async function* visibleStatusStream(feed: SpaceFeed, principal: Principal, accept: (event: StatusEvent) => boolean): AsyncGenerator<StreamItem> {
  try {
    for (let item = await feed.next(); item; item = await feed.next()) {
      if (item === RESYNC) {
        yield { interrupted: true };
        return;
      }
      // requestedById plays no part in who may read an action.
      if (canRead(principal, { ...item, requestedById: '' }) && accept(item)) yield item;
    }
  } finally {
    feed.close();
  }
}

function interruptedError(): GraphQLError {
  return new GraphQLError(
    'live events were interrupted while the event store (Redis) was unavailable, and some may be missing; subscribe again',
    { extensions: { code: 'STREAM_INTERRUPTED' } },
  );
}


function noSuchAction(id: string): GraphQLError {
  return new GraphQLError(`no action with id ${id}`, { extensions: { code: 'NOT_FOUND', field: ['actionId'] } });
}

/** Spec §10 `ActionStatusEvent`, plus `seq` (the action's status sequence number). */
export const ActionStatusEvent = builder.objectRef<StatusEvent>('ActionStatusEvent').implement({
  description: 'One status update of an action: a change of status, or news without one.',
  fields: (t) => ({
    actionId: t.exposeID('actionId'),
    status: t.expose('status', { type: ActionStatusEnum }),
    message: t.exposeString('message', { nullable: true }),
    timestamp: t.expose('timestamp', { type: 'DateTime' }),
    seq: t.exposeInt('seq', { description: "Position in the action's history (StatusUpdate.seq); increases with every update." }),
    action: t.prismaField({
      type: 'Action',
      description: 'The action as it is now (which may be ahead of this event).',
      resolve: (query, event, _args, ctx) => ctx.app.db.action.findUniqueOrThrow({ ...query, where: { id: event.actionId } }),
    }),
  }),
});

builder.subscriptionType({});

builder.subscriptionFields((t) => ({
  actionStatus: t.field({
    type: ActionStatusEvent,
    description:
      'The status of one action: first its current state, then every later update, in order; ends after a status the action never leaves (COMPLETED is not one: it may still be rolled back).',
    authScopes: { authenticated: true },
    args: { actionId: t.arg.id({ required: true }) },
    subscribe: async (_root, args, ctx) => {
      const principal = ctx.principal!;
      const id = String(args.actionId);
      if (!UUID.test(id)) throw noSuchAction(id);
      // Subscribe first, read second: an update committed after the read is on the feed, one
      // committed before it is in the read; duplicates are dropped by seq.
      const feed = await openSpaceFeed(ctx.app, principal.spaceId);
      try {
        const action = await ctx.app.db.action.findFirst({
          where: { id, ...visibleActions(principal) },
          select: {
            id: true,
            spaceId: true,
            userId: true,
            requestedById: true,
            type: true,
            status: true,
            statusSeq: true,
            updatedAt: true,
            statusUpdates: { orderBy: { seq: 'desc' }, take: 1 },
          },
        });
        if (!action || !canRead(principal, action)) throw noSuchAction(id);
        const latest = action.statusUpdates[0];
        const current = statusEvent(
          action,
          latest ?? { seq: action.statusSeq, status: action.status, message: null, createdAt: action.updatedAt },
        );
        return closeWithFeed(actionStatusStream(ctx.app, feed, action, current), feed);
      } catch (error) {
        feed.close();
        throw error;
      }
    },
    resolve: (event) => event,
  }),
  actionEvents: t.field({
    type: ActionStatusEvent,
    description:
      'Every status update, from now on, of the actions the caller may see (its space; for agents and approvers, their user\'s), narrowed by the filter.',
    authScopes: { authenticated: true },
    args: { filter: t.arg({ type: ActionFilter, required: false }) },
    subscribe: async (_root, { filter }, ctx) => {
      const principal = ctx.principal!;
      const statuses = filter?.status?.length ? new Set<ActionStatus>(filter.status) : null;
      const types = filter?.type?.length ? new Set(filter.type) : null;
      const userId = filter?.userId != null ? String(filter.userId) : null;
      const feed = await openSpaceFeed(ctx.app, principal.spaceId);
      const stream = visibleStatusStream(
        feed,
        principal,
        (event) => (!statuses || statuses.has(event.status)) && (!types || types.has(event.type)) && (!userId || event.userId === userId),
      );
      return closeWithFeed(stream, feed);
    },
    resolve: (item) => {
      if ('interrupted' in item) throw interruptedError();
      return item;
    },
  }),
}));
