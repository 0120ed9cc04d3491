import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import type { PgConnectionOptions } from '../../src/db/connection.js';
import { applyMigrations, defaultMigrationsDir, listMigrations, migrationLockKey } from '../../src/db/migrations.js';
import { openSchemaEngine } from '../../src/db/schema-engine.js';
import { createEmptyDatabase, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const schemaPath = path.join(repo, 'prisma', 'schema.prisma');

const databases: TestDatabase[] = [];
afterEach(async () => {
  await Promise.all(databases.splice(0).map((db) => db.drop()));
});

async function emptyDb(): Promise<TestDatabase> {
  const db = await createEmptyDatabase();
  databases.push(db);
  return db;
}

async function migratedDb(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  databases.push(db);
  return db;
}

async function withClient<T>(connection: PgConnectionOptions, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(connection);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function migrationNamesOnDisk(): Promise<string[]> {
  return (await listMigrations()).migrationDirectories.map((d) => d.path);
}

interface MigrationRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
  logs: string | null;
  applied_steps_count: number;
  started_at: Date;
  id: string;
}

function migrationRows(client: pg.Client): Promise<MigrationRow[]> {
  return client.query<MigrationRow>('SELECT * FROM _prisma_migrations ORDER BY migration_name').then((r) => r.rows);
}

/**
 * What the database's public schema consists of, as `kind name → definition`: tables, columns
 * (type, nullability, default, identity), enums with their values in order, sequences, indexes
 * and constraints (primary, unique, foreign keys, checks). `_prisma_migrations`, triggers and
 * functions are left out: they are not part of schema.prisma.
 */
async function describeSchema(connection: PgConnectionOptions): Promise<Map<string, string>> {
  return withClient(connection, async (client) => {
    const facts = new Map<string, string>();
    const tables = await client.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> '_prisma_migrations'`,
    );
    for (const t of tables.rows) facts.set(`table ${t.name}`, 'exists');

    const columns = await client.query<{ tbl: string; col: string; type: string; notnull: boolean; def: string | null; identity: string; generated: string }>(
      `SELECT c.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
              pg_get_expr(d.adbin, d.adrelid) AS def, a.attidentity AS identity, a.attgenerated AS generated
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname <> '_prisma_migrations'`,
    );
    for (const c of columns.rows) {
      const parts = [c.type, c.notnull ? 'NOT NULL' : 'NULL'];
      if (c.def !== null) parts.push(`DEFAULT ${c.def}`);
      if (c.identity) parts.push(`IDENTITY ${c.identity}`);
      if (c.generated) parts.push(`GENERATED ${c.generated}`);
      facts.set(`column ${c.tbl}.${c.col}`, parts.join(' '));
    }

    const enums = await client.query<{ name: string; labels: string[] }>(
      `SELECT t.typname AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' GROUP BY t.typname`,
    );
    for (const e of enums.rows) facts.set(`enum ${e.name}`, e.labels.join(', '));

    const sequences = await client.query<{ name: string; type: string; start: string; step: string }>(
      `SELECT sequencename AS name, data_type::text AS type, start_value::text AS start, increment_by::text AS step
         FROM pg_sequences WHERE schemaname = 'public'`,
    );
    for (const s of sequences.rows) facts.set(`sequence ${s.name}`, `${s.type} start ${s.start} step ${s.step}`);

    const indexes = await client.query<{ tbl: string; name: string; def: string }>(
      `SELECT tablename AS tbl, indexname AS name, indexdef AS def FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> '_prisma_migrations'`,
    );
    for (const i of indexes.rows) facts.set(`index ${i.tbl}.${i.name}`, i.def.replaceAll(connection.database, '<db>'));

    const constraints = await client.query<{ tbl: string; name: string; def: string }>(
      `SELECT c.relname AS tbl, con.conname AS name, pg_get_constraintdef(con.oid) AS def
         FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname <> '_prisma_migrations'`,
    );
    for (const k of constraints.rows) facts.set(`constraint ${k.tbl}.${k.name}`, k.def);
    return facts;
  });
}

/** Every difference between two schema descriptions, one readable line each; empty when equal. */
function compareSchemas(a: Map<string, string>, b: Map<string, string>, labels: [string, string]): string[] {
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  const differences: string[] = [];
  for (const key of keys) {
    const left = a.get(key);
    const right = b.get(key);
    if (left === right) continue;
    if (right === undefined) differences.push(`${key} only in ${labels[0]}: ${left}`);
    else if (left === undefined) differences.push(`${key} only in ${labels[1]}: ${right}`);
    else differences.push(`${key} differs: ${labels[0]} has ${left}; ${labels[1]} has ${right}`);
  }
  return differences;
}

/** A database built by executing `diff(empty → prisma/schema.prisma)`, bypassing the migrations. */
async function databaseFromSchema(): Promise<TestDatabase> {
  const db = await emptyDb();
  const schema = await readFile(schemaPath, 'utf8');
  const engine = await openSchemaEngine({ connection: db.connection, schema });
  let sql: string;
  try {
    sql = await engine.diff(null, schema);
  } finally {
    await engine.close();
  }
  expect(sql).toMatch(/CREATE TABLE/);
  await withClient(db.connection, (client) => client.query(sql));
  return db;
}

describe('applyMigrations', () => {
  it('applied to an empty database, creates every table of schema.prisma and records each migration in _prisma_migrations with finished_at and the sha256 checksum of migration.sql', async () => {
    const db = await emptyDb();
    const names = await migrationNamesOnDisk();
    expect(names.length).toBeGreaterThanOrEqual(2);

    const { applied } = await applyMigrations({ connection: db.connection });
    expect(applied).toEqual(names);

    const schema = await readFile(schemaPath, 'utf8');
    const models = [...schema.matchAll(/^model\s+(\w+)\s*\{/gm)].map((m) => m[1]).sort();
    expect(models.length).toBeGreaterThan(10);
    await withClient(db.connection, async (client) => {
      const { rows } = await client.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
      );
      const tables = rows.map((r) => r.table_name).sort();
      expect(tables).toEqual([...models, '_prisma_migrations'].sort());

      const recorded = await migrationRows(client);
      expect(recorded.map((r) => r.migration_name)).toEqual(names);
      for (const row of recorded) {
        // Prisma's checksum (schema-connector/src/checksum.rs): SHA-256 of the script text, lowercase hex.
        const sql = await readFile(path.join(defaultMigrationsDir, row.migration_name, 'migration.sql'), 'utf8');
        expect(row.checksum).toBe(createHash('sha256').update(sql).digest('hex'));
        expect(row.finished_at).toBeInstanceOf(Date);
        expect(row.rolled_back_at).toBeNull();
        expect(row.logs).toBeNull();
        expect(row.applied_steps_count).toBe(1);
      }
    });
  });

  it('run a second time, applies nothing and changes neither the schema nor _prisma_migrations', async () => {
    const db = await emptyDb();
    await applyMigrations({ connection: db.connection });
    const schemaBefore = await describeSchema(db.connection);
    const rowsBefore = await withClient(db.connection, migrationRows);

    const messages: string[] = [];
    const { applied } = await applyMigrations({ connection: db.connection, log: (m) => messages.push(m) });

    expect(applied).toEqual([]);
    expect(messages.join('\n')).toMatch(/no pending migrations/);
    expect(compareSchemas(schemaBefore, await describeSchema(db.connection), ['before', 'after'])).toEqual([]);
    expect(await withClient(db.connection, migrationRows)).toEqual(rowsBefore);
  });

  it('run by three callers at once (two in this process, one in another) on the same empty database, applies each migration exactly once and all three resolve', async () => {
    const db = await emptyDb();
    const names = await migrationNamesOnDisk();
    // Create the database's contents only after all three wait on the lock, so they really race.
    await withClient(db.connection, async (holder) => {
      await holder.query('SELECT pg_advisory_lock($1, $2)', [...migrationLockKey]);
      const child = runInChildProcess(db.connection);
      const local = [applyMigrations({ connection: db.connection }), applyMigrations({ connection: db.connection })];
      await waitForLockWaiters(holder, 3);
      await holder.query('SELECT pg_advisory_unlock($1, $2)', [...migrationLockKey]);

      const results = await Promise.all([...local, child]);
      const appliedByAll = results.flatMap((r) => r.applied).sort();
      expect(appliedByAll).toEqual(names);
      expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);

      const { rows } = await holder.query<{ migration_name: string; n: number }>(
        'SELECT migration_name, count(*)::int AS n FROM _prisma_migrations GROUP BY migration_name ORDER BY migration_name',
      );
      expect(rows).toEqual(names.map((name) => ({ migration_name: name, n: 1 })));
    });
  });

  it('given an unreachable server, fails with a message naming host:port and how to start PostgreSQL or set DATABASE_URL', async () => {
    const port = await closedPort();
    const connection = { host: '127.0.0.1', port, user: 'postgres', database: 'nowhere' };
    await expect(applyMigrations({ connection })).rejects.toThrow(
      new RegExp(`cannot reach PostgreSQL at 127\\.0\\.0\\.1:${port}.*start PostgreSQL.*DATABASE_URL`),
    );
  });

  it('given a migration that fails half-way, reports the database error and leaves none of its statements applied', async () => {
    const db = await emptyDb();
    const dir = await mkdtemp(path.join(tmpdir(), 'ae-migrations-'));
    try {
      await writeFile(path.join(dir, 'migration_lock.toml'), 'provider = "postgresql"\n');
      await mkdir(path.join(dir, '20260101000000_broken'));
      await writeFile(
        path.join(dir, '20260101000000_broken', 'migration.sql'),
        'CREATE TABLE "Half" (id int);\nSELECT 1 / 0;\n',
      );
      await expect(applyMigrations({ connection: db.connection, migrationsDir: dir })).rejects.toThrow(/division by zero/);
      await withClient(db.connection, async (client) => {
        const { rows } = await client.query(`SELECT 1 FROM information_schema.tables WHERE table_name = 'Half'`);
        expect(rows).toEqual([]);
        const [row] = await migrationRows(client);
        expect(row?.migration_name).toBe('20260101000000_broken');
        expect(row?.finished_at).toBeNull();
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the audit table', () => {
  it('accepts INSERT but refuses UPDATE, DELETE and TRUNCATE as append-only', async () => {
    const db = await migratedDb();
    await withClient(db.connection, async (client) => {
      const insert = `INSERT INTO "AuditEntry" (chain, "chainSeq", event, actor, data, "prevHash", hash) VALUES ('admin:global', $1, 'created', 'system', '{}', $2, $3)`;
      await client.query(insert, [1, '', 'h1']);
      await client.query(insert, [2, 'h1', 'h2']);
      await expect(client.query(`UPDATE "AuditEntry" SET actor = 'mallory'`)).rejects.toThrow(/audit entries are append-only: UPDATE/);
      await expect(client.query(`DELETE FROM "AuditEntry"`)).rejects.toThrow(/audit entries are append-only: DELETE/);
      await expect(client.query(`TRUNCATE "AuditEntry"`)).rejects.toThrow(/audit entries are append-only: TRUNCATE/);
      const { rows } = await client.query<{ actor: string }>('SELECT actor FROM "AuditEntry" ORDER BY id');
      expect(rows).toEqual([{ actor: 'system' }, { actor: 'system' }]);
    });
  });
});

/** Objects schema.prisma cannot describe, made by hand-written migrations: the one-OPEN-task-per-action partial unique index. */
const HAND_WRITTEN = ['index ManualTask.ManualTask_one_open_per_action'];

describe('drift between prisma/migrations and prisma/schema.prisma', () => {
  it('is none: the database the migrations build matches the one diff(empty → schema.prisma) builds (tables, columns, enums, indexes, constraints)', async () => {
    const [fromMigrations, fromSchema] = await Promise.all([migratedDb(), databaseFromSchema()]);
    const [a, b] = await Promise.all([describeSchema(fromMigrations.connection), describeSchema(fromSchema.connection)]);
    expect(a.size).toBeGreaterThan(100);
    // What schema.prisma cannot express is made by hand-written migrations: it must be there, and
    // is the only difference allowed.
    for (const key of HAND_WRITTEN) expect(a.has(key), `${key} (hand-written migration) is missing`).toBe(true);
    const differences = compareSchemas(a, b, ['migrations', 'schema.prisma']).filter((d) => !HAND_WRITTEN.some((key) => d.startsWith(`${key} only in migrations`)));
    // Fix by running `npm run migration:new -- <name>` after editing schema.prisma.
    expect(differences, `the migrations do not build what schema.prisma describes:\n${differences.join('\n')}`).toEqual([]);
  });

  it('is detected by the comparison when one copy has an extra column, a missing index and a changed default', async () => {
    const [original, altered] = await Promise.all([migratedDb(), migratedDb()]);
    await withClient(altered.connection, (client) =>
      client.query(`
        ALTER TABLE "Space" ADD COLUMN "sneaky" TEXT;
        DROP INDEX "OutboxMessage_deliveredAt_id_idx";
        ALTER TABLE "Action" ALTER COLUMN "priority" SET DEFAULT 3;
      `),
    );
    const differences = compareSchemas(await describeSchema(original.connection), await describeSchema(altered.connection), [
      'original',
      'altered',
    ]);
    expect(differences).toEqual([
      'column Action.priority differs: original has smallint NOT NULL DEFAULT 5; altered has smallint NOT NULL DEFAULT 3',
      'column Space.sneaky only in altered: text NULL',
      expect.stringMatching(/^index OutboxMessage\.OutboxMessage_deliveredAt_id_idx only in original: CREATE INDEX/),
    ]);
  });
});

function runInChildProcess(connection: PgConnectionOptions): Promise<{ applied: string[] }> {
  const moduleUrl = pathToFileURL(path.join(repo, 'src', 'db', 'migrations.ts')).href;
  const script = `
    import { applyMigrations } from ${JSON.stringify(moduleUrl)};
    const result = await applyMigrations({ connection: JSON.parse(process.env.AE_TEST_CONNECTION) });
    process.stdout.write(JSON.stringify(result));
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], {
      cwd: repo,
      env: { ...process.env, AE_TEST_CONNECTION: JSON.stringify(connection) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(stdout) as { applied: string[] });
      else reject(new Error(`child applyMigrations exited with ${code}: ${stderr}`));
    });
  });
}

async function waitForLockWaiters(client: pg.Client, count: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2 AND objsubid = 2
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [...migrationLockKey],
    );
    if ((rows[0]?.n ?? 0) >= count) return;
    if (Date.now() > deadline) throw new Error(`only ${rows[0]?.n ?? 0} of ${count} callers reached the migration lock`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
