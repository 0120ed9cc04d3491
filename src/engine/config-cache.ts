import { z } from 'zod';
import type { HandlerConfig, KycStatus, PrismaClient } from '../generated/prisma/client.js';
import type { Logger } from '../logger.js';
import { UUID } from './ids.js';
import { briefError, withRedisTimeout } from './infra-errors.js';
import type { SafetyRuleInput } from './safety.js';

/**
 * Per-process caches of what every new action and every execution reads but admins rarely
 * change: the safety rules of a type, the handler configurations of a provider, and what
 * creating an action needs of its user. Invalidated across processes through Redis pub/sub
 * (channel `<REDIS_PREFIX>:config:changed`), so an admin's change takes effect everywhere at
 * once; every entry also expires after `CONFIG_CACHE_TTL_MS` (default 5000 ms), which bounds
 * how stale an entry can be when a message is lost (Redis unreachable, a network partition the
 * client has not noticed yet). While the subscription is down nothing is cached at all: each
 * lookup reads the database, as it would with no cache.
 */

/** Which cached configuration changed: published by every admin write path after it commits. */
export type ConfigChange =
  /** Safety rules of `actionType` (all types when absent) in `spaceId`; null: a global rule, every space. */
  | { kind: 'rules'; spaceId: string | null; actionType?: string }
  /** Handler configurations for `provider` in `spaceId`; `*` or absent: every provider; spaceId null: every space. */
  | { kind: 'handlerConfigs'; spaceId: string | null; provider?: string }
  /** A user's email or KYC status. */
  | { kind: 'user'; spaceId: string; userId: string }
  /** Everything (e.g. after a bulk change or a restore). */
  | 'all';

const changeSchema = z.union([
  z.literal('all'),
  z.strictObject({ kind: z.literal('rules'), spaceId: z.string().nullable(), actionType: z.string().optional() }),
  z.strictObject({ kind: z.literal('handlerConfigs'), spaceId: z.string().nullable(), provider: z.string().optional() }),
  z.strictObject({ kind: z.literal('user'), spaceId: z.string(), userId: z.string() }),
]);

/** What creating an action reads of its user. */
export interface UserSafety {
  id: string;
  email: string | null;
  handle: string;
  kycStatus: KycStatus;
}

/** The Redis channel configuration changes are announced on. */
export function configChangeChannel(redisPrefix: string): string {
  return `${redisPrefix}:config:changed`;
}

/** Anything that can publish on Redis (an ioredis client). */
export interface ConfigChangePublisher {
  publish(channel: string, message: string): Promise<unknown>;
}

/**
 * Announces a change to every process (JSON, as graphql-redis-subscriptions reads it). Never
 * throws and waits at most `timeoutMs`: the entries' TTL is the fallback when Redis is away.
 * Returns whether Redis accepted the message. For processes with no cache of their own (the CLI).
 */
export async function publishConfigChange(
  publisher: ConfigChangePublisher,
  redisPrefix: string,
  change: ConfigChange,
  timeoutMs: number,
): Promise<boolean> {
  try {
    await withRedisTimeout(publisher.publish(configChangeChannel(redisPrefix), JSON.stringify(change)), timeoutMs, 'a configuration change');
    return true;
  } catch {
    return false;
  }
}

/** The provider an action names (an order's `provider` field), else `*`. */
export function providerOf(payload: unknown): string {
  const named = payload as Record<string, unknown> | null | undefined;
  // An order's provider; a purchase's merchant.
  const provider = named?.provider ?? named?.merchant;
  return typeof provider === 'string' ? provider : '*';
}

/**
 * The configuration each handler uses for an action of `spaceId` naming `provider`, from the
 * enabled rows of that space and the global ones for that provider and `*`. Most specific wins:
 * the space's own over the global one, the named provider over `*` (space beats provider: a
 * space's `*` configuration wins over a global one for the named provider).
 */
export function rankHandlerConfigs(rows: readonly HandlerConfig[], provider: string): Map<string, HandlerConfig> {
  const rank = (c: HandlerConfig) => (c.spaceId ? 2 : 0) + (c.provider === provider ? 1 : 0);
  const best = new Map<string, HandlerConfig>();
  for (const row of rows) {
    const current = best.get(row.handler);
    if (!current || rank(row) > rank(current)) best.set(row.handler, row);
  }
  return best;
}

/** Counters of one process's cache, for tests and diagnostics. */
export interface ConfigCacheStats {
  /** Lookups answered from the cache. */
  hits: number;
  /** Lookups that joined a load already in flight for the same key. */
  shared: number;
  /** Database reads started. */
  loads: number;
  /** Loads whose result was not kept: an invalidation or a lost subscription arrived meanwhile. */
  discarded: number;
  /** Changes applied: this process's own and those announced by others. */
  invalidations: number;
  /** Times every entry was dropped (lost or regained subscription, an `all` change, a bad message). */
  clearedAll: number;
  /** Whether entries are being kept (subscribed, and the TTL is not 0). */
  live: boolean;
}

export interface ConfigCacheOptions {
  db: PrismaClient;
  logger: Logger;
  /** How long an entry may be served, in ms (`CONFIG_CACHE_TTL_MS`); 0 disables the cache. */
  ttlMs: number;
  /** Entries kept per kind (rules, handler configurations, users); the oldest go first. Default 10,000. */
  maxEntries?: number;
  redisPrefix: string;
  /** Where invalidations are published. */
  publisher: ConfigChangePublisher;
  /** The subscribing side: graphql-redis-subscriptions over `subscriber`. */
  pubsub: {
    subscribe<T>(trigger: string, onMessage: (message: T) => void): Promise<number>;
    unsubscribe(subId: number): void;
  };
  /** The subscribed connection itself, to notice it drop and come back. */
  subscriber: {
    on(event: 'ready' | 'close' | 'end', listener: () => void): unknown;
    off(event: 'ready' | 'close' | 'end', listener: () => void): unknown;
    ping(): Promise<unknown>;
    status: string;
  };
  /** Longest a publish waits for Redis, in ms (`REDIS_COMMAND_TIMEOUT_MS`). */
  publishTimeoutMs: number;
  /** Monotonic milliseconds (tests). Default `performance.now`. */
  now?: () => number;
}

interface Entry<V, T> {
  value: V;
  expiresAt: number;
  tags: T;
}

interface Flight<V, T> {
  promise: Promise<V>;
  tags: T;
}

/** One kind of entry: its values, its loads in flight and its generation. */
class Slot<V, T> {
  readonly entries = new Map<string, Entry<V, T>>();
  readonly inflight = new Map<string, Flight<V | null, T>>();
  /** Bumped by every invalidation of this kind: a load that began under an older one is not kept. */
  generation = 0;

  drop(match: (tags: T) => boolean): void {
    for (const [key, entry] of this.entries) if (match(entry.tags)) this.entries.delete(key);
    // Later lookups must not join a load that may have read what was just replaced.
    for (const [key, flight] of this.inflight) if (match(flight.tags)) this.inflight.delete(key);
    this.generation++;
  }
}

type RuleTags = { spaceId: string; actionType: string };
type ConfigTags = { spaceId: string; provider: string };
type UserTags = { spaceId: string; userId: string };

/**
 * The per-process cache. Built once by the composition root (`App.configCache`, also
 * `EngineDeps.configCache`); admin write paths call {@link ConfigCache.invalidate} after their
 * transaction commits.
 *
 * Guarantees: two concurrent misses for one key share one database read; an invalidation that
 * arrives while a read is in flight keeps that read's result out of the cache (a generation
 * counter), so a read that began before the change cannot outlive it; a dropped subscription
 * drops everything and caches nothing until Redis is back and the channel is subscribed again
 * (changes may have been announced while away); every entry expires after `ttlMs` regardless.
 */
export class ConfigCache {
  private readonly rules = new Slot<readonly SafetyRuleInput[], RuleTags>();
  private readonly configs = new Slot<ReadonlyMap<string, HandlerConfig>, ConfigTags>();
  private readonly users = new Slot<UserSafety, UserTags>();
  private readonly counters = { hits: 0, shared: 0, loads: 0, discarded: 0, invalidations: 0, clearedAll: 0 };
  private readonly now: () => number;
  private readonly maxEntries: number;
  private readonly channel: string;
  /** Subscribed and the connection confirmed: entries may be kept. */
  private subscribedLive = false;
  private subscribed = false;
  /** Bumped whenever the subscriber connection closes: a confirmation from an older connection is void. */
  private connectionEpoch = 0;
  private closed = false;
  private subId: number | null = null;
  private liveWaiters: Array<() => void> = [];

  constructor(private readonly options: ConfigCacheOptions) {
    this.now = options.now ?? (() => performance.now());
    this.maxEntries = options.maxEntries ?? 10_000;
    this.channel = configChangeChannel(options.redisPrefix);
  }

  /**
   * Subscribes to the change channel and watches the connection. Not awaited by the
   * composition root: with Redis down at start the service still starts, uncached.
   */
  start(): void {
    if (this.options.ttlMs <= 0) return;
    this.options.subscriber.on('close', this.onConnectionLost);
    this.options.subscriber.on('end', this.onConnectionLost);
    this.options.subscriber.on('ready', this.onConnectionReady);
    this.options.pubsub.subscribe<unknown>(this.channel, (message) => this.onMessage(message)).then(
      (id) => {
        this.subscribed = true;
        // Closed while Redis was away (the SUBSCRIBE waited in ioredis's offline queue).
        if (this.closed) return this.options.pubsub.unsubscribe(id);
        this.subId = id;
        // The SUBSCRIBE was answered on the current connection: from here on nothing is missed.
        this.goLive(this.connectionEpoch);
      },
      (error: unknown) => {
        this.options.logger.warn({ err: briefError(error) }, 'cannot subscribe to configuration changes; caching nothing (each lookup reads the database)');
      },
    );
  }

  /**
   * Unsubscribes and drops everything; later lookups read the database. Does not wait for a
   * SUBSCRIBE still pending (Redis away since start): that one is undone when it is answered.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.subscribedLive = false;
    this.options.subscriber.off('close', this.onConnectionLost);
    this.options.subscriber.off('end', this.onConnectionLost);
    this.options.subscriber.off('ready', this.onConnectionReady);
    this.clearAll();
    if (this.subId !== null) this.options.pubsub.unsubscribe(this.subId);
    this.subId = null;
  }

  /** Whether entries are being kept now. */
  get live(): boolean {
    return this.subscribedLive && !this.closed && this.options.ttlMs > 0;
  }

  /** Resolves once entries are being kept (at once if they are); for tests and start-up checks. */
  whenLive(): Promise<void> {
    if (this.live) return Promise.resolve();
    return new Promise((resolve) => this.liveWaiters.push(resolve));
  }

  stats(): ConfigCacheStats {
    return { ...this.counters, live: this.live };
  }

  /**
   * The safety rules for `type` that apply in `spaceId`, enabled or not: the global ones
   * (`spaceId` null) and the space's own. Frozen: shared by every caller.
   */
  safetyRules(spaceId: string, type: string): Promise<readonly SafetyRuleInput[]> {
    return this.lookup(this.rules, `${spaceId}\u0000${type}`, { spaceId, actionType: type }, async () =>
      deepFreeze(
        await this.options.db.safetyRule.findMany({
          where: { actionType: type, OR: [{ spaceId: null }, { spaceId }] },
          select: { spaceId: true, actionType: true, kind: true, limit: true, windowSeconds: true, enabled: true, condition: true, graceSeconds: true, approvalsRequired: true, escalateAfterMinutes: true, escalateTo: true },
        }),
      ),
    );
  }

  /**
   * The configuration each handler uses for actions of `spaceId` naming `provider` (`*` when the
   * payload names none), by handler name; see {@link rankHandlerConfigs}. Frozen, settings included.
   */
  handlerConfigs(spaceId: string, provider: string): Promise<ReadonlyMap<string, HandlerConfig>> {
    return this.lookup(this.configs, `${spaceId}\u0000${provider}`, { spaceId, provider }, async () => {
      const rows = await this.options.db.handlerConfig.findMany({
        where: { enabled: true, provider: { in: [provider, '*'] }, OR: [{ spaceId: null }, { spaceId }] },
      });
      const ranked = rankHandlerConfigs(rows, provider);
      for (const row of ranked.values()) deepFreeze(row);
      return ranked;
    });
  }

  /**
   * What creating an action reads of a user of `spaceId`, or null when there is no such user
   * there. Null is not cached: a user created a moment later is found at once.
   */
  async userSafety(spaceId: string, userId: string): Promise<UserSafety | null> {
    if (!UUID.test(userId)) return null;
    return this.lookup(this.users, `${spaceId}\u0000${userId}`, { spaceId, userId }, async () => {
      const user = await this.options.db.user.findFirst({ where: { id: userId, spaceId }, select: { id: true, email: true, handle: true, kycStatus: true } });
      return user ? Object.freeze(user) : null;
    });
  }

  /**
   * Drops what `change` affects in this process at once, then announces it to every other
   * process. Call after the change has committed. Never throws; waits at most
   * `REDIS_COMMAND_TIMEOUT_MS`. Returns whether the announcement reached Redis (when it did not,
   * other processes pick the change up within the TTL).
   */
  async invalidate(change: ConfigChange): Promise<boolean> {
    this.apply(change);
    const sent = await publishConfigChange(this.options.publisher, this.options.redisPrefix, change, this.options.publishTimeoutMs);
    if (!sent) {
      this.options.logger.warn(
        { change: typeof change === 'string' ? change : change.kind, ttlMs: this.options.ttlMs },
        'could not announce a configuration change on Redis; other processes pick it up when their cached copy expires (CONFIG_CACHE_TTL_MS)',
      );
    }
    return sent;
  }

  /** `load` answering null means "no such thing": passed on, never cached. */
  private lookup<V, T, R extends V | null>(slot: Slot<V, T>, key: string, tags: T, load: () => Promise<R>): Promise<R> {
    if (!this.live) {
      this.counters.loads++;
      return load();
    }
    const entry = slot.entries.get(key);
    if (entry) {
      if (entry.expiresAt > this.now()) {
        this.counters.hits++;
        return Promise.resolve(entry.value as R);
      }
      slot.entries.delete(key);
    }
    const inflight = slot.inflight.get(key);
    if (inflight) {
      this.counters.shared++;
      return inflight.promise as Promise<R>;
    }
    this.counters.loads++;
    const generation = slot.generation;
    const flight: Flight<V | null, T> = {
      tags,
      promise: load().then(
        (value) => {
          if (slot.inflight.get(key) === flight) slot.inflight.delete(key);
          if (value === null) return value;
          if (slot.generation !== generation || !this.live) {
            this.counters.discarded++;
            return value;
          }
          if (slot.entries.size >= this.maxEntries) {
            const oldest = slot.entries.keys().next();
            if (!oldest.done) slot.entries.delete(oldest.value);
          }
          slot.entries.set(key, { value: value as V, tags, expiresAt: this.now() + this.options.ttlMs });
          return value;
        },
        (error: unknown) => {
          if (slot.inflight.get(key) === flight) slot.inflight.delete(key);
          throw error;
        },
      ),
    };
    slot.inflight.set(key, flight);
    return flight.promise as Promise<R>;
  }

  private apply(change: ConfigChange): void {
    this.counters.invalidations++;
    if (change === 'all') return this.clearAll();
    switch (change.kind) {
      case 'rules':
        return this.rules.drop(
          (t) => (change.spaceId === null || t.spaceId === change.spaceId) && (change.actionType === undefined || t.actionType === change.actionType),
        );
      case 'handlerConfigs':
        return this.configs.drop(
          (t) =>
            (change.spaceId === null || t.spaceId === change.spaceId) &&
            (change.provider === undefined || change.provider === '*' || t.provider === change.provider),
        );
      case 'user':
        return this.users.drop((t) => t.spaceId === change.spaceId && t.userId === change.userId);
      default:
        return assertNever(change);
    }
  }

  private clearAll(): void {
    this.counters.clearedAll++;
    this.rules.drop(() => true);
    this.configs.drop(() => true);
    this.users.drop(() => true);
  }

  private onMessage(message: unknown): void {
    const parsed = changeSchema.safeParse(message);
    if (!parsed.success) {
      // Something changed, but what cannot be told: the safe reading is everything.
      this.options.logger.warn('unreadable message on the configuration change channel; dropping every cached entry');
      return this.clearAll();
    }
    this.apply(parsed.data);
  }

  private readonly onConnectionLost = (): void => {
    this.connectionEpoch++;
    // Changes announced from now until the channel is subscribed again would be missed.
    this.subscribedLive = false;
    this.clearAll();
  };

  private readonly onConnectionReady = (): void => {
    if (!this.subscribed || this.closed) return;
    const epoch = this.connectionEpoch;
    // ioredis sends the SUBSCRIBE again before it reports `ready`; a PING queued after it is
    // answered only once that SUBSCRIBE has been, so from its answer on nothing is missed.
    this.options.subscriber.ping().then(
      () => this.goLive(epoch),
      () => undefined, // the connection dropped again; the next `ready` tries again
    );
  };

  private goLive(epoch: number): void {
    if (this.closed || epoch !== this.connectionEpoch || this.options.subscriber.status !== 'ready') return;
    // Whatever was read while the subscription was down is not kept.
    this.clearAll();
    this.subscribedLive = true;
    const waiters = this.liveWaiters;
    this.liveWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

function assertNever(value: never): never {
  throw new Error(`unexpected configuration change: ${JSON.stringify(value)}`);
}

/** Builds the cache and starts listening for changes (see {@link ConfigCache.start}). */
export function createConfigCache(options: ConfigCacheOptions): ConfigCache {
  const cache = new ConfigCache(options);
  cache.start();
  return cache;
}
