import { Prisma } from '../generated/prisma/client.js';
import { UnavailableError } from './errors.js';

/**
 * Failures of the service's own dependencies (PostgreSQL, Redis) as opposed to a caller's
 * mistake or a handler's failure. They are retryable: nothing about the request was wrong.
 * Classified once here, used by the worker (an outage does not use up an action's attempts)
 * and by the API (an outage is answered with UNAVAILABLE / SAFETY_UNAVAILABLE, not a 500).
 */
export type Dependency = 'postgres' | 'redis';

/** Prisma error codes that mean the database could not be used, not that the query was wrong. */
const PRISMA_UNAVAILABLE_CODES = new Set([
  'P1001', // can't reach database server
  'P1002', // database server reached but timed out
  'P1008', // operations timed out
  'P1017', // server has closed the connection
  'P2024', // timed out fetching a connection from the pool
  'P2028', // transaction API error (expired / closed by a dropped connection)
]);

/** Driver adapter error kinds (in `meta.driverAdapterError.cause.kind`) that mean the same. */
const ADAPTER_UNAVAILABLE_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections', 'TransactionAlreadyClosed']);

/** PostgreSQL SQLSTATEs: admin shutdown, crash shutdown, cannot connect now, connection exceptions (08…). */
const PG_UNAVAILABLE_STATES = /^(57P0[123]|08...|53300)$/;

const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ECONNABORTED']);

/** node-postgres messages of a lost or unobtainable connection. */
const PG_MESSAGES =
  /Connection terminated|connection error and is not queryable|Client was closed and is not queryable|timeout exceeded when trying to connect|Can't reach database server|terminating connection|the database system is (shutting down|starting up|in recovery mode)|Server has closed the connection/i;

/** ioredis messages of a lost connection (offline queue off, retries exhausted, closed). */
const REDIS_MESSAGES = /Connection is closed|Stream isn't writeable|Reached the max retries per request limit|max retries per request|Redis is not reachable|Command timed out|LOADING Redis is loading/i;

/** PostgreSQL could not be used by a statement sent on the pool directly (not through Prisma), with node-postgres's error as cause. */
export class PostgresUnavailableError extends Error {
  override name = 'PostgresUnavailableError';
}

/** A Redis command that got no answer within `REDIS_COMMAND_TIMEOUT_MS`. */
export class RedisTimeoutError extends Error {
  override name = 'RedisTimeoutError';
  constructor(what: string, ms: number) {
    super(`Redis did not answer ${what} within ${ms} ms`);
  }
}

/**
 * Which of our dependencies `error` says is unavailable, or null when it is some other failure.
 * `strict`: only errors our own clients raise (Prisma, its driver adapter, ioredis commands, our
 * Redis timeout) count, not a bare message that merely reads like one — for errors a handler
 * throws, which may come from a provider's own client ("Connection terminated" from an SDK is the
 * provider's failure, not ours).
 */
export function unavailableDependency(error: unknown, depth = 0, strict = false): Dependency | null {
  if (depth > 5 || typeof error !== 'object' || error === null) return null;
  if (error instanceof RedisTimeoutError) return 'redis';
  if (error instanceof PostgresUnavailableError) return 'postgres';
  if (error instanceof AggregateError) {
    for (const inner of error.errors) {
      const found = unavailableDependency(inner, depth + 1, strict);
      if (found) return found;
    }
  }
  const e = error as { name?: unknown; code?: unknown; message?: unknown; meta?: unknown; cause?: unknown; command?: unknown };
  const name = typeof e.name === 'string' ? e.name : '';
  const message = typeof e.message === 'string' ? e.message : '';
  const code = typeof e.code === 'string' ? e.code : '';
  if (error instanceof Prisma.PrismaClientInitializationError) return 'postgres';
  if (error instanceof Prisma.PrismaClientKnownRequestError) {
    if (PRISMA_UNAVAILABLE_CODES.has(error.code)) return 'postgres';
    const kind = (error.meta as { driverAdapterError?: { cause?: { kind?: string; code?: string } } } | undefined)?.driverAdapterError?.cause;
    if (kind?.kind && ADAPTER_UNAVAILABLE_KINDS.has(kind.kind)) return 'postgres';
    if (kind?.kind === 'postgres' && kind.code && PG_UNAVAILABLE_STATES.test(kind.code)) return 'postgres';
    // Any other code is about the query (a unique violation, a missing row…), except a raw
    // query's, whose driver message is all there is to go by.
    return error.code === 'P2010' && PG_MESSAGES.test(message) ? 'postgres' : null;
  }
  if (error instanceof Prisma.PrismaClientUnknownRequestError || error instanceof Prisma.PrismaClientRustPanicError) {
    return PG_MESSAGES.test(message) ? 'postgres' : null;
  }
  if (name === 'DriverAdapterError') {
    const cause = e.cause as { kind?: string } | undefined;
    if (cause?.kind && ADAPTER_UNAVAILABLE_KINDS.has(cause.kind)) return 'postgres';
  }
  if (name === 'MaxRetriesPerRequestError' || (e.command !== undefined && REDIS_MESSAGES.test(message))) return 'redis';
  if (strict) return unavailableDependency(e.cause, depth + 1, strict);
  if (REDIS_MESSAGES.test(message)) return 'redis';
  if (PG_MESSAGES.test(message)) return 'postgres';
  if (code && PG_UNAVAILABLE_STATES.test(code) && 'severity' in e) return 'postgres';
  return unavailableDependency(e.cause, depth + 1, strict);
}

/** A socket-level failure with no more to say which dependency it was (ECONNREFUSED, ECONNRESET…). */
export function isSocketError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && SOCKET_CODES.has(code);
}

/** Whether `error` is an outage of PostgreSQL or Redis (retryable; not the caller's or a handler's fault). */
export function isInfrastructureError(error: unknown): boolean {
  return unavailableDependency(error) !== null;
}

/** Like {@link isInfrastructureError}, for errors a handler throws: only our own clients' errors count. */
export function isOwnInfrastructureError(error: unknown): boolean {
  return unavailableDependency(error, 0, true) !== null;
}

/**
 * Races `promise` against a timer: a Redis call on a request path never waits longer than
 * `ms` (ioredis would otherwise keep it in its offline queue until Redis is back).
 */
export async function withRedisTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  // The late outcome of a call given up on must not become an unhandled rejection.
  promise.catch(() => {});
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new RedisTimeoutError(what, ms)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a client is told to wait before retrying after an outage answer. */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 2;

const DEPENDENCY_LABEL: Record<Dependency, string> = { postgres: 'database', redis: 'queue and event store (Redis)' };

/**
 * The answer to a request that met an outage of PostgreSQL or Redis, or null for any other
 * error. Names the dependency, never the machine (no host, port or driver text).
 */
export function unavailableError(error: unknown): UnavailableError | null {
  const dependency = unavailableDependency(error);
  if (!dependency) return null;
  const unavailable = new UnavailableError(
    `the service's ${DEPENDENCY_LABEL[dependency]} is unavailable right now; try again in a few seconds`,
    UNAVAILABLE_RETRY_AFTER_SECONDS,
  );
  Object.defineProperty(unavailable, 'cause', { value: error, enumerable: false, configurable: true, writable: true });
  return unavailable;
}

/** One short line for the log: Prisma's multi-line "Invalid `…` invocation" preamble dropped. */
export function briefError(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines[lines.length - 1] ?? text).slice(0, 300);
}
