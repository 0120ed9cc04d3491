import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import type { PgConnectionOptions } from './connection.js';

/** Options for {@link createPrismaClient}. */
export interface PrismaClientOptions {
  /** The database, as discrete fields (embedded or external PostgreSQL alike). */
  connection: PgConnectionOptions;
  /** Most connections the pool opens: 1 for the embedded PostgreSQL, `DB_POOL_MAX` otherwise. */
  poolMax: number;
  /** Where connection errors reported by the pool are told (one line each, no credentials). */
  log?: (msg: string) => void;
}

/**
 * How long anything waits for a pooled connection, whether to open one or for one to be
 * released. With `poolMax: 1` every query queues behind an open interactive transaction; a
 * wait this long means something holds the connection (typically a query on the outer client
 * inside `$transaction`, which can never be served), so it fails instead of hanging.
 */
const CONNECTION_TIMEOUT_MS = 5_000;
/** The embedded database serves one connection, so waiting behind another transaction is normal there. */
const SINGLE_CONNECTION_TIMEOUT_MS = 10_000;
const SINGLE_CONNECTION_IDLE_MS = 1_000;
/** Prisma's wait for a connection to start an interactive transaction (its default is 2 s). */
const TRANSACTION_MAX_WAIT_MS = 5_000;
/** Longest an interactive transaction may run before Prisma rolls it back (its default is 5 s). */
const TRANSACTION_TIMEOUT_MS = 15_000;

/**
 * Builds the service's PrismaClient over `@prisma/adapter-pg` (node-postgres pool) from
 * discrete connection fields. Nothing connects until the first query.
 *
 * Contention surfaces as errors, not hangs: waiting for a pooled connection is bounded
 * (5 s; 10 s on the embedded database), so are an interactive transaction's start (`maxWait`, the same) and its run (`timeout`
 * 15 s); a single call may pass its own `{ maxWait, timeout }` to `$transaction`.
 */
export function createPrismaClient(opts: PrismaClientOptions): PrismaClient {
  const { connection, poolMax, log } = opts;
  const where = `${connection.host}:${connection.port}/${connection.database}`;
  const pool = new pg.Pool({
    host: connection.host,
    port: connection.port,
    user: connection.user,
    password: connection.password,
    database: connection.database,
    max: poolMax,
    // A server that does not answer (down, or unreachable) fails a request within a few seconds.
    connectionTimeoutMillis: poolMax === 1 ? SINGLE_CONNECTION_TIMEOUT_MS : CONNECTION_TIMEOUT_MS,
    // A single connection is all the embedded server serves; holding it idle for pg's default
    // 10 s would keep a second pool (migrations, a CLI command) waiting that long.
    idleTimeoutMillis: poolMax === 1 ? SINGLE_CONNECTION_IDLE_MS : undefined,
    application_name: 'action-engine',
  });
  // Until Prisma first connects, the pool has no error listener: an idle connection dropped by the
  // server would otherwise be an unhandled 'error' event.
  pool.on('error', (err) => log?.(`PostgreSQL ${where}: idle pooled connection failed: ${err.message}`));
  const adapter = new PrismaPg(pool, {
    // The pool is this client's: $disconnect ends it.
    disposeExternalPool: true,
    onConnectionError: (err) => log?.(`PostgreSQL ${where}: connection failed during a transaction: ${err.message}`),
  });
  const client = new PrismaClient({
    adapter,
    transactionOptions: { maxWait: poolMax === 1 ? SINGLE_CONNECTION_TIMEOUT_MS : TRANSACTION_MAX_WAIT_MS, timeout: TRANSACTION_TIMEOUT_MS },
  });
  pools.set(client, pool);
  return client;
}

const pools = new WeakMap<PrismaClient, pg.Pool>();

/**
 * The node-postgres pool under a client made by {@link createPrismaClient}: the lifecycle writer
 * sends its few hot statements on it directly (no query-engine round through Prisma), sharing the
 * connections and their limits with everything else. Undefined for any other client.
 */
export function poolOf(client: unknown): pg.Pool | undefined {
  return pools.get(client as PrismaClient);
}
