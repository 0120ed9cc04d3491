import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrismaClient } from '../../src/db/prisma-client.js';
import {
  adminChain,
  appendAuditEntries,
  appendAuditEntry,
  auditContentHash,
  auditLink,
  AuditWriteError,
  verifyAuditChain,
  verifyAuditLog,
  verifyAuditSeal,
  type AuditInput,
} from '../../src/engine/audit.js';
import { checkpointEntriesText, checkpointHash, parseCheckpointEntries, signCheckpoint } from '../../src/engine/audit-checkpoints.js';
import { exportActionAudit, verifyAuditBundle, type AuditBundle } from '../../src/engine/audit-export.js';
import { AUDIT_SEALER_LOCK, AuditSealTamperedError, redisCheckpointAnchor, sealAuditBatch, startAuditSealer, unsealedAuditEntries } from '../../src/engine/audit-sealer.js';
import { appendActionAuditSql } from '../../src/engine/lifecycle/audit-sql.js';
import { createSigner, type Signer } from '../../src/engine/signing.js';
import type { PrismaClient } from '../../src/generated/prisma/client.js';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { deleteRedisPrefix, testRedisUrl, uniqueRedisPrefix } from '../helpers/redis.js';
import { Redis } from 'ioredis';

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

function newKey(): { privateKey: KeyObject; signer: Signer; seed: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { privateKey, signer: createSigner(privateKey), seed: (privateKey.export({ format: 'jwk' }) as { d: string }).d };
}

interface Fixture {
  spaceId: string;
  userId: string;
  principalId: string;
}

async function seedSpace(db: PrismaClient, slug: string): Promise<Fixture> {
  const space = await db.space.create({ data: { slug } });
  const user = await db.user.create({ data: { spaceId: space.id, handle: 'alice' } });
  const principal = await db.principal.create({ data: { spaceId: space.id, role: 'AGENT', userId: user.id, name: 'agent' } });
  return { spaceId: space.id, userId: user.id, principalId: principal.id };
}

async function newAction(db: PrismaClient, f: Fixture): Promise<string> {
  const action = await db.action.create({
    data: { spaceId: f.spaceId, userId: f.userId, requestedById: f.principalId, type: 'send_email', payload: {}, payloadHash: 'h', status: 'PENDING' },
  });
  return action.id;
}

const approved = (f: Fixture, actionId: string, comment: string): AuditInput => ({
  event: 'action.approved',
  actor: f.principalId,
  spaceId: f.spaceId,
  actionId,
  ip: '203.0.113.9',
  userAgent: 'vitest',
  data: { comment },
});

const kycChanged = (spaceId: string | null, userId: string): AuditInput => ({
  event: 'user.kyc_changed',
  actor: 'system',
  spaceId,
  data: { userId, from: 'NONE', to: 'VERIFIED', before: 'NONE', after: 'VERIFIED' },
});

/** Appends to an action's chain in one statement, as the lifecycle writer does; returns the new head. */
async function appendToAction(db: PrismaClient, actionId: string, inputs: AuditInput[]): Promise<{ auditSeq: number; auditHead: string }> {
  const { text, values } = appendActionAuditSql(actionId, inputs);
  const [row] = await db.$queryRawUnsafe<Array<{ auditSeq: number; auditHead: string }>>(text, ...values);
  return row!;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Seals until nothing is left. Transaction ids are cluster-wide, so a transaction open elsewhere
 * on the server (another test file's) can hold sealing back for a moment: retry for a while.
 */
async function sealAll(db: PrismaClient, signer: Signer): Promise<void> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    await sealAuditBatch(db, signer);
    if ((await unsealedAuditEntries(db)).count === 0) return;
    await sleep(20);
  }
  throw new Error('the audit log did not get sealed');
}

/** Calls `seal` until it has sealed `want` entries in all (or 15 s pass); returns how many it sealed. */
async function sealCount(seal: () => Promise<number>, want: number): Promise<number> {
  let total = 0;
  const until = Date.now() + 15_000;
  while (total < want && Date.now() < until) {
    total += await seal();
    if (total < want) await sleep(20);
  }
  return total;
}

async function sealedIds(db: PrismaClient): Promise<Set<bigint>> {
  const checkpoints = await db.auditCheckpoint.findMany({ select: { entries: true } });
  return new Set(checkpoints.flatMap((c) => parseCheckpointEntries(c.entries).map((e) => e.id)));
}

/** Runs SQL as the database owner with the append-only triggers off, as a superuser could. */
async function asSuperuser(database: TestDatabase, fn: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client(database.connection);
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('ALTER TABLE "AuditEntry" DISABLE TRIGGER USER');
    await client.query('ALTER TABLE "AuditCheckpoint" DISABLE TRIGGER USER');
    await fn(client);
    await client.query('ALTER TABLE "AuditEntry" ENABLE TRIGGER USER');
    await client.query('ALTER TABLE "AuditCheckpoint" ENABLE TRIGGER USER');
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}

/**
 * What a careful superuser does after changing entries of an action's chain: recompute every
 * hash and prevHash of the chain from its (changed) content, and the action's recorded head.
 */
async function rehashChain(client: pg.Client, actionId: string): Promise<void> {
  const { rows } = await client.query(`SELECT * FROM "AuditEntry" WHERE "chain" = $1 ORDER BY "chainSeq"`, [actionId]);
  let prev = '';
  for (const row of rows) {
    const hash = auditLink(prev, row.chainSeq, auditContentHash(row));
    await client.query(`UPDATE "AuditEntry" SET "prevHash" = $1, "hash" = $2 WHERE "id" = $3`, [prev, hash, row.id]);
    prev = hash;
  }
  await client.query(`UPDATE "Action" SET "auditSeq" = $1, "auditHead" = $2 WHERE "id" = $3`, [rows.length, prev, actionId]);
}

const chainOf = (db: PrismaClient, actionId: string) => db.auditEntry.findMany({ where: { chain: actionId }, orderBy: { chainSeq: 'asc' } });

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'ae-audit-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});
const cliEnv = (db: TestDatabase, seed: string) => ({ DATABASE_URL: db.url, REDIS_AUTOSTART: 'false', DATA_DIR: dataDir, SIGNING_KEY: seed });

describe('audit chains', () => {
  let database: TestDatabase;
  let db: PrismaClient;
  let f: Fixture;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createPrismaClient({ connection: database.connection, poolMax: 5 });
    f = await seedSpace(db, 'chains');
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  it("an action's entries chain from its own head: seq 1..n, the first prevHash \"\", each hash the SQL link of its content, the action recording the head", async () => {
    const actionId = await newAction(db, f);
    const first = await appendToAction(db, actionId, [approved(f, actionId, 'one')]);
    const second = await appendToAction(db, actionId, [approved(f, actionId, 'two'), approved(f, actionId, 'three')]);

    const rows = await chainOf(db, actionId);
    expect(rows.map((r) => r.chainSeq)).toEqual([1, 2, 3]);
    expect(rows.map((r) => r.format)).toEqual([2, 2, 2]);
    expect(rows[0]!.prevHash).toBe('');
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prevHash).toBe(rows[i - 1]!.hash);
    // The hashes were computed in SQL (ae_audit_links); the JS twin must agree.
    for (const row of rows) expect(auditLink(row.prevHash, row.chainSeq, auditContentHash(row))).toBe(row.hash);
    expect(first).toEqual({ auditSeq: 1, auditHead: rows[0]!.hash });
    expect(second).toEqual({ auditSeq: 3, auditHead: rows[2]!.hash });
    expect(await db.action.findUniqueOrThrow({ where: { id: actionId }, select: { auditSeq: true, auditHead: true } })).toEqual(second);
    // The two statements ran in two transactions: two txids.
    expect(new Set(rows.map((r) => r.txid)).size).toBe(2);
    expect(await verifyAuditChain(db)).toEqual({ ok: true, checked: 3 });
  });

  it('admin entries chain per space (admin:<space>, admin:global), each with its head in AuditChainHead', async () => {
    const other = await seedSpace(db, 'chains-other');
    await db.$transaction((tx) => appendAuditEntries(tx, [kycChanged(f.spaceId, f.userId), kycChanged(f.spaceId, f.userId)]));
    await db.$transaction((tx) => appendAuditEntry(tx, kycChanged(other.spaceId, other.userId)));
    await db.$transaction((tx) => appendAuditEntry(tx, kycChanged(null, f.userId)));
    await db.$transaction((tx) => appendAuditEntry(tx, kycChanged(f.spaceId, f.userId)));

    const mine = await db.auditEntry.findMany({ where: { chain: adminChain(f.spaceId) }, orderBy: { chainSeq: 'asc' } });
    expect(mine.map((r) => r.chainSeq)).toEqual([1, 2, 3]);
    expect(mine[2]!.prevHash).toBe(mine[1]!.hash);
    expect((await db.auditEntry.findMany({ where: { chain: adminChain(other.spaceId) } })).map((r) => r.chainSeq)).toEqual([1]);
    expect((await db.auditEntry.findMany({ where: { chain: 'admin:global' } })).map((r) => r.chainSeq)).toEqual([1]);
    expect(await db.auditChainHead.findUniqueOrThrow({ where: { chain: adminChain(f.spaceId) } })).toEqual({ chain: adminChain(f.spaceId), seq: 3, head: mine[2]!.hash });
    expect((await verifyAuditChain(db, { batchSize: 2 })).ok).toBe(true);
  });

  it('a rolled-back admin append leaves no trace and the next one chains past it', async () => {
    const chain = adminChain(f.spaceId);
    const before = await db.auditChainHead.findUniqueOrThrow({ where: { chain } });
    await expect(
      db.$transaction(async (tx) => {
        await appendAuditEntry(tx, kycChanged(f.spaceId, f.userId));
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    expect(await db.auditChainHead.findUniqueOrThrow({ where: { chain } })).toEqual(before);
    await db.$transaction((tx) => appendAuditEntry(tx, kycChanged(f.spaceId, f.userId)));
    const last = await db.auditEntry.findFirstOrThrow({ where: { chain }, orderBy: { chainSeq: 'desc' } });
    expect(last.chainSeq).toBe(before.seq + 1);
    expect(last.prevHash).toBe(before.head);
    expect((await verifyAuditChain(db)).ok).toBe(true);
  });

  it('refuses admin appends outside a transaction, with an action id, or across spaces, writing nothing', async () => {
    const count = await db.auditEntry.count();
    const actionId = await newAction(db, f);
    await expect(appendAuditEntry(db as never, kycChanged(f.spaceId, f.userId))).rejects.toThrow(AuditWriteError);
    await expect(db.$transaction((tx) => appendAuditEntry(tx, approved(f, actionId, 'no')))).rejects.toThrow(/lifecycle writer/);
    await expect(db.$transaction((tx) => appendAuditEntries(tx, [kycChanged(f.spaceId, f.userId), kycChanged(null, f.userId)]))).rejects.toThrow(/one space/);
    expect(await db.auditEntry.count()).toBe(count);
  });

  it('the database refuses UPDATE, DELETE and TRUNCATE on AuditEntry and on AuditCheckpoint', async () => {
    const { signer } = newKey();
    await sealAll(db, signer);
    const entry = await db.auditEntry.findFirstOrThrow();
    const checkpoint = await db.auditCheckpoint.findFirstOrThrow();
    await expect(db.$executeRaw`UPDATE "AuditEntry" SET "data" = '{}' WHERE "id" = ${entry.id}`).rejects.toThrow(/append-only: UPDATE/);
    await expect(db.$executeRaw`DELETE FROM "AuditEntry" WHERE "id" = ${entry.id}`).rejects.toThrow(/append-only: DELETE/);
    await expect(db.$executeRawUnsafe('TRUNCATE "AuditEntry"')).rejects.toThrow(/append-only: TRUNCATE/);
    await expect(db.$executeRaw`UPDATE "AuditCheckpoint" SET "entries" = '' WHERE "id" = ${checkpoint.id}`).rejects.toThrow(/append-only: UPDATE/);
    await expect(db.$executeRaw`DELETE FROM "AuditCheckpoint" WHERE "id" = ${checkpoint.id}`).rejects.toThrow(/append-only: DELETE/);
    await expect(db.$executeRawUnsafe('TRUNCATE "AuditCheckpoint"')).rejects.toThrow(/append-only: TRUNCATE/);
    expect(await db.auditEntry.findUniqueOrThrow({ where: { id: entry.id } })).toEqual(entry);
    expect(await db.auditCheckpoint.findUniqueOrThrow({ where: { id: checkpoint.id } })).toEqual(checkpoint);
  });
});

describe('audit under 1,000 concurrent writers', () => {
  let database: TestDatabase;
  let db: PrismaClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createPrismaClient({ connection: database.connection, poolMax: 20 });
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  it('1,000 writers at once (900 on 100 action chains, 100 on 4 admin chains) all land unforked, while two sealers seal them all exactly once', async () => {
    const spaces = [await seedSpace(db, 'load-a'), await seedSpace(db, 'load-b'), await seedSpace(db, 'load-c')];
    const actions: string[] = [];
    for (let i = 0; i < 100; i++) actions.push(await newAction(db, spaces[i % 3]!));
    const { signer } = newKey();
    // Two processes' sealers, each with its own connections, taking turns by the advisory lock.
    const sealerClients = [1, 2].map(() => createPrismaClient({ connection: database.connection, poolMax: 2 }));
    const sealers = sealerClients.map((client) => startAuditSealer({ db: client, signer, logger: silent, intervalMs: 5, batchSize: 200 }));
    const expected = new Map<string, number>();
    const writers: Array<Promise<unknown>> = [];
    const started = Date.now();
    for (let i = 0; i < 1000; i++) {
      if (i % 10 === 9) {
        const space = i % 40 === 39 ? null : spaces[i % 3]!.spaceId;
        const n = 1 + (i % 2);
        const chain = adminChain(space);
        expected.set(chain, (expected.get(chain) ?? 0) + n);
        const inputs = Array.from({ length: n }, () => kycChanged(space, spaces[0]!.userId));
        writers.push(db.$transaction((tx) => appendAuditEntries(tx, inputs)));
      } else {
        const k = i - Math.floor(i / 10);
        const actionId = actions[k % 100]!;
        const f = spaces[k % 100 % 3]!;
        const n = 1 + (i % 3);
        expected.set(actionId, (expected.get(actionId) ?? 0) + n);
        writers.push(appendToAction(db, actionId, Array.from({ length: n }, (_, k) => approved(f, actionId, `${i}.${k}`))));
      }
    }
    const outcomes = await Promise.allSettled(writers);
    const writeMs = Date.now() - started;
    const sealedWhileWriting = await db.auditCheckpoint.count();
    expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([]);
    await Promise.all(sealers.map((s) => s.close()));
    await Promise.all(sealerClients.map((c) => c.$disconnect()));
    await sealAll(db, signer);

    const total = [...expected.values()].reduce((a, b) => a + b, 0);
    expect(await db.auditEntry.count()).toBe(total);
    // No lost or forked entry: each chain is exactly 1..n with n the entries written to it.
    const perChain = await db.$queryRaw<Array<{ chain: string; n: number; max: number }>>`
      SELECT "chain", count(*)::int AS n, max("chainSeq") AS max FROM "AuditEntry" GROUP BY "chain"`;
    expect(perChain).toHaveLength(expected.size);
    for (const row of perChain) {
      expect(row.n, row.chain).toBe(expected.get(row.chain));
      expect(row.max, row.chain).toBe(row.n);
    }
    const heads = await db.action.findMany({ where: { id: { in: actions } }, select: { id: true, auditSeq: true } });
    for (const a of heads) expect(a.auditSeq).toBe(expected.get(a.id));

    // Every entry sealed exactly once, in one of a chain of signed checkpoints.
    const checkpoints = await db.auditCheckpoint.findMany({ orderBy: { id: 'asc' } });
    const sealedIds = checkpoints.flatMap((c) => parseCheckpointEntries(c.entries).map((e) => e.id));
    expect(sealedIds).toHaveLength(total);
    expect(new Set(sealedIds).size).toBe(total);
    for (let i = 1; i < checkpoints.length; i++) expect(checkpoints[i]!.prevHash).toBe(checkpoints[i - 1]!.hash);

    const verified = await verifyAuditLog(db, { trustedKeys: new Map([[signer.keyId, signer.publicKey]]) });
    expect(verified.chains).toEqual({ ok: true, checked: total });
    expect(verified.seal).toMatchObject({ ok: true, checkpoints: checkpoints.length, sealed: total, unsealed: 0, keyIds: [signer.keyId], keysFromDatabase: false });
    expect(verified.ok).toBe(true);
    console.log(`1000 concurrent writers: ${total} entries in ${writeMs} ms; ${checkpoints.length} checkpoints, ${sealedWhileWriting} of them while the writers ran`);
  }, 120_000);
});

describe('the audit sealer', () => {
  let database: TestDatabase;
  let db: PrismaClient;
  let f: Fixture;
  const { signer } = newKey();

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createPrismaClient({ connection: database.connection, poolMax: 5 });
    f = await seedSpace(db, 'sealer');
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  it('seals only finished transactions: an entry of a transaction still open, and every later one, waits; nothing ever lands inside a sealed range', async () => {
    const actionId = await newAction(db, f);
    const other = await newAction(db, f);
    await appendToAction(db, actionId, [approved(f, actionId, 'committed before')]);
    const open = new pg.Client(database.connection);
    await open.connect();
    try {
      await open.query('BEGIN');
      const pending = appendActionAuditSql(other, [approved(f, other, 'in an open transaction')]);
      await open.query(pending.text, pending.values);
      await appendToAction(db, actionId, [approved(f, actionId, 'committed after it started')]);

      const [committedBefore, committedAfter] = await chainOf(db, actionId);
      const [pendingEntry] = await open.query(`SELECT "id" FROM "AuditEntry" WHERE "chain" = $1`, [other]).then((r) => r.rows as Array<{ id: string }>);
      expect(await sealCount(async () => (await sealAuditBatch(db, signer)).sealed, 1)).toBe(1);
      expect(await sealedIds(db)).toEqual(new Set([committedBefore!.id]));
      // Committed, but its transaction id is above the open transaction's: it waits for it.
      expect((await sealAuditBatch(db, signer)).sealed).toBe(0);
      expect((await sealedIds(db)).has(committedAfter!.id)).toBe(false);

      await open.query('COMMIT');
      expect(await sealCount(async () => (await sealAuditBatch(db, signer)).sealed, 2)).toBe(2);
      expect(await sealedIds(db)).toEqual(new Set([committedBefore!.id, committedAfter!.id, BigInt(pendingEntry!.id)]));
    } finally {
      await open.end();
    }
    expect((await verifyAuditSeal(db)).ok).toBe(true);
  });

  it('one sealer at a time: while another holds the lock, a round reads and writes nothing', async () => {
    const actionId = await newAction(db, f);
    await appendToAction(db, actionId, [approved(f, actionId, 'x')]);
    const holder = new pg.Client(database.connection);
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1, $2)', [...AUDIT_SEALER_LOCK]);
      const before = await db.auditCheckpoint.count();
      expect(await sealAuditBatch(db, signer)).toEqual({ locked: false, sealed: 0 });
      const sealer = startAuditSealer({ db, signer, logger: silent, intervalMs: 1000 });
      expect(await sealer.sealOnce()).toBe(0);
      await sealer.close();
      expect(await db.auditCheckpoint.count()).toBe(before);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    expect(await sealCount(async () => (await sealAuditBatch(db, signer)).sealed, 1)).toBe(1);
  });

  it('splits a backlog into checkpoints of at most batchSize entries, each chained to the one before and signed', async () => {
    const actionId = await newAction(db, f);
    for (let i = 0; i < 12; i++) await appendToAction(db, actionId, [approved(f, actionId, `n${i}`)]);
    const before = await db.auditCheckpoint.count();
    const sealer = startAuditSealer({ db, signer, logger: silent, intervalMs: 60_000, batchSize: 5 });
    expect(await sealCount(() => sealer.sealOnce(), 12)).toBe(12);
    await sealer.close();
    const made = await db.auditCheckpoint.findMany({ orderBy: { id: 'asc' }, skip: before });
    // [5, 5, 2] unless a transaction elsewhere on the server held part of the backlog back for a round.
    expect(made.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...made.map((c) => c.entryCount))).toBe(5);
    expect(made.reduce((n, c) => n + c.entryCount, 0)).toBe(12);
    for (let i = 1; i < made.length; i++) expect(made[i]!.prevHash).toBe(made[i - 1]!.hash);
    const previous = await db.auditCheckpoint.findMany({ orderBy: { id: 'asc' }, skip: before - 1, take: 1 });
    expect(made[0]!.prevHash).toBe(previous[0]!.hash);
    for (const c of made) {
      expect(c.keyId).toBe(signer.keyId);
      expect(checkpointHash(c)).toBe(c.hash);
    }
    expect(await db.signingKey.findUniqueOrThrow({ where: { keyId: signer.keyId } })).toMatchObject({ publicKey: signer.publicKey });
  });

  it('running on its timer, it seals a new entry within a second', async () => {
    const sealer = startAuditSealer({ db, signer, logger: silent, intervalMs: 250 });
    try {
      const actionId = await newAction(db, f);
      await appendToAction(db, actionId, [approved(f, actionId, 'timed')]);
      const written = Date.now();
      let lag = Infinity;
      while (Date.now() - written < 3000) {
        if ((await unsealedAuditEntries(db)).count === 0) {
          lag = Date.now() - written;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(lag).toBeLessThan(1000);
    } finally {
      await sealer.close();
    }
  });
});

describe('tampering, as a database superuser', () => {
  const key = newKey();
  const trusted = new Map([[key.signer.keyId, key.signer.publicKey]]);
  let database: TestDatabase;
  let db: PrismaClient;
  let f: Fixture;
  let actionId: string;
  let ids: bigint[];

  /** A fresh database: one action with 6 entries written in 3 transactions, an admin chain, all sealed. */
  async function setup(): Promise<void> {
    await db?.$disconnect();
    await database?.drop();
    database = await createTestDatabase();
    db = createPrismaClient({ connection: database.connection, poolMax: 3 });
    f = await seedSpace(db, 'tamper');
    actionId = await newAction(db, f);
    await appendToAction(db, actionId, [approved(f, actionId, 'a'), approved(f, actionId, 'b')]);
    await db.$transaction((tx) => appendAuditEntry(tx, kycChanged(f.spaceId, f.userId)));
    await appendToAction(db, actionId, [approved(f, actionId, 'c'), approved(f, actionId, 'd')]);
    await appendToAction(db, actionId, [approved(f, actionId, 'e'), approved(f, actionId, 'f')]);
    await sealAll(db, key.signer);
    ids = (await chainOf(db, actionId)).map((e) => e.id);
    expect((await verifyAuditLog(db, { trustedKeys: trusted })).ok).toBe(true);
  }
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  it('an entry altered without fixing its hash: the chain names it, and `audit verify` exits 1 naming it', async () => {
    await setup();
    await asSuperuser(database, (c) => c.query(`UPDATE "AuditEntry" SET "data" = '{"comment":"forged"}' WHERE "id" = $1`, [ids[2]!.toString()]).then(() => undefined));
    const result = await verifyAuditLog(db, { trustedKeys: trusted });
    expect(result.ok).toBe(false);
    expect(result.chains.firstBad).toEqual({ id: ids[2], chain: actionId, reason: 'hash mismatch: content altered' });

    const { code, stdout, stderr } = await runCli(['audit', 'verify'], cliEnv(database, key.seed));
    expect(code, stderr).toBe(1);
    expect(stderr).toContain(`audit chain broken at entry ${ids[2]}: hash mismatch: content altered`);
    expect(stdout).toContain('audit checkpoints intact');
  });

  it('an entry rewritten with its hash, every later hash and the action head recomputed: the chains pass, the checkpoints name it (CLI too)', async () => {
    await setup();
    await asSuperuser(database, async (c) => {
      await c.query(`UPDATE "AuditEntry" SET "data" = '{"comment":"approved by the CFO"}' WHERE "id" = $1`, [ids[2]!.toString()]);
      await rehashChain(c, actionId);
    });
    const result = await verifyAuditLog(db, { trustedKeys: trusted });
    expect(result.chains.ok).toBe(true);
    expect(result.seal.ok).toBe(false);
    expect(result.seal.firstBad).toMatchObject({ entryId: ids[2], reason: 'entry altered after sealing' });

    const { code, stdout, stderr } = await runCli(['audit', 'verify'], cliEnv(database, key.seed));
    expect(code, stderr).toBe(1);
    expect(stdout).toMatch(/^audit chain intact: 7 entries checked$/m);
    expect(stderr).toMatch(new RegExp(`audit checkpoint \\d+ broken at entry ${ids[2]}: entry altered after sealing`));
  });

  it('deleted entries: a gap is named by the chain; the last entry deleted with the head fixed is named by the checkpoints', async () => {
    await setup();
    await asSuperuser(database, (c) => c.query(`DELETE FROM "AuditEntry" WHERE "id" = $1`, [ids[1]!.toString()]).then(() => undefined));
    expect((await verifyAuditChain(db)).firstBad).toEqual({ id: ids[2], chain: actionId, reason: 'chain gap: an entry before this one was deleted' });
    expect((await verifyAuditSeal(db, { trustedKeys: trusted })).firstBad).toMatchObject({ entryId: ids[1], reason: 'entry deleted after sealing' });

    await setup();
    await asSuperuser(database, async (c) => {
      await c.query(`DELETE FROM "AuditEntry" WHERE "id" = $1`, [ids[5]!.toString()]);
      await rehashChain(c, actionId);
    });
    const result = await verifyAuditLog(db, { trustedKeys: trusted });
    expect(result.chains.ok).toBe(true);
    expect(result.seal.firstBad).toMatchObject({ entryId: ids[5], reason: 'entry deleted after sealing' });
  });

  it('entries cut off the end without fixing the head, or a whole chain deleted, are named by the chain check', async () => {
    await setup();
    await asSuperuser(database, (c) => c.query(`DELETE FROM "AuditEntry" WHERE "id" = ANY($1::bigint[])`, [[ids[4]!.toString(), ids[5]!.toString()]]).then(() => undefined));
    expect((await verifyAuditChain(db)).firstBad).toEqual({ id: ids[3], chain: actionId, reason: 'chain head mismatch: entries were cut off the end' });

    await asSuperuser(database, (c) => c.query(`DELETE FROM "AuditEntry" WHERE "chain" = $1`, [actionId]).then(() => undefined));
    expect((await verifyAuditChain(db)).firstBad).toEqual({ id: null, chain: actionId, reason: 'chain head mismatch: entries were cut off the end' });
  });

  it('an entry inserted into a sealed range (chain and head fixed) is named by the checkpoints', async () => {
    await setup();
    const [first] = await chainOf(db, actionId);
    const [last] = await db.auditEntry.findMany({ where: { chain: actionId }, orderBy: { chainSeq: 'desc' }, take: 1 });
    let insertedId = 0n;
    await asSuperuser(database, async (c) => {
      // Dated into the past: its transaction id is one the checkpoints have already covered.
      const { rows } = await c.query(
        `INSERT INTO "AuditEntry" ("chain", "chainSeq", "txid", "spaceId", "actionId", "event", "actor", "data", "prevHash", "hash", "createdAt")
         VALUES ($1, $2, $3, $4, $5, 'action.approved', 'system', '{"comment":"inserted"}', '', '', now()) RETURNING "id"`,
        [actionId, last!.chainSeq + 1, first!.txid.toString(), f.spaceId, actionId],
      );
      insertedId = BigInt(rows[0].id);
      await rehashChain(c, actionId);
    });
    const result = await verifyAuditLog(db, { trustedKeys: trusted });
    expect(result.chains.ok).toBe(true);
    expect(result.seal.firstBad).toMatchObject({ entryId: insertedId, reason: 'entry inserted into a sealed range' });
  });

  it('reordered entries: swapped places in the chain are named by the chain check, or (rehashed) by the checkpoints; a moved transaction id by the checkpoints', async () => {
    await setup();
    const swap = async (c: pg.Client) => {
      await c.query(`UPDATE "AuditEntry" SET "chainSeq" = -1 WHERE "id" = $1`, [ids[1]!.toString()]);
      await c.query(`UPDATE "AuditEntry" SET "chainSeq" = 2 WHERE "id" = $1`, [ids[2]!.toString()]);
      await c.query(`UPDATE "AuditEntry" SET "chainSeq" = 3 WHERE "id" = $1`, [ids[1]!.toString()]);
    };
    await asSuperuser(database, swap);
    expect((await verifyAuditChain(db)).firstBad).toMatchObject({ id: ids[2], reason: 'hash mismatch: content altered' });

    await setup();
    await asSuperuser(database, async (c) => {
      await swap(c);
      await rehashChain(c, actionId);
    });
    const rehashed = await verifyAuditLog(db, { trustedKeys: trusted });
    expect(rehashed.chains.ok).toBe(true);
    expect(rehashed.seal.firstBad).toMatchObject({ entryId: ids[1], reason: 'entry altered after sealing' });

    await setup();
    const [a, , , , e] = await chainOf(db, actionId);
    // Entries 1 and 5 came from different transactions; swapping their txids reorders the sealed range.
    await asSuperuser(database, async (c) => {
      await c.query(`UPDATE "AuditEntry" SET "txid" = $1 WHERE "id" = $2`, [e!.txid.toString(), a!.id.toString()]);
      await c.query(`UPDATE "AuditEntry" SET "txid" = $1 WHERE "id" = $2`, [a!.txid.toString(), e!.id.toString()]);
    });
    const moved = await verifyAuditLog(db, { trustedKeys: trusted });
    expect(moved.chains.ok).toBe(true);
    expect(moved.seal.firstBad?.reason).toBe('entry reordered after sealing');
  });

  it('a checkpoint rewritten to match (hash recomputed, no key) fails its signature; one signed with a key added to SigningKey fails against trusted keys', async () => {
    await setup();
    let target = await db.auditCheckpoint.findMany({ orderBy: { id: 'asc' } });
    const forge = async (signWith: Signer | null) => {
      target = await db.auditCheckpoint.findMany({ orderBy: { id: 'asc' } });
      await asSuperuser(database, async (c) => {
        await c.query(`UPDATE "AuditEntry" SET "data" = '{"comment":"forged"}' WHERE "id" = $1`, [ids[0]!.toString()]);
        await rehashChain(c, actionId);
        // Rebuild every checkpoint from the rewritten entries, as the sealer would have.
        let prev = '';
        for (const cp of target) {
          const listed = parseCheckpointEntries(cp.entries);
          const { rows } = await c.query(`SELECT "id", "hash" FROM "AuditEntry" WHERE "id" = ANY($1::bigint[])`, [listed.map((e) => e.id.toString())]);
          const hashes = new Map(rows.map((r: { id: string; hash: string }) => [BigInt(r.id), r.hash]));
          const entries = checkpointEntriesText(listed.map((e) => ({ id: e.id, hash: hashes.get(e.id)! })));
          const hash = checkpointHash({ prevHash: prev, lastTxid: cp.lastTxid, lastId: cp.lastId, entries });
          const signed = signWith ? signCheckpoint(signWith, hash) : { signature: cp.signature, keyId: cp.keyId };
          await c.query(`UPDATE "AuditCheckpoint" SET "prevHash" = $1, "hash" = $2, "entries" = $3, "signature" = $4, "keyId" = $5 WHERE "id" = $6`, [
            prev, hash, entries, signed.signature, signed.keyId, cp.id.toString(),
          ]);
          prev = hash;
        }
        if (signWith) await c.query(`INSERT INTO "SigningKey" ("keyId", "publicKey") VALUES ($1, $2)`, [signWith.keyId, signWith.publicKey]);
      });
    };

    await forge(null);
    let result = await verifyAuditLog(db, { trustedKeys: trusted });
    expect(result.chains.ok).toBe(true);
    expect(result.seal.firstBad).toEqual({ checkpointId: target[0]!.id, reason: 'checkpoint signature invalid' });
    expect((await verifyAuditLog(db)).seal.firstBad?.reason).toBe('checkpoint signature invalid');

    await setup();
    const mallory = newKey().signer;
    await forge(mallory);
    result = await verifyAuditLog(db, { trustedKeys: trusted });
    expect(result.seal.firstBad).toEqual({ checkpointId: target[0]!.id, reason: 'checkpoint signed by an unknown or untrusted key' });
    // `audit verify` trusts the deployment's own key (SIGNING_KEY here), not the database's list.
    const { code, stderr } = await runCli(['audit', 'verify'], cliEnv(database, key.seed));
    expect(code, stderr).toBe(1);
    expect(stderr).toContain(`audit checkpoint ${target[0]!.id} broken: checkpoint signed by an unknown or untrusted key`);
    // Trusting whatever keys the database lists is what lets this through; the result says which it did.
    const databaseKeys = await verifyAuditLog(db);
    expect(databaseKeys.seal).toMatchObject({ ok: true, keysFromDatabase: true, keyIds: [mallory.keyId] });
  });

  it('a running sealer whose last checkpoint is deleted (or rewritten) stops sealing instead of signing what replaced it, and says so', async () => {
    await setup();
    const errors: string[] = [];
    const sealer = startAuditSealer({ db, signer: key.signer, logger: { ...silent, error: (_d, msg) => errors.push(msg) }, intervalMs: 60_000 });
    try {
      await appendToAction(db, actionId, [approved(f, actionId, 'g')]);
      expect(await sealCount(() => sealer.sealOnce(), 1)).toBe(1);
      const newest = await db.auditCheckpoint.findFirstOrThrow({ orderBy: { id: 'desc' } });
      await asSuperuser(database, async (c) => {
        await c.query(`DELETE FROM "AuditCheckpoint" WHERE "id" = $1`, [newest.id.toString()]);
        await c.query(`UPDATE "AuditEntry" SET "data" = '{"comment":"forged"}' WHERE "id" = $1`, [ids[5]!.toString()]);
        await rehashChain(c, actionId);
      });
      await expect(sealer.sealOnce()).rejects.toThrow(AuditSealTamperedError);
      await expect(sealer.sealOnce()).rejects.toThrow(/checkpoint \d+ .* is gone/);
      expect(errors).toEqual([expect.stringContaining('checkpoint log was tampered with')]);
      expect(await db.auditCheckpoint.count({ where: { id: { gte: newest.id } } })).toBe(0);
    } finally {
      await sealer.close();
    }
    // The checkpoints that remain still name the rewritten entry.
    expect((await verifyAuditSeal(db, { trustedKeys: trusted })).firstBad).toMatchObject({ entryId: ids[5], reason: 'entry altered after sealing' });
  });

  it('newest checkpoints deleted while no sealer ran: a sealer that starts refuses to seal over the gap, and `audit verify` names it, by the anchor in Redis', async () => {
    await setup();
    const prefix = uniqueRedisPrefix('anchor');
    const redis = new Redis(testRedisUrl);
    try {
      const anchor = redisCheckpointAnchor({ redis, prefix, timeoutMs: 2000, db });
      const first = startAuditSealer({ db, signer: key.signer, logger: silent, intervalMs: 60_000, anchor });
      await appendToAction(db, actionId, [approved(f, actionId, 'g')]);
      expect(await sealCount(() => first.sealOnce(), 1)).toBe(1);
      await first.close();
      const newest = await db.auditCheckpoint.findFirstOrThrow({ orderBy: { id: 'desc' } });
      expect(await anchor.read()).toEqual({ id: newest.id, hash: newest.hash });

      // While no sealer runs: the newest checkpoint goes, and the entry it sealed is rewritten.
      await asSuperuser(database, async (c) => {
        await c.query(`DELETE FROM "AuditCheckpoint" WHERE "id" = $1`, [newest.id.toString()]);
        await c.query(`UPDATE "AuditEntry" SET "data" = '{"comment":"forged"}' WHERE "chain" = $1 AND "chainSeq" = 7`, [actionId]);
        await rehashChain(c, actionId);
      });
      const errors: string[] = [];
      const restarted = startAuditSealer({ db, signer: key.signer, logger: { ...silent, error: (_d, m) => errors.push(m) }, intervalMs: 60_000, anchor });
      await expect(restarted.sealOnce()).rejects.toThrow(AuditSealTamperedError);
      await restarted.close();
      expect(errors).toHaveLength(1);
      expect(await db.auditCheckpoint.count({ where: { id: { gte: newest.id } } })).toBe(0);

      const result = await verifyAuditLog(db, { trustedKeys: trusted, expectedHead: await anchor.read() });
      expect(result.chains.ok).toBe(true);
      expect(result.seal.firstBad).toEqual({ checkpointId: newest.id, reason: 'checkpoint missing or changed: the newest one recorded outside the database is not in the log' });
      // Without the anchor the log looks whole, with one entry not sealed yet.
      expect((await verifyAuditLog(db, { trustedKeys: trusted })).seal).toMatchObject({ ok: true, unsealed: 1 });

      const { code, stderr } = await runCli(['audit', 'verify'], { ...cliEnv(database, key.seed), REDIS_URL: testRedisUrl, REDIS_PREFIX: prefix });
      expect(code, stderr).toBe(1);
      expect(stderr).toContain(`audit checkpoint ${newest.id} broken: checkpoint missing or changed`);

      // Another database under the same prefix has an anchor of its own: no false alarm.
      const fresh = await createTestDatabase();
      const freshDb = createPrismaClient({ connection: fresh.connection, poolMax: 2 });
      try {
        const g = await seedSpace(freshDb, 'fresh');
        const a = await newAction(freshDb, g);
        await appendToAction(freshDb, a, [approved(g, a, 'new')]);
        const sealer = startAuditSealer({ db: freshDb, signer: key.signer, logger: silent, intervalMs: 60_000, anchor: redisCheckpointAnchor({ redis, prefix, timeoutMs: 2000, db: freshDb }) });
        expect(await sealCount(() => sealer.sealOnce(), 1)).toBe(1);
        await sealer.close();
      } finally {
        await freshDb.$disconnect();
        await fresh.drop();
      }
    } finally {
      redis.disconnect();
      await deleteRedisPrefix(prefix);
    }
  });

  it('`audit verify` on an intact log exits 0 with both summaries', async () => {
    await setup();
    const { code, stdout, stderr } = await runCli(['audit', 'verify'], cliEnv(database, key.seed));
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('audit chain intact: 7 entries checked');
    expect(stdout).toContain(`audit checkpoints intact: `);
    expect(stdout).toContain(`sealing 7 entries, signed by key ${key.signer.keyId}; 0 entries not sealed yet`);
  });
});

describe('audit export', () => {
  const key = newKey();
  let database: TestDatabase;
  let db: PrismaClient;
  let f: Fixture;
  let actionId: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createPrismaClient({ connection: database.connection, poolMax: 3 });
    f = await seedSpace(db, 'export');
    actionId = await newAction(db, f);
    const other = await newAction(db, f);
    await appendToAction(db, actionId, [approved(f, actionId, 'one')]);
    await appendToAction(db, other, [approved(f, other, 'not this one')]);
    await sealAll(db, key.signer);
    await appendToAction(db, actionId, [approved(f, actionId, 'two'), approved(f, actionId, 'three')]);
    await sealAll(db, key.signer);
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  it("writes the action's entries, the checkpoints that sealed them and their key, and the bundle verifies offline", async () => {
    const file = path.join(dataDir, 'bundle.json');
    const { code, stderr } = await runCli(['audit', 'export', '--action', actionId, '--out', file], cliEnv(database, key.seed));
    expect(code, stderr).toBe(0);
    expect(stderr).toContain(`exported 3 audit entries of action ${actionId} with 2 checkpoint(s)`);
    const bundle = JSON.parse(await readFile(file, 'utf8')) as AuditBundle;
    expect(bundle.entries.map((e) => e.chainSeq)).toEqual([1, 2, 3]);
    expect(bundle.checkpoints).toHaveLength(2);
    expect(bundle.keys).toEqual([expect.objectContaining({ kid: key.signer.keyId, x: key.signer.publicKey, kty: 'OKP', crv: 'Ed25519' })]);

    expect(verifyAuditBundle(bundle)).toMatchObject({ ok: true, entries: 3, checkpoints: 2, keyIds: [key.signer.keyId], keysFromBundle: true });
    // No database: an unreachable DATABASE_URL changes nothing.
    const offline = await runCli(['audit', 'verify', '--bundle', file], { DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/none', REDIS_AUTOSTART: 'false', DATA_DIR: path.join(dataDir, 'elsewhere') });
    expect(offline.code, offline.stderr).toBe(0);
    expect(offline.stdout).toContain(`audit bundle intact: action ${actionId}, 3 entries sealed in 2 checkpoint(s), signed by key ${key.signer.keyId}`);
    expect(offline.stdout).toContain('note: the keys came from the bundle itself');
  });

  it('a tampered bundle fails, naming the entry or checkpoint; a key the verifier does not trust fails too', async () => {
    const bundle = await exportActionAudit(db, actionId);
    const copy = () => JSON.parse(JSON.stringify(bundle)) as AuditBundle;

    const altered = copy();
    altered.entries[1]!.data = { comment: 'changed' };
    expect(verifyAuditBundle(altered).firstBad).toEqual({ entryId: bundle.entries[1]!.id, reason: 'hash mismatch: content altered' });

    // Rehashed to stay a consistent chain: the checkpoints no longer list it.
    const rehashed = copy();
    let prev = '';
    rehashed.entries[1]!.data = { comment: 'changed' };
    for (const e of rehashed.entries) {
      e.prevHash = prev;
      e.hash = auditLink(prev, e.chainSeq, auditContentHash({ ...e, createdAt: new Date(e.createdAt) }));
      prev = e.hash;
    }
    expect(verifyAuditBundle(rehashed).firstBad).toEqual({ entryId: bundle.entries[1]!.id, reason: 'entry not sealed by any checkpoint in the bundle' });

    const dropped = copy();
    dropped.entries.splice(1, 1);
    expect(verifyAuditBundle(dropped).firstBad).toEqual({ entryId: bundle.entries[2]!.id, reason: 'chain gap: an entry is missing' });

    const forged = copy();
    forged.checkpoints[0]!.entries = forged.checkpoints[0]!.entries.replace(/ [0-9a-f]{64}/, ` ${'0'.repeat(64)}`);
    forged.checkpoints[0]!.hash = checkpointHash(forged.checkpoints[0]!);
    expect(verifyAuditBundle(forged).firstBad).toEqual({ checkpointId: bundle.checkpoints[0]!.id, reason: 'checkpoint signature invalid' });

    const stranger = newKey().signer;
    expect(verifyAuditBundle(bundle, { trustedKeys: new Map([[stranger.keyId, stranger.publicKey]]) }).firstBad).toEqual({
      checkpointId: bundle.checkpoints[0]!.id,
      reason: 'checkpoint signed by an unknown or untrusted key',
    });

    const file = path.join(dataDir, 'tampered.json');
    await writeFile(file, JSON.stringify(altered));
    const { code, stdout, stderr } = await runCli(['audit', 'verify', '--bundle', file], { REDIS_AUTOSTART: 'false', DATA_DIR: path.join(dataDir, 'elsewhere') });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain(`audit bundle broken at entry ${bundle.entries[1]!.id}: hash mismatch: content altered`);

    await writeFile(file, '{"format":"something else"}');
    const notBundle = await runCli(['audit', 'verify', '--bundle', file], { REDIS_AUTOSTART: 'false', DATA_DIR: path.join(dataDir, 'elsewhere') });
    expect(notBundle.code).toBe(1);
    expect(notBundle.stderr).toMatch(/action-engine: not an audit bundle: format/);
  });

  it('an action whose newest entries are not sealed yet: export waits for the sealer, then says so and writes nothing', async () => {
    await appendToAction(db, actionId, [approved(f, actionId, 'four')]);
    const file = path.join(dataDir, 'unsealed.json');
    const { code, stderr } = await runCli(['audit', 'export', '--action', actionId, '--out', file, '--wait', '0.3'], cliEnv(database, key.seed));
    expect(code).toBe(1);
    expect(stderr).toMatch(/1 of action \S+ 4 audit entries are not sealed into a checkpoint yet/);
    await expect(readFile(file)).rejects.toThrow(/ENOENT/);

    const waiting = exportActionAudit(db, actionId, { waitMs: 5000, pollMs: 50 });
    setTimeout(() => void sealAll(db, key.signer), 200);
    const bundle = await waiting;
    expect(bundle.entries).toHaveLength(4);
    expect(verifyAuditBundle(bundle).ok).toBe(true);
  });

  it('refuses an id that is not a UUID or names no action', async () => {
    await expect(exportActionAudit(db, 'act-1')).rejects.toThrow(/is not an action id/);
    await expect(exportActionAudit(db, '00000000-0000-4000-8000-000000000000')).rejects.toThrow(/no action 00000000-0000-4000-8000-000000000000/);
  });
});
