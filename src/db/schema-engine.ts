import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import {
  bindMigrationAwareSqlAdapterFactory,
  type IsolationLevel,
  type SqlDriverAdapter,
  type SqlMigrationAwareDriverAdapterFactory,
  type SqlQuery,
} from '@prisma/driver-adapter-utils';
import type { MigrationList, SchemaEngine as WasmSchemaEngine, SchemaFilter } from '@prisma/schema-engine-wasm';
import pg from 'pg';
import { withDatabase, type PgConnectionOptions } from './connection.js';

export type { MigrationList } from '@prisma/schema-engine-wasm';

type Runtime = typeof import('@prisma/schema-engine-wasm/schema_engine_bg');

/** Prisma's schema engine (WebAssembly build) bound to one database. */
export interface SchemaEngine {
  /**
   * The SQL that turns a database shaped like `from` (a Prisma schema text; `null` = empty)
   * into one shaped like `to`. Empty string when they describe the same database.
   */
  diff(from: string | null, to: string): Promise<string>;
  /**
   * Applies the migrations of `list` that the database has not applied yet, recording them
   * in `_prisma_migrations` as `prisma migrate deploy` does. Returns the names applied now.
   */
  applyMigrations(list: MigrationList): Promise<string[]>;
  /** Frees the engine and ends every pool it opened. Safe to call twice. */
  close(): Promise<void>;
}

/** An error reported by the schema engine, its message stripped of the engine's span trace. */
export class SchemaEngineError extends Error {
  override name = 'SchemaEngineError';
}

/** PostgreSQL could not be reached, or refused us; the message says what to do. */
export class DatabaseConnectionError extends Error {
  override name = 'DatabaseConnectionError';
}

const NO_FILTER: SchemaFilter = { externalTables: [], externalEnums: [] };
const SCHEMA_PATH = 'schema.prisma';
const RUNTIME_KEY = Symbol.for('action-engine.schema-engine-wasm');

/**
 * Opens a schema engine over `connection`. The engine connects at once (it reads the server
 * version), so the database must exist. `schema` is the Prisma schema the engine is started
 * with; leave it out when only applying migrations. With `pool`, the engine runs every query
 * through that pool (which stays the caller's to end): a one-connection pool lets the caller
 * hold session locks on the engine's own connection, and suits servers that allow only one.
 */
export async function openSchemaEngine(options: {
  connection: PgConnectionOptions;
  schema?: string;
  pool?: pg.Pool;
  log?: (line: string) => void;
}): Promise<SchemaEngine> {
  const runtime = await loadRuntime();
  const factory = new TrackingPgFactory(options.connection, options.pool);
  let engine: WasmSchemaEngine;
  try {
    engine = await runtime.SchemaEngine.new(
      { datamodels: options.schema === undefined ? undefined : [[SCHEMA_PATH, options.schema]] },
      (line: string) => options.log?.(line),
      bindMigrationAwareSqlAdapterFactory(factory),
    );
  } catch (error) {
    await factory.disposeAll();
    throw engineError(error);
  }

  let closed = false;
  const schemaTarget = (content: string) => ({ tag: 'schemaDatamodel' as const, files: [{ path: SCHEMA_PATH, content }] });
  return {
    async diff(from, to) {
      const result = await engine
        .diff({
          from: from === null ? { tag: 'empty' } : schemaTarget(from),
          to: schemaTarget(to),
          script: true,
          // With exitCode set the engine answers 2 for a non-empty diff, which is more reliable
          // than recognising its "-- This is an empty migration." placeholder.
          exitCode: true,
          filters: NO_FILTER,
        })
        .catch((error: unknown) => Promise.reject(engineError(error)));
      return result.exitCode === 2 ? (result.stdout ?? '') : '';
    },
    async applyMigrations(list) {
      const result = await engine
        .applyMigrations({ migrationsList: list, filters: NO_FILTER })
        .catch((error: unknown) => Promise.reject(engineError(error)));
      return result.appliedMigrationNames;
    },
    async close() {
      if (closed) return;
      closed = true;
      engine.free();
      await factory.disposeAll();
    },
  };
}

/**
 * `diff(from → to)` without a database of the caller's: the engine insists on a connection even
 * for schema-to-schema diffs, so it gets a scratch database on `server`, dropped afterwards.
 */
export async function diffSchemas(options: {
  server: PgConnectionOptions;
  from: string | null;
  to: string;
  /** The variable to name in connection errors. */
  envVar?: string;
}): Promise<string> {
  const admin = await openPostgresPool(options.server, { envVar: options.envVar });
  const scratch = `ae_scratch_${randomBytes(6).toString('hex')}`;
  try {
    await admin.query(`CREATE DATABASE "${scratch}" TEMPLATE template0`);
    const engine = await openSchemaEngine({ connection: withDatabase(options.server, scratch), schema: options.to });
    try {
      return await engine.diff(options.from, options.to);
    } finally {
      await engine.close();
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS "${scratch}" WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
}

/**
 * A one-connection node-postgres pool (kept open while idle, so session locks survive between
 * queries) whose first connection has succeeded, or a
 * {@link DatabaseConnectionError} that names host:port and says how to fix it. With
 * `createIfMissing`, a missing database is created (as `prisma migrate deploy` does) through
 * the server's `postgres` database. End it with `pool.end()`.
 */
export async function openPostgresPool(
  connection: PgConnectionOptions,
  options: { envVar?: string | undefined; createIfMissing?: boolean; log?: (msg: string) => void } = {},
): Promise<pg.Pool> {
  const envVar = options.envVar ?? 'DATABASE_URL';
  const pool = new pg.Pool({ ...poolConfig(connection), max: 1, idleTimeoutMillis: 0 });
  pool.on('error', () => {
    // An idle connection that dies (server restart, DROP … WITH (FORCE)) must not crash the
    // process; the next query reconnects or fails with its own error.
  });
  try {
    (await pool.connect()).release();
    return pool;
  } catch (error) {
    await pool.end().catch(() => undefined);
    if (options.createIfMissing && pgCode(error) === '3D000') {
      await createDatabase(connection, envVar, options.log);
      return openPostgresPool(connection, { ...options, createIfMissing: false });
    }
    throw explainConnectionError(error, connection, envVar);
  }
}

async function createDatabase(connection: PgConnectionOptions, envVar: string, log?: (msg: string) => void): Promise<void> {
  const admin = await openPostgresPool(withDatabase(connection, 'postgres'), { envVar });
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent(connection.database)}`);
    log?.(`created database ${connection.database} on ${connection.host}:${connection.port}`);
  } catch (error) {
    // Someone else created it at the same moment: fine, that is what we wanted.
    if (pgCode(error) !== '42P04' && pgCode(error) !== '23505') throw error;
  } finally {
    await admin.end();
  }
}

function explainConnectionError(error: unknown, c: PgConnectionOptions, envVar: string): Error {
  const where = `${c.host}:${c.port}`;
  const code = pgCode(error) ?? networkCode(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (code === '3D000') {
    return new DatabaseConnectionError(
      `database "${c.database}" does not exist on PostgreSQL at ${where}; create it (createdb -h ${c.host} -p ${c.port} -U ${c.user} ${c.database}) or point ${envVar} at another database`,
      { cause: error },
    );
  }
  if (code === '28P01' || code === '28000') {
    return new DatabaseConnectionError(
      `PostgreSQL at ${where} refused user "${c.user}" (${detail}); check the user and password in ${envVar}`,
      { cause: error },
    );
  }
  if (code === '57P03') {
    return new DatabaseConnectionError(`PostgreSQL at ${where} is starting up or shutting down; try again in a moment`, {
      cause: error,
    });
  }
  if ((code !== undefined && /^E[A-Z]+$/.test(code)) || /timeout|terminated/i.test(detail)) {
    return new DatabaseConnectionError(
      `cannot reach PostgreSQL at ${where} (${code ?? detail}); start PostgreSQL (e.g. \`service postgresql start\` or \`pg_ctlcluster 15 main start\`) or set ${envVar} to a server that is running (postgresql://user:password@host:port/database)`,
      { cause: error },
    );
  }
  return error instanceof Error ? error : new Error(detail);
}

function pgCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

function networkCode(error: unknown): string | undefined {
  const e = error as { code?: unknown; errors?: { code?: unknown }[] } | null;
  const code = e?.code ?? e?.errors?.[0]?.code;
  return typeof code === 'string' ? code : undefined;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function poolConfig(c: PgConnectionOptions): pg.PoolConfig {
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password,
    database: c.database,
    application_name: 'action-engine-schema',
    connectionTimeoutMillis: 10_000,
  };
}

/**
 * adapter-pg, as the engine's driver, with two fixes:
 * - its `executeScript` splits scripts on every `;`, which breaks dollar-quoted function bodies
 *   (trigger functions) and runs each statement in its own transaction; here the whole script
 *   goes as one simple query, atomic, as the native engine sends it;
 * - every pool it opens is remembered, so {@link disposeAll} can end them (the engine's `free()`
 *   does not), letting processes exit.
 */
class TrackingPgFactory implements SqlMigrationAwareDriverAdapterFactory {
  readonly provider = 'postgres';
  readonly adapterName: string;
  private readonly inner: PrismaPg;
  private readonly open = new Set<SqlDriverAdapter>();

  constructor(
    private readonly connection: PgConnectionOptions,
    externalPool?: pg.Pool,
  ) {
    // With an external pool, adapter-pg's dispose leaves the pool open (its owner ends it).
    this.inner = new PrismaPg(externalPool ?? poolConfig(connection));
    this.adapterName = this.inner.adapterName;
  }

  async connect(): Promise<SqlDriverAdapter> {
    return this.track(await this.inner.connect());
  }

  // adapter-pg's own shadow database is dropped while its pool still holds a connection
  // (notes §5); this one ends the pool first.
  async connectToShadowDb(): Promise<SqlDriverAdapter> {
    const name = `ae_shadow_${randomBytes(6).toString('hex')}`;
    const admin = await openPostgresPool(this.connection);
    try {
      await admin.query(`CREATE DATABASE "${name}" TEMPLATE template0`);
    } finally {
      await admin.end();
    }
    const adapter = await new PrismaPg(poolConfig(withDatabase(this.connection, name))).connect();
    return this.track(adapter, async () => {
      const dropper = await openPostgresPool(this.connection);
      try {
        await dropper.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await dropper.end();
      }
    });
  }

  async disposeAll(): Promise<void> {
    await Promise.allSettled([...this.open].map((a) => a.dispose()));
  }

  private track(adapter: SqlDriverAdapter, afterDispose?: () => Promise<void>): SqlDriverAdapter {
    let disposed = false;
    const tracked: SqlDriverAdapter = {
      provider: adapter.provider,
      adapterName: adapter.adapterName,
      queryRaw: (query: SqlQuery) => adapter.queryRaw(query),
      executeRaw: (query: SqlQuery) => adapter.executeRaw(query),
      // No parameters, so node-postgres uses the simple query protocol, which accepts many statements.
      executeScript: async (script: string) => {
        await adapter.executeRaw({ sql: script, args: [], argTypes: [] });
      },
      startTransaction: (isolationLevel?: IsolationLevel) => adapter.startTransaction(isolationLevel),
      getConnectionInfo: () => adapter.getConnectionInfo?.() ?? { supportsRelationJoins: true },
      dispose: async () => {
        if (disposed) return;
        disposed = true;
        this.open.delete(tracked);
        await adapter.dispose();
        await afterDispose?.();
      },
    };
    this.open.add(tracked);
    return tracked;
  }
}

/** The engine's WebAssembly instance: compiled and instantiated once per process. */
function loadRuntime(): Promise<Runtime> {
  // On globalThis rather than in a module variable: the generated JS glue is one module per
  // process holding one instance, even when a test runner re-evaluates this module per file.
  const holder = globalThis as { [RUNTIME_KEY]?: Promise<Runtime> };
  holder[RUNTIME_KEY] ??= instantiateRuntime().catch((error: unknown) => {
    delete holder[RUNTIME_KEY];
    throw error;
  });
  return holder[RUNTIME_KEY];
}

async function instantiateRuntime(): Promise<Runtime> {
  const runtime = await import('@prisma/schema-engine-wasm/schema_engine_bg');
  const require = createRequire(import.meta.url);
  const wasmPath = path.join(path.dirname(require.resolve('@prisma/schema-engine-wasm')), 'schema_engine_bg.wasm');
  const module = await WebAssembly.compile(await readFile(wasmPath));

  const imports: Record<string, unknown> = { ...runtime };
  for (const [name, fn] of Object.entries(runtime)) {
    // The engine arms a 10 s timer around its advisory lock and never clears it; unref'd, it no
    // longer keeps a finished process alive for those 10 s.
    if (name.startsWith('__wbg_setTimeout_') && typeof fn === 'function') {
      imports[name] = (...args: unknown[]) => {
        const timer = (fn as (...a: unknown[]) => unknown)(...args);
        (timer as { unref?: () => void } | undefined)?.unref?.();
        return timer;
      };
    }
  }
  // The engine reports Rust panics here before trapping; Prisma's CLI installs the same hook.
  const g = globalThis as { PRISMA_WASM_PANIC_REGISTRY?: { set_message(message: string): void } };
  g.PRISMA_WASM_PANIC_REGISTRY ??= {
    set_message(message: string) {
      process.emitWarning(`Prisma schema engine panicked: ${message}`);
    },
  };

  const instance = await WebAssembly.instantiate(module, {
    './schema_engine_bg.js': imports as WebAssembly.ModuleImports,
  });
  runtime.__wbg_set_wasm(instance.exports);
  (instance.exports['__wbindgen_start'] as (() => void) | undefined)?.();
  return runtime;
}

function engineError(error: unknown): Error {
  if (!(error instanceof Error)) return new SchemaEngineError(String(error));
  // Drop the engine's span trace ("   0: sql_schema_connector::… at …rs:113"), keep the message.
  // The trace is where the engine names the migration that failed, so that much is kept.
  const lines = error.message.split('\n');
  const traceStart = lines.findIndex((line) => /^\s+\d+: \S/.test(line));
  const failedMigration = /migration_name="([^"]+)"/.exec(error.message)?.[1];
  let message = (traceStart === -1 ? lines : lines.slice(0, traceStart))
    .filter((line) => line.trim() !== 'external connector error')
    .join('\n')
    .trim();
  if (failedMigration && !message.includes(failedMigration)) message = `migration ${failedMigration}: ${message}`;
  return new SchemaEngineError(message || error.message, { cause: error });
}
