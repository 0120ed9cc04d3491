import type { Dirent } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PgConnectionOptions } from './connection.js';
import { openPostgresPool, openSchemaEngine, type MigrationList } from './schema-engine.js';

/** `<repo>/prisma/migrations`. */
export const defaultMigrationsDir = fileURLToPath(new URL('../../prisma/migrations/', import.meta.url));

const LOCKFILE = 'migration_lock.toml';
const MIGRATION_FILE = 'migration.sql';

/**
 * The advisory lock (`pg_advisory_lock(key1, key2)`, per database) held while migrating; tests
 * hold it to line up concurrent callers.
 */
// In the two-key space so it can never be Prisma's single-key 72707369: the engine takes that
// one itself on the same connection, and another session holding it would block the engine.
export const migrationLockKey: readonly [number, number] = [0x41450000 /* "AE" */, 1];

/**
 * The migrations under `dir`, read the way Prisma's CLI reads them: every sub-folder, sorted by
 * name, with its `migration.sql`, plus `migration_lock.toml`.
 */
export async function listMigrations(dir: string = defaultMigrationsDir): Promise<MigrationList> {
  const baseDir = path.resolve(dir);
  let entries: Dirent[];
  try {
    entries = await readdir(baseDir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`no migrations folder at ${baseDir} (create one with \`npm run migration:new -- init\`)`);
    }
    throw error;
  }
  const lockfileContent = await readFile(path.join(baseDir, LOCKFILE), 'utf8').catch(() => null);
  const folders = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort((a, b) => a.localeCompare(b));
  const migrationDirectories = await Promise.all(
    folders.map(async (name) => ({
      path: name,
      migrationFile: {
        path: MIGRATION_FILE,
        content: await readFile(path.join(baseDir, name, MIGRATION_FILE), 'utf8').then(
          (value) => ({ tag: 'ok' as const, value }),
          (error: unknown) => ({ tag: 'error' as const, value: error instanceof Error ? error.message : String(error) }),
        ),
      },
    })),
  );
  return { baseDir, lockfile: { path: LOCKFILE, content: lockfileContent }, shadowDbInitScript: '', migrationDirectories };
}

/**
 * Applies the pending migrations of `migrationsDir` to the database and records them in
 * `_prisma_migrations` exactly as `prisma migrate deploy` does (Prisma's own schema engine, as
 * WebAssembly, so no network and no native binary). Creates the database if it does not exist.
 * Callers that race on the same database are serialised by an advisory lock: one applies, the
 * others find nothing left to do.
 */
export async function applyMigrations(opts: {
  connection: PgConnectionOptions;
  migrationsDir?: string;
  log?: (msg: string) => void;
}): Promise<{ applied: string[] }> {
  const { connection } = opts;
  const log = opts.log ?? (() => {});
  const list = await listMigrations(opts.migrationsDir);
  if (list.migrationDirectories.length === 0) {
    log(`no migrations in ${list.baseDir}`);
    return { applied: [] };
  }

  // One connection for the lock and the engine alike: session locks stay with it, and the
  // embedded server (one connection at a time) can serve it.
  const pool = await openPostgresPool(connection, { createIfMissing: true, log });
  const where = `${connection.database} on ${connection.host}:${connection.port}`;
  try {
    const { rows } = await pool.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [...migrationLockKey]);
    if (!rows[0]?.locked) {
      log(`another process is migrating ${where}; waiting for it`);
      await pool.query('SELECT pg_advisory_lock($1, $2)', [...migrationLockKey]);
    }
    const engine = await openSchemaEngine({ connection, pool });
    try {
      const applied = await engine.applyMigrations(list);
      for (const name of applied) log(`applied migration ${name}`);
      if (applied.length === 0) log(`no pending migrations for ${where}`);
      return { applied };
    } catch (error) {
      throw new Error(`migrating ${where} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    } finally {
      await engine.close();
    }
  } finally {
    // Also drops the engine's own session lock (72707369), which it never releases itself.
    await pool.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    await pool.end();
  }
}
