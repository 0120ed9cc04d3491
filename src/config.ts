import path from 'node:path';
import { z } from 'zod';
import type { KeyObject } from 'node:crypto';
import { parseSecretsKey } from './engine/secrets.js';
import { parseSigningKey } from './engine/signing.js';

/**
 * The one reader of the environment. Every variable, its default and its meaning is listed
 * in the README; keep the two in step (tests/unit/config.test.ts checks the names).
 */
const booleanish = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  HOST: z.string().min(1).default('127.0.0.1'),
  BASE_URL: z.url().optional(),
  DATA_DIR: z.string().min(1).default('.data'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  DB_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:_-]+$/, 'letters, digits, : _ - only').default('ae'),
  REDIS_AUTOSTART: booleanish.default(true),
  SMTP_URL: z.string().regex(/^smtps?:\/\//, 'must be an smtp:// or smtps:// URL').optional(),
  MAIL_FROM: z.string().min(3).default('Action Engine <action-engine@localhost>'),
  OUTBOX_DIR: z.string().min(1).optional(),
  FILES_ROOT: z.string().min(1).optional(),
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(5),
  RETRY_BACKOFF_MS: z.coerce.number().int().min(1).max(600_000).default(1000),
  RECONCILE_SECONDS: z.coerce.number().positive().max(3600).default(30),
  ENABLE_NOOP_HANDLER: booleanish.default(false),
  APPROVAL_TTL_HOURS: z.coerce.number().positive().max(24 * 30).default(24),
  EXPIRY_SWEEP_SECONDS: z.coerce.number().positive().max(3600).default(300),
  ESCALATION_MINUTE_MS: z.coerce.number().int().min(10).max(60_000).default(60_000),
  APPROVAL_REQUESTS_PER_HOUR: z.coerce.number().int().min(1).max(100_000).default(20),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).default(10_000),
  MAX_REQUEST_BYTES: z.coerce.number().int().min(1024).default(1_000_000),
  // Never echoed in an error: the message says what form is expected, not what was given.
  SECRETS_KEY: z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return undefined;
      try {
        return parseSecretsKey(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
  // Never echoed in an error either.
  SIGNING_KEY: z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return undefined;
      try {
        return parseSigningKey(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
  AUDIT_SEAL_INTERVAL_MS: z.coerce.number().int().min(10).max(60_000).default(250),
  WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: z.coerce.number().int().min(1).max(10_000).default(100),
  WS_MAX_CONNECTIONS_PER_KEY: z.coerce.number().int().min(1).max(100_000).default(50),
  WS_KEY_RECHECK_SECONDS: z.coerce.number().positive().max(3600).default(5),
  REDIS_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(2000),
  WORKER_LOCK_MS: z.coerce.number().int().min(1000).max(600_000).default(8000),
  WORKER_STALLED_CHECK_MS: z.coerce.number().int().min(500).max(600_000).default(4000),
  CONFIG_CACHE_TTL_MS: z.coerce.number().int().min(0).max(3_600_000).default(5000),
  CALDAV_URL: z.string().regex(/^https?:\/\//, 'must be an http:// or https:// URL').optional(),
  OUTBOUND_BLOCK_PRIVATE: booleanish.default(false),
  OUTBOUND_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(10_000),
  GRACE_SECONDS: z.coerce.number().int().min(0).max(86_400).default(0),
  WEBHOOK_RETRY_BASE_MS: z.coerce.number().int().min(10).max(3_600_000).default(5000),
  WEBHOOK_MAX_FAILURES: z.coerce.number().int().min(1).max(1000).default(10),
  // The key `action-engine mcp` (stdio) acts with; read by that command only, never echoed.
  ACTION_ENGINE_API_KEY: z.string().optional(),
});

/** Typed settings, handed to every part by the composition root. */
export interface Config {
  port: number;
  host: string;
  /** Public address used in links (approval emails). */
  baseUrl: string;
  dataDir: string;
  /** Unset: an embedded PostgreSQL (PGlite) under `dataDir`. */
  databaseUrl: string | undefined;
  dbPoolMax: number;
  redisUrl: string;
  redisPrefix: string;
  redisAutostart: boolean;
  smtpUrl: string | undefined;
  mailFrom: string;
  outboxDir: string;
  filesRoot: string;
  workerConcurrency: number;
  /** First retry delay of a failed execution attempt; doubles per attempt. */
  retryBackoffMs: number;
  /** How often the worker re-queues APPROVED actions that have no job. */
  reconcileSeconds: number;
  /** Registers the `noop` action type and handler (benchmarks, tests). */
  enableNoopHandler: boolean;
  approvalTtlSeconds: number;
  /**
   * How often API processes sweep for overdue approvals left PENDING (the safety net: each PENDING
   * action normally expires by its own delayed job, see approval-jobs.ts).
   */
  expirySweepSeconds: number;
  /** How long one "minute" of a rule's `escalateAfterMinutes` is (60000; shorter only for tests and demos). */
  escalationMinuteMs: number;
  /** Approval requests (actions that need approval) allowed per user and type per hour. */
  approvalRequestsPerHour: number;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  shutdownTimeoutMs: number;
  maxRequestBytes: number;
  /** AES-256 key for handler secrets; unset: generated into `DATA_DIR/secrets.key` on first use. */
  secretsKey: Buffer | undefined;
  /**
   * Ed25519 private key that signs audit checkpoints and receipts; unset: read from, or generated
   * into, `DATA_DIR/signing.key` at start.
   */
  signingKey: KeyObject | undefined;
  /** Pause between the audit sealer's rounds (worker processes); checkpoints trail commits by about this. */
  auditSealIntervalMs: number;
  /** graphql-ws: operations running at once on one connection. */
  wsMaxSubscriptionsPerConnection: number;
  /** graphql-ws: open connections per API key, per API process. */
  wsMaxConnectionsPerKey: number;
  /** graphql-ws: how often each open connection's key is checked again (revoked keys are also announced on Redis). */
  wsKeyRecheckSeconds: number;
  /** Longest a request waits for a Redis command (enqueue, publish, rate limit) before answering without it. */
  redisCommandTimeoutMs: number;
  /** How long a worker's job lock lasts without renewal: a killed worker's jobs are free again after this. */
  workerLockMs: number;
  /** How often workers look for jobs whose lock has expired (stalled jobs of killed workers). */
  workerStalledCheckMs: number;
  /**
   * Longest a process serves its cached copy of safety rules, handler configurations and users'
   * KYC status and email, in ms (changes are also announced on Redis and apply at once); 0: no cache.
   */
  configCacheTtlMs: number;
  /** The CalDAV calendar collection for `calendar.caldav` in every space (credentials in the URL); unset: per-space configuration, else `calendar.ics`. */
  caldavUrl: string | undefined;
  /** Refuse outbound requests (handlers, webhooks) to private, loopback and link-local addresses. */
  outboundBlockPrivate: boolean;
  /** Longest an outbound HTTP request (provider APIs, webhooks, CalDAV) may take. */
  outboundTimeoutMs: number;
  /** Grace period of approved actions of types that cannot be undone, in seconds (rules' graceSeconds may raise it). */
  graceSeconds: number;
  /** Outbound event webhooks: the delay before a failed delivery's first retry; doubles per attempt, at most an hour. */
  webhookRetryBaseMs: number;
  /** Outbound event webhooks: failed attempts in a row after which an endpoint is disabled. */
  webhookMaxFailures: number;
  /** The API key of `action-engine mcp` (stdio): its principal is the caller of every tool. */
  mcpApiKey: string | undefined;
}

/** The variables the service reads, for the README check. */
export const configVariables = Object.keys(envSchema.shape).sort();

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Parses the environment. Empty strings count as unset, so `FOO=` falls back to the default.
 * Throws a {@link ConfigError} naming every bad variable.
 */
export function loadConfig(env: Record<string, string | undefined>, cwd = process.cwd()): Config {
  const present = Object.fromEntries(
    Object.keys(envSchema.shape)
      .map((k) => [k, env[k]] as const)
      .filter(([, v]) => v !== undefined && v !== ''),
  );
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  const dataDir = path.resolve(cwd, e.DATA_DIR);
  return {
    port: e.PORT,
    host: e.HOST,
    baseUrl: (e.BASE_URL ?? `http://localhost:${e.PORT}`).replace(/\/$/, ''),
    dataDir,
    databaseUrl: e.DATABASE_URL,
    dbPoolMax: e.DB_POOL_MAX,
    redisUrl: e.REDIS_URL,
    redisPrefix: e.REDIS_PREFIX,
    redisAutostart: e.REDIS_AUTOSTART,
    smtpUrl: e.SMTP_URL,
    mailFrom: e.MAIL_FROM,
    outboxDir: path.resolve(cwd, e.OUTBOX_DIR ?? path.join(dataDir, 'outbox')),
    filesRoot: path.resolve(cwd, e.FILES_ROOT ?? path.join(dataDir, 'files')),
    workerConcurrency: e.WORKER_CONCURRENCY,
    retryBackoffMs: e.RETRY_BACKOFF_MS,
    reconcileSeconds: e.RECONCILE_SECONDS,
    enableNoopHandler: e.ENABLE_NOOP_HANDLER,
    approvalTtlSeconds: Math.round(e.APPROVAL_TTL_HOURS * 3600),
    expirySweepSeconds: e.EXPIRY_SWEEP_SECONDS,
    escalationMinuteMs: e.ESCALATION_MINUTE_MS,
    approvalRequestsPerHour: e.APPROVAL_REQUESTS_PER_HOUR,
    logLevel: e.LOG_LEVEL,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    secretsKey: e.SECRETS_KEY,
    signingKey: e.SIGNING_KEY,
    auditSealIntervalMs: e.AUDIT_SEAL_INTERVAL_MS,
    wsMaxSubscriptionsPerConnection: e.WS_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    wsMaxConnectionsPerKey: e.WS_MAX_CONNECTIONS_PER_KEY,
    wsKeyRecheckSeconds: e.WS_KEY_RECHECK_SECONDS,
    redisCommandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS,
    workerLockMs: e.WORKER_LOCK_MS,
    workerStalledCheckMs: e.WORKER_STALLED_CHECK_MS,
    configCacheTtlMs: e.CONFIG_CACHE_TTL_MS,
    caldavUrl: e.CALDAV_URL,
    outboundBlockPrivate: e.OUTBOUND_BLOCK_PRIVATE,
    outboundTimeoutMs: e.OUTBOUND_TIMEOUT_MS,
    graceSeconds: e.GRACE_SECONDS,
    webhookRetryBaseMs: e.WEBHOOK_RETRY_BASE_MS,
    webhookMaxFailures: e.WEBHOOK_MAX_FAILURES,
    mcpApiKey: e.ACTION_ENGINE_API_KEY,
  };
}
