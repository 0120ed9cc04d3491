import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import { parseDatabaseUrl, toDatabaseUrl, withDatabase, type PgConnectionOptions } from '../../src/db/connection.js';
import { applyMigrations, listMigrations } from '../../src/db/migrations.js';
import { openPostgresPool } from '../../src/db/schema-engine.js';

/** A database of its own for one test or file; `drop()` removes it whoever is connected. */
export interface TestDatabase {
  connection: PgConnectionOptions;
  /** postgresql:// URL of the same database, for DATABASE_URL. */
  url: string;
  drop(): Promise<void>;
}

const ENV_VAR = 'TEST_DATABASE_URL';
// The server tests use: TEST_DATABASE_URL, else the local PostgreSQL with trust auth.
const testServer: PgConnectionOptions = parseDatabaseUrl(
  process.env[ENV_VAR] || 'postgresql://postgres@127.0.0.1:5432/postgres',
);
// Two-key advisory lock on the server's own database, shared by every vitest worker process.
const TEMPLATE_LOCK: readonly [number, number] = [0x41450000 /* "AE" */, 2];

let template: Promise<string> | undefined;

/**
 * A fresh database with every migration applied, copied from a template database that is
 * built once per set of migrations (`ae_tpl_<hash of the migrations>`), so each call costs a
 * `CREATE DATABASE … TEMPLATE`, not a migration run.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  template ??= ensureTemplate().catch((error: unknown) => {
    template = undefined;
    throw error;
  });
  return createDatabase(await template);
}

/** A fresh database with nothing in it (no migrations), for tests of migrating itself. */
export async function createEmptyDatabase(): Promise<TestDatabase> {
  return createDatabase('template0');
}

async function createDatabase(from: string): Promise<TestDatabase> {
  const name = `ae_test_${randomBytes(6).toString('hex')}`;
  await admin((pool) => pool.query(`CREATE DATABASE "${name}" TEMPLATE "${from}"`));
  const connection = withDatabase(testServer, name);
  return {
    connection,
    url: toDatabaseUrl(connection),
    drop: () => admin((pool) => pool.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

async function ensureTemplate(): Promise<string> {
  const list = await listMigrations();
  const hash = createHash('sha256');
  hash.update(list.lockfile.content ?? '');
  for (const dir of list.migrationDirectories) {
    const content = dir.migrationFile.content;
    hash.update(`\0${dir.path}\0${content.tag}\0${content.value}`);
  }
  const name = `ae_tpl_${hash.digest('hex').slice(0, 8)}`;

  return admin(async (pool) => {
    // Several worker processes start at once; the first builds, the others wait and reuse.
    await pool.query('SELECT pg_advisory_lock($1, $2)', [...TEMPLATE_LOCK]);
    try {
      const { rowCount } = await pool.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (rowCount) return name;
      // Built under another name and renamed when complete, so a builder that dies half-way
      // never leaves a half-migrated template behind the real name.
      const building = `${name}_build`;
      await pool.query(`DROP DATABASE IF EXISTS "${building}" WITH (FORCE)`);
      await pool.query(`CREATE DATABASE "${building}" TEMPLATE template0`);
      await applyMigrations({ connection: withDatabase(testServer, building) });
      await pool.query(`ALTER DATABASE "${building}" RENAME TO "${name}"`);
      return name;
    } finally {
      await pool.query('SELECT pg_advisory_unlock($1, $2)', [...TEMPLATE_LOCK]);
    }
  });
}

async function admin<T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = await openPostgresPool(testServer, { envVar: ENV_VAR });
  try {
    return await fn(pool);
  } finally {
    await pool.end();
  }
}
