import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrismaClient } from '../../src/db/prisma-client.js';
import {
  appendAuditEntries,
  appendAuditEntry,
  AuditWriteError,
  hashAuditEntry,
  verifyAuditChain,
  type AuditInput,
} from '../../src/engine/audit.js';
import { PrismaClient, type Prisma } from '../../src/generated/prisma/client.js';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const rejected = (reason: string, extra: Partial<AuditInput<'action.rejected'>> = {}): AuditInput<'action.rejected'> => ({
  event: 'action.rejected',
  actor: 'system',
  ip: '203.0.113.9',
  userAgent: 'vitest',
  data: { reason },
  ...extra,
});

const allEntries = (db: PrismaClient) => db.auditEntry.findMany({ orderBy: { id: 'asc' } });

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'ae-audit-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});
const cliEnv = (db: TestDatabase) => ({ DATABASE_URL: db.url, REDIS_AUTOSTART: 'false', DATA_DIR: dataDir });

describe('audit chain', () => {
  let database: TestDatabase;
  let db: PrismaClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createPrismaClient({ connection: database.connection, poolMax: 10 });
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  it('appended entries chain: the first prevHash is "", each next one is the previous hash, each hash matches its row', async () => {
    const single = [];
    for (const reason of ['one', 'two', 'three']) single.push(await db.$transaction((tx) => appendAuditEntry(tx, rejected(reason))));
    const batch = await db.$transaction((tx) =>
      appendAuditEntries(tx, [
        rejected('four'),
        { event: 'action.cancelled', actor: 'system', data: { reason: null } },
        { event: 'execution.attempt_failed', actor: 'system', data: { attempt: 1, handler: 'webhook', error: 'HTTP 503', permanent: false } },
      ]),
    );

    const rows = await allEntries(db);
    expect(rows.map((r) => r.id)).toEqual([...single, ...batch].map((a) => a.id));
    expect(rows.map((r) => r.hash)).toEqual([...single, ...batch].map((a) => a.hash));
    expect(rows[0]!.prevHash).toBe('');
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prevHash).toBe(rows[i - 1]!.hash);
    for (const row of rows) expect(hashAuditEntry(row)).toBe(row.hash);
    expect(rows.map((r) => r.data)).toContainEqual({ attempt: 1, handler: 'webhook', error: 'HTTP 503', permanent: false });

    expect(await verifyAuditChain(db)).toEqual({ ok: true, checked: 6 });
    // Batches of 2 and 4 cross page boundaries (keyset pagination) and end exactly on one.
    expect(await verifyAuditChain(db, { batchSize: 2 })).toEqual({ ok: true, checked: 6 });
    expect(await verifyAuditChain(db, { batchSize: 4 })).toEqual({ ok: true, checked: 6 });
  });

  it('50 concurrent appends, each in its own transaction, never fork the chain', async () => {
    const before = await db.auditEntry.count();
    const appended = await Promise.all(
      Array.from({ length: 50 }, (_, i) => db.$transaction((tx) => appendAuditEntry(tx, rejected(`concurrent ${i}`)))),
    );
    expect(new Set(appended.map((a) => a.id)).size).toBe(50);

    const rows = await allEntries(db);
    expect(rows).toHaveLength(before + 50);
    const fresh = rows.slice(before);
    expect(new Set(fresh.map((r) => r.prevHash)).size).toBe(50);
    expect(new Set(rows.map((r) => r.prevHash)).size).toBe(rows.length);
    expect(await verifyAuditChain(db, { batchSize: 7 })).toEqual({ ok: true, checked: rows.length });
  });

  it('an entry written in a transaction that rolls back leaves no trace, and the next entry chains past it', async () => {
    const [lastBefore] = await db.auditEntry.findMany({ orderBy: { id: 'desc' }, take: 1 });
    const count = await db.auditEntry.count();
    let ghost: { id: bigint; hash: string } | undefined;
    await expect(
      db.$transaction(async (tx) => {
        ghost = await appendAuditEntry(tx, rejected('rolled back'));
        throw new Error('the status change failed');
      }),
    ).rejects.toThrow('the status change failed');

    expect(ghost).toBeDefined();
    expect(await db.auditEntry.count()).toBe(count);
    expect(await db.auditEntry.findFirst({ where: { OR: [{ hash: ghost!.hash }, { id: ghost!.id }] } })).toBeNull();

    const next = await db.$transaction((tx) => appendAuditEntry(tx, rejected('after the rollback')));
    const row = await db.auditEntry.findUniqueOrThrow({ where: { id: next.id } });
    expect(row.prevHash).toBe(lastBefore!.hash);
    // The sequence is not transactional: the rolled-back id stays a gap, which verify accepts.
    expect(next.id).toBeGreaterThan(ghost!.id);
    expect(await verifyAuditChain(db)).toEqual({ ok: true, checked: count + 1 });
  });

  it('the database refuses UPDATE, DELETE and TRUNCATE on AuditEntry', async () => {
    const [first] = await allEntries(db);
    await expect(db.$executeRaw`UPDATE "AuditEntry" SET "data" = '{"reason":"edited"}' WHERE "id" = ${first!.id}`).rejects.toThrow(
      /append-only: UPDATE/,
    );
    await expect(db.auditEntry.update({ where: { id: first!.id }, data: { actor: 'mallory' } })).rejects.toThrow(/append-only/);
    await expect(db.$executeRaw`DELETE FROM "AuditEntry" WHERE "id" = ${first!.id}`).rejects.toThrow(/append-only: DELETE/);
    await expect(db.auditEntry.deleteMany({})).rejects.toThrow(/append-only/);
    await expect(db.$executeRawUnsafe('TRUNCATE "AuditEntry"')).rejects.toThrow(/append-only: TRUNCATE/);
    expect(await db.auditEntry.findUniqueOrThrow({ where: { id: first!.id } })).toEqual(first);
  });

  it('stores a space or action id in PostgreSQL spelling (lower case), so the entry still verifies', async () => {
    const space = await db.space.create({ data: { slug: `audit-${Date.now()}` } });
    const { id } = await db.$transaction((tx) => appendAuditEntry(tx, rejected('upper-case ids', { spaceId: space.id.toUpperCase() })));
    expect((await db.auditEntry.findUniqueOrThrow({ where: { id } })).spaceId).toBe(space.id);
    expect((await verifyAuditChain(db)).ok).toBe(true);
  });

  it('refuses to append outside a transaction, in a REPEATABLE READ one, or with an id that is not a UUID', async () => {
    const count = await db.auditEntry.count();
    await expect(appendAuditEntry(db as unknown as Prisma.TransactionClient, rejected('no tx'))).rejects.toThrow(AuditWriteError);
    await expect(
      db.$transaction((tx) => appendAuditEntry(tx, rejected('stale snapshot')), { isolationLevel: 'RepeatableRead' }),
    ).rejects.toThrow(/READ COMMITTED/);
    await expect(db.$transaction((tx) => appendAuditEntry(tx, rejected('bad id', { actionId: 'act-1' })))).rejects.toThrow(
      /actionId is not a UUID/,
    );
    expect(await db.auditEntry.count()).toBe(count);
  });

  it('an append costs three round trips (lock, last hash and ids, insert), and so does a batch', async () => {
    const queries: string[] = [];
    const logged = new PrismaClient({
      adapter: new PrismaPg({ ...database.connection, max: 1 }),
      log: [{ emit: 'event', level: 'query' }],
    });
    logged.$on('query', (e) => queries.push(e.query));
    try {
      const inTx = (fn: (tx: Prisma.TransactionClient) => Promise<unknown>) =>
        logged.$transaction(async (tx) => {
          queries.length = 0;
          await fn(tx);
          return queries.filter((q) => !/^(BEGIN|COMMIT)/i.test(q.trim()));
        });
      const one = await inTx((tx) => appendAuditEntry(tx, rejected('counted')));
      const five = await inTx((tx) => appendAuditEntries(tx, ['a', 'b', 'c', 'd', 'e'].map((r) => rejected(r))));
      expect(one, one.join('\n')).toHaveLength(3);
      expect(five, five.join('\n')).toHaveLength(3);
      expect(five[2]).toMatch(/^\s*INSERT INTO "AuditEntry"/);
    } finally {
      await logged.$disconnect();
    }
    expect((await verifyAuditChain(db)).ok).toBe(true);
  });

  it('`audit verify` exits 0 on an intact chain and says how many entries it checked', async () => {
    const count = await db.auditEntry.count();
    const { code, stdout, stderr } = await runCli(['audit', 'verify'], cliEnv(database));
    expect(code, stderr).toBe(0);
    expect(stdout.trim()).toBe(`audit chain intact: ${count} entries checked`);
  });
});

describe('audit chain tampering', () => {
  let database: TestDatabase;
  let db: PrismaClient;
  let ids: bigint[];

  /** Runs SQL with the append-only trigger off, as someone with owner rights could. */
  async function tamper(sql: string, params: unknown[]): Promise<void> {
    const client = new pg.Client(database.connection);
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query('ALTER TABLE "AuditEntry" DISABLE TRIGGER USER');
      await client.query(sql, params);
      await client.query('ALTER TABLE "AuditEntry" ENABLE TRIGGER USER');
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createPrismaClient({ connection: database.connection, poolMax: 2 });
    const appended = await db.$transaction((tx) => appendAuditEntries(tx, ['a', 'b', 'c', 'd', 'e', 'f'].map((r) => rejected(r))));
    ids = appended.map((a) => a.id);
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  it('an altered entry is named by verifyAuditChain and by `audit verify` (exit 1)', async () => {
    expect(await verifyAuditChain(db)).toEqual({ ok: true, checked: 6 });
    await tamper(`UPDATE "AuditEntry" SET "data" = '{"reason":"approved after all"}' WHERE "id" = $1`, [ids[2]!.toString()]);

    expect(await verifyAuditChain(db)).toEqual({ ok: false, checked: 3, firstBad: { id: ids[2], reason: 'hash mismatch: content altered' } });
    expect(await verifyAuditChain(db, { batchSize: 2 })).toMatchObject({ firstBad: { id: ids[2] } });

    const { code, stdout, stderr } = await runCli(['audit', 'verify'], cliEnv(database));
    expect(code, stderr).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain(`audit chain broken at entry ${ids[2]}: hash mismatch: content altered`);
  });

  it('an altered entry whose hash was recomputed to match breaks the link from the next entry', async () => {
    const row = await db.auditEntry.findUniqueOrThrow({ where: { id: ids[2]! } });
    await tamper(`UPDATE "AuditEntry" SET "hash" = $1 WHERE "id" = $2`, [hashAuditEntry(row), ids[2]!.toString()]);

    expect(await verifyAuditChain(db)).toEqual({
      ok: false,
      checked: 4,
      firstBad: { id: ids[3], reason: 'prevHash does not match previous entry' },
    });
  });

  it('a deleted entry breaks the link from the entry after it', async () => {
    await tamper(`DELETE FROM "AuditEntry" WHERE "id" = ANY($1::bigint[])`, [[ids[2]!.toString(), ids[3]!.toString()]]);
    await tamper(`DELETE FROM "AuditEntry" WHERE "id" = $1`, [ids[0]!.toString()]);

    expect(await verifyAuditChain(db)).toEqual({
      ok: false,
      checked: 1,
      firstBad: { id: ids[1], reason: 'prevHash does not match previous entry' },
    });
  });
});
