import { createOutboundFetch } from './engine/outbound.js';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';
import { applyMigrations } from './db/migrations.js';
import { createPrismaClient } from './db/prisma-client.js';
import { ensureRedis } from './db/local-redis.js';
import { openDatabase } from './db/open-database.js';
import type { PrismaClient } from './generated/prisma/client.js';
import type { Logger } from './logger.js';
import { createMailer, type Mailer } from './mail/mailer.js';
import { createMetrics, registerQueueDepth, type Metrics } from './metrics.js';
import { ActionTypeRegistry, builtInActionTypes, type ActionTypeDefinition } from './engine/action-types.js';
import { PendingScopes } from './engine/pending-scopes.js';
import { builtInHandlers } from './handlers/index.js';
import { HandlerRegistry } from './handlers/registry.js';
import type { ActionHandler, HandlerServices } from './handlers/types.js';
import { expireOverdueApprovals } from './engine/approvals.js';
import type { EngineDeps } from './engine/deps.js';
import { createAuthenticator, type Authenticator } from './engine/identity.js';
import { keyRevocationChannel, KeyRevocations, type KeyRevokedMessage } from './engine/key-revocation.js';
import { createRateLimiter } from './engine/rate-limiter.js';
import { recordedUnits } from './engine/quota.js';
import { createActionQueue } from './engine/queue.js';
import { createWebhookQueue } from './engine/webhook-queue.js';
import { createApprovalQueue } from './engine/approval-jobs.js';
import { createStatusPublisher } from './engine/status-publisher.js';
import { briefError, withRedisTimeout } from './engine/infra-errors.js';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import path from 'node:path';
import { createSecretsBox } from './engine/secrets.js';
import { createConfigCache, type ConfigCache } from './engine/config-cache.js';
import { loadSigner, registerSigningKey, type Signer } from './engine/signing.js';

/** Whether the database is usable: reachable and migrated. */
export interface DatabaseState {
  /** `embedded` (PGlite under DATA_DIR) or `postgres` (DATABASE_URL). */
  kind: 'embedded' | 'postgres';
  migrated: boolean;
  /** Why migrations have not been applied yet, if they have not. */
  migrationError: string | null;
}

/**
 * Everything the service runs on, built once by {@link createApp} and handed to the server,
 * the worker and the engine. Nothing else constructs clients.
 */
export interface App {
  config: Config;
  logger: Logger;
  db: PrismaClient;
  /** Commands: rate-limit scripts, readiness. */
  redis: Redis;
  /** Pub/sub publisher and subscriber: a subscribed connection can do nothing else. */
  publisher: Redis;
  subscriber: Redis;
  /** Options for BullMQ's own connections (it needs `maxRetriesPerRequest: null`). */
  queueConnection: RedisOptions;
  mailer: Mailer;
  metrics: Metrics;
  database: DatabaseState;
  /** Status events across processes (graphql-redis-subscriptions over `publisher`/`subscriber`). */
  pubsub: RedisPubSub;
  /** What the engine's systems run on. */
  engine: EngineDeps;
  /** The handler modules, by type and chain order. */
  handlers: HandlerRegistry;
  /** What handlers may use (worker executions and API-side rollbacks). */
  handlerServices: HandlerServices;
  auth: Authenticator;
  /** Keys revoked on any process (announced on Redis): `auth` has already forgotten them. */
  keyRevocations: KeyRevocations;
  /**
   * Safety rules, handler configurations and users, cached per process and invalidated across
   * processes on Redis (`<REDIS_PREFIX>:config:changed`); the same object as `engine.configCache`.
   */
  configCache: ConfigCache;
  /** The engine's Ed25519 signing key (receipts, audit checkpoints); its public key is in `SigningKey`. */
  signer: Signer;
  close(): Promise<void>;
}

export interface CreateAppOptions {
  /** Apply pending migrations at start. The embedded database is always migrated. */
  migrate: boolean;
  /** Run the safety-net sweep that moves overdue approvals to EXPIRED (API processes do; default true). */
  sweepExpiredApprovals?: boolean;
  /** Handler modules besides the built-in ones (tests register failing or slow handlers here). */
  extraHandlers?: ActionHandler[];
  /** Action types besides the built-in ones, for those handlers. */
  extraActionTypes?: ActionTypeDefinition[];
}

const MIGRATION_RETRY_MAX_MS = 30_000;

/** The composition root. */
export async function createApp(config: Config, logger: Logger, options: CreateAppOptions): Promise<App> {
  const closers: Array<() => Promise<void> | void> = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch (error) {
        logger.warn({ err: error }, 'error while closing');
      }
    }
  };

  try {
    const localRedis = await ensureRedis({
      url: config.redisUrl,
      dataDir: config.dataDir,
      autostart: config.redisAutostart,
      log: (msg) => logger.info(msg),
    });
    closers.push(() => localRedis.stop());

    const target = await openDatabase(config, logger);
    closers.push(() => target.close());
    const { connection, kind } = target;

    const db = createPrismaClient({ connection, poolMax: target.poolMax });
    closers.push(() => db.$disconnect());

    const redisOptions: RedisOptions = { lazyConnect: false, connectionName: 'action-engine' };
    const redis = new Redis(config.redisUrl, { ...redisOptions, maxRetriesPerRequest: 2 });
    const publisher = new Redis(config.redisUrl, { ...redisOptions, maxRetriesPerRequest: 2 });
    const subscriber = new Redis(config.redisUrl, { ...redisOptions, maxRetriesPerRequest: null });
    for (const [name, client] of [['redis', redis], ['publisher', publisher], ['subscriber', subscriber]] as const) {
      // Without a listener ioredis prints every reconnect failure as an unhandled error.
      client.on('error', (error) => logger.warn({ client: name, err: error.message }, 'redis connection error'));
      closers.push(async () => {
        client.disconnect();
      });
    }

    const mailer = createMailer({ smtpUrl: config.smtpUrl, from: config.mailFrom, outboxDir: config.outboxDir, logger });
    closers.push(() => mailer.close());

    const database: DatabaseState = { kind, migrated: false, migrationError: null };
    let stopRetry = false;
    closers.push(() => {
      stopRetry = true;
    });
    if (options.migrate || kind === 'embedded') {
      const migrate = async (delayMs: number): Promise<void> => {
        try {
          const { applied } = await applyMigrations({ connection, log: (msg) => logger.info(msg) });
          database.migrated = true;
          database.migrationError = null;
          logger.info({ applied }, applied.length ? 'migrations applied' : 'database schema up to date');
        } catch (error) {
          database.migrationError = error instanceof Error ? error.message : String(error);
          if (kind === 'embedded') throw error;
          // An unreachable server must not stop the API from starting: /readyz says why, and
          // migrations are applied as soon as the database answers.
          logger.error({ err: database.migrationError, retryInMs: delayMs }, 'cannot migrate the database yet');
          const timer = setTimeout(() => {
            if (!stopRetry) void migrate(Math.min(delayMs * 2, MIGRATION_RETRY_MAX_MS));
          }, delayMs);
          timer.unref();
        }
      };
      await migrate(1000);
    } else {
      database.migrated = true;
    }

    // Loaded (or generated into DATA_DIR) at start, so a bad key stops the process now, not at the first receipt.
    const signer = loadSigner({ key: config.signingKey, keyFile: path.join(config.dataDir, 'signing.key'), logger });
    if (database.migrated) {
      // Not awaited (a database that is away must not delay the start); the sealer registers the
      // key before its first checkpoint in any case.
      registerSigningKey(db, signer).catch((error: unknown) => logger.warn({ err: briefError(error) }, 'could not record the signing key yet; the audit sealer will'));
    }

    const pubsub = new RedisPubSub({ publisher, subscriber });
    const queue = createActionQueue({
      connection: redisOptionsFromUrl(config.redisUrl),
      prefix: config.redisPrefix,
      backoffMs: config.retryBackoffMs,
      clock: () => new Date(),
      commandTimeoutMs: config.redisCommandTimeoutMs,
      onError: (error) => logger.warn({ client: 'queue', err: error.message }, 'redis connection error'),
      heartbeats: redis,
    });
    closers.push(() => queue.close());
    const webhooks = createWebhookQueue({
      connection: redisOptionsFromUrl(config.redisUrl),
      prefix: config.redisPrefix,
      commandTimeoutMs: config.redisCommandTimeoutMs,
      onError: (error) => logger.warn({ client: 'webhook-queue', err: error.message }, 'redis connection error'),
    });
    closers.push(() => webhooks.close());
    const approvalJobs = createApprovalQueue({
      connection: redisOptionsFromUrl(config.redisUrl),
      prefix: config.redisPrefix,
      commandTimeoutMs: config.redisCommandTimeoutMs,
      onError: (error) => logger.warn({ client: 'approval-queue', err: error.message }, 'redis connection error'),
    });
    closers.push(() => approvalJobs.close());
    const metrics = createMetrics();
    registerQueueDepth(metrics, () =>
      withRedisTimeout(queue.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'failed'), config.redisCommandTimeoutMs, 'the queue depth').catch(() => ({})),
    );
    // Subscribes on the shared subscriber connection (not awaited: with Redis down at start the
    // service starts, and reads the database for every lookup until the channel is subscribed).
    const configCache = createConfigCache({
      db,
      logger,
      ttlMs: config.configCacheTtlMs,
      redisPrefix: config.redisPrefix,
      publisher,
      pubsub,
      subscriber,
      publishTimeoutMs: config.redisCommandTimeoutMs,
    });
    closers.push(() => configCache.close());
    const statusEvents = createStatusPublisher(pubsub, config.redisPrefix, logger, config.redisCommandTimeoutMs);
    const engine: EngineDeps = {
      queue,
      pendingScopes: new PendingScopes(),
      statusPublisher: {
        publish(events) {
          for (const e of events) metrics.actionStatusChanges.inc({ type: e.type, status: e.status });
          return statusEvents.publish(events);
        },
      },
      db,
      rateLimiter: createRateLimiter(redis, {
        prefix: config.redisPrefix,
        timeoutMs: config.redisCommandTimeoutMs,
        rebuild: (subject, sinceMs) => recordedUnits(db, subject, sinceMs),
      }),
      mailer,
      logger,
      types: new ActionTypeRegistry([...builtInActionTypes({ noop: config.enableNoopHandler }), ...(options.extraActionTypes ?? [])]),
      config,
      clock: () => new Date(),
      secrets: createSecretsBox({ key: config.secretsKey, keyFile: path.join(config.dataDir, 'secrets.key'), logger }),
      configCache,
      signer,
      webhooks,
      approvalJobs,
    };
    // A safety net only: each PENDING action expires by its own delayed job (approval-jobs.ts).
    if (options.sweepExpiredApprovals ?? true) {
      const sweep = setInterval(() => {
        if (!database.migrated) return;
        expireOverdueApprovals(engine).then(
          (n) => n && logger.info({ expired: n }, 'approvals expired'),
          (error: unknown) => logger.warn({ err: error }, 'approval expiry sweep failed; retrying next round'),
        );
      }, config.expirySweepSeconds * 1000);
      sweep.unref();
      closers.push(() => clearInterval(sweep));
    }

    const auth = createAuthenticator(db);
    const keyRevocations = new KeyRevocations();
    // Not awaited: with Redis down at start the service still starts (ioredis subscribes on connect).
    const revocationSub = pubsub.subscribe<KeyRevokedMessage>(keyRevocationChannel(config.redisPrefix), (message) => {
      if (typeof message?.apiKeyId !== 'string') return;
      auth.forget(message.apiKeyId);
      keyRevocations.emit(message.apiKeyId);
    });
    revocationSub.catch((error: unknown) => logger.warn({ err: error }, 'cannot subscribe to key revocations; relying on the periodic re-check'));
    closers.push(() => revocationSub.then((id) => pubsub.unsubscribe(id), () => undefined));

    return {
      config,
      logger,
      db,
      engine,
      handlerServices: { mailer, fetch: createOutboundFetch({ blockPrivate: config.outboundBlockPrivate, timeoutMs: config.outboundTimeoutMs }), filesRoot: config.filesRoot, clock: () => new Date(), logger, baseUrl: config.baseUrl, caldavUrl: config.caldavUrl },
      handlers: new HandlerRegistry([...builtInHandlers({ noop: config.enableNoopHandler }), ...(options.extraHandlers ?? [])]),
      pubsub,
      auth,
      keyRevocations,
      configCache,
      signer,
      redis,
      publisher,
      subscriber,
      queueConnection: { ...redisOptionsFromUrl(config.redisUrl), maxRetriesPerRequest: null },
      mailer,
      metrics,
      database,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** ioredis options from a `redis://` / `rediss://` URL, for clients (BullMQ's) built from options. */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === 'rediss:' ? {} : undefined,
  };
}
