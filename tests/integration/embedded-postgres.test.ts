import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgConnectionOptions } from '../../src/db/connection.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { createPrismaClient } from '../../src/db/prisma-client.js';
import type { PrismaClient } from '../../src/generated/prisma/client.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves with the promise's value, or fails the test if it takes longer than `ms`. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms (deadlock?)`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function connect(c: PgConnectionOptions): Promise<pg.Client> {
  const client = new pg.Client({ ...c, connectionTimeoutMillis: 5_000, query_timeout: 5_000 });
  client.on('error', () => {}); // a connection the test kills reports through its promises
  await client.connect();
  return client;
}

/** Just enough of the wire protocol to drive one connection message by message. */
const cstring = (text: string) => Buffer.from(`${text}\0`, 'utf8');
const int16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const frontend = (type: string, ...parts: Buffer[]) => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from(type, 'ascii'), int32(body.length + 4), body]);
};
const startupMessage = () => {
  const body = Buffer.concat([int32(196608), cstring('user'), cstring('postgres'), cstring('database'), cstring('postgres'), Buffer.from([0])]);
  return Buffer.concat([int32(body.length + 4), body]);
};
const parseMessage = (sql: string) => frontend('P', cstring(''), cstring(sql), int16(0));
const bindMessage = (value: string) =>
  frontend('B', cstring(''), cstring(''), int16(0), int16(1), int32(Buffer.byteLength(value)), Buffer.from(value, 'utf8'), int16(0));
const executeMessage = () => frontend('E', cstring(''), int32(0));
const syncMessage = () => frontend('S');

/** A raw client connection that reads backend messages until one of a given type arrives. */
class RawConnection {
  private buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  static async open(c: PgConnectionOptions): Promise<RawConnection> {
    const socket = net.connect({ host: c.host, port: c.port });
    await new Promise((resolve) => socket.once('connect', resolve));
    const conn = new RawConnection(socket);
    socket.write(startupMessage());
    await conn.readUntil('Z');
    return conn;
  }

  /** Messages up to and including the first of `type`: 'Z' ReadyForQuery, '1' ParseComplete, 'E' error. */
  async readUntil(type: string): Promise<{ type: string; body: Buffer }[]> {
    const messages: { type: string; body: Buffer }[] = [];
    for (;;) {
      while (this.buffer.length >= 5 && this.buffer.length >= 1 + this.buffer.readInt32BE(1)) {
        const length = this.buffer.readInt32BE(1);
        const message = { type: String.fromCharCode(this.buffer[0]!), body: this.buffer.subarray(5, 1 + length) };
        this.buffer = this.buffer.subarray(1 + length);
        messages.push(message);
        if (message.type === type) return messages;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  /** Binds `value` to the unnamed statement, runs it, and returns the first column or the error. */
  async bindAndExecute(value: string): Promise<string> {
    this.socket.write(Buffer.concat([bindMessage(value), executeMessage(), syncMessage()]));
    const replies = await this.readUntil('Z');
    const row = replies.find((m) => m.type === 'D');
    if (row) return row.body.subarray(6, 6 + row.body.readInt32BE(2)).toString('utf8');
    const error = replies.find((m) => m.type === 'E');
    return `error: ${error?.body.toString('utf8').split('\0').find((f) => f.startsWith('M'))?.slice(1)}`;
  }
}

/**
 * Connection A prepares `SELECT 'A:' || $1` (unnamed, as node-postgres does) and, before it
 * binds, connection B runs `SELECT 'B:' || $1` through node-postgres. Returns what A's
 * execution answered and what B's did; B's is started but not awaited before A binds.
 */
async function interleaveUnnamedStatements(c: PgConnectionOptions): Promise<{ a: string; b: string }> {
  const a = await RawConnection.open(c);
  a.socket.write(parseMessage(`SELECT 'A:' || $1::text`));
  await a.readUntil('1');
  const b = new pg.Client({ ...c, connectionTimeoutMillis: 5_000, query_timeout: 5_000 });
  const bAnswer = b
    .connect()
    .then(() => b.query<{ r: string }>(`SELECT 'B:' || $1::text AS r`, ['from-b']))
    .then((r) => r.rows[0]?.r ?? '');
  await Promise.race([bAnswer, sleep(300)]);
  const aAnswer = await a.bindAndExecute('from-a');
  a.socket.end();
  const answers = { a: aAnswer, b: await bAnswer };
  await b.end();
  return answers;
}

describe('embedded PostgreSQL (PGlite served on a loopback port)', () => {
  let dataDir: string;
  let embedded: EmbeddedPostgres | undefined;
  let prisma: PrismaClient | undefined;
  const logs: string[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ae-embedded-pg-'));
    embedded = await startEmbeddedPostgres({ dataDir, log: (m) => logs.push(m) });
    prisma = createPrismaClient({ connection: embedded.connection, poolMax: embedded.poolMax });
    await prisma.$executeRawUnsafe('CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL, state text NOT NULL)');
  }, 30_000);

  afterAll(async () => {
    await prisma?.$disconnect();
    await embedded?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('serves user and database postgres on 127.0.0.1, one pooled connection', () => {
    expect(embedded?.connection).toMatchObject({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
    expect(embedded?.connection.port).toBeGreaterThan(0);
    expect(embedded?.poolMax).toBe(1);
  });

  it('an interactive transaction, 10 concurrent plain queries and a second transaction all finish, and none sees uncommitted rows', async () => {
    const db = prisma!;
    let inserted!: () => void;
    const tx1Inserted = new Promise<void>((resolve) => (inserted = resolve));
    const started = Date.now();
    const tx1 = db.$transaction(async (tx) => {
      await tx.$executeRawUnsafe(`INSERT INTO item (name, state) VALUES ('tx1', 'uncommitted')`);
      inserted();
      await sleep(300);
      await tx.$executeRawUnsafe(`UPDATE item SET state = 'committed' WHERE name = 'tx1'`);
    });
    await tx1Inserted;

    const readAll = () => db.$queryRawUnsafe<{ name: string; state: string }[]>('SELECT name, state FROM item ORDER BY id');
    const plain = Array.from({ length: 10 }, readAll);
    const tx2 = db.$transaction(async (tx) => {
      const seen = await tx.$queryRawUnsafe<{ name: string; state: string }[]>('SELECT name, state FROM item ORDER BY id');
      await tx.$executeRawUnsafe(`INSERT INTO item (name, state) VALUES ('tx2', 'uncommitted')`);
      await tx.$executeRawUnsafe(`UPDATE item SET state = 'committed' WHERE name = 'tx2'`);
      return seen;
    });

    const [, tx2Saw, ...plainSaw] = await within(5_000, Promise.all([tx1, tx2, ...plain]));
    const elapsed = Date.now() - started;

    for (const rows of [tx2Saw, ...plainSaw]) {
      expect(rows.filter((r) => r.state === 'uncommitted')).toEqual([]);
    }
    // Nothing ran inside tx1's session: everything queued until it committed.
    for (const rows of plainSaw) expect(rows.map((r) => r.name)).toContain('tx1');
    expect(elapsed).toBeGreaterThanOrEqual(300);
    expect(await readAll()).toEqual([
      { name: 'tx1', state: 'committed' },
      { name: 'tx2', state: 'committed' },
    ]);
  });

  it('a transaction that throws is rolled back', async () => {
    const db = prisma!;
    await expect(
      db.$transaction(async (tx) => {
        await tx.$executeRawUnsafe(`INSERT INTO item (name, state) VALUES ('doomed', 'committed')`);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const rows = await db.$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM item WHERE name = 'doomed'`);
    expect(rows[0]?.n).toBe(0);
  });

  it('contention surfaces as an error, not a hang: maxWait, and a query on the outer client inside a transaction', async () => {
    const db = prisma!;
    const holder = db.$transaction(async (tx) => {
      await tx.$executeRawUnsafe('SELECT 1');
      await sleep(600);
    });
    await sleep(50);
    await expect(within(3_000, db.$transaction(async () => {}, { maxWait: 100 }))).rejects.toThrow(/Unable to start a transaction/);
    await holder;

    // The outer client needs the pool's only connection, which the transaction holds.
    const started = Date.now();
    await expect(
      within(
        5_000,
        db.$transaction(
          async (tx) => {
            await tx.$executeRawUnsafe('SELECT 1');
            await db.$queryRawUnsafe('SELECT 1');
          },
          { timeout: 500 },
        ),
      ),
    ).rejects.toThrow(/expired transaction|timeout/i);
    expect(Date.now() - started).toBeLessThan(3_000);
    // Nothing leaked: the connection is back in the pool.
    expect(await within(2_000, db.$queryRawUnsafe<{ ok: number }[]>('SELECT 1 AS ok'))).toEqual([{ ok: 1 }]);
  });

  it('serves one connection at a time: a second client waits for the first to disconnect instead of running inside its open transaction', async () => {
    await prisma!.$disconnect(); // its idle pooled connection would otherwise be the one served
    const c = embedded!.connection;
    const a = await connect(c);
    await a.query('BEGIN');
    await a.query(`INSERT INTO item (name, state) VALUES ('a', 'uncommitted')`);

    let bAnswered = false;
    const b = new pg.Client({ ...c, connectionTimeoutMillis: 5_000, query_timeout: 5_000 });
    const bResult = b
      .connect()
      .then(() => b.query<{ name: string; state: string }>(`SELECT name, state FROM item WHERE name = 'a'`))
      .finally(() => (bAnswered = true));
    await sleep(300);
    expect(bAnswered).toBe(false);

    await a.query(`UPDATE item SET state = 'committed' WHERE name = 'a'`);
    await a.query('COMMIT');
    await a.end();
    expect((await within(3_000, bResult)).rows).toEqual([{ name: 'a', state: 'committed' }]);
    await b.end();
  });

  it('the multiplexer it avoids runs one connection’s statement with another’s parameters; served one at a time, each gets its own', async () => {
    const memory = await PGlite.create();
    const multiplexed = new PGLiteSocketServer({ db: memory, host: '127.0.0.1', port: 0, maxConnections: 2 });
    await multiplexed.start();
    try {
      const port = Number(multiplexed.getServerConn().split(':').pop());
      const crossed = await within(5_000, interleaveUnnamedStatements({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' }));
      expect(crossed).toEqual({ a: 'B:from-a', b: 'B:from-b' });
    } finally {
      await multiplexed.stop();
      await memory.close();
    }

    const served = await within(5_000, interleaveUnnamedStatements(embedded!.connection));
    expect(served).toEqual({ a: 'A:from-a', b: 'B:from-b' });
  }, 20_000);

  it('a client that disconnects mid-transaction is rolled back, and the next connection starts a fresh session', async () => {
    const c = embedded!.connection;
    const a = await connect(c);
    await a.query(`SET statement_timeout = 4321`);
    await a.query(`PREPARE leftover AS SELECT 1`);
    await a.query('BEGIN');
    await a.query(`INSERT INTO item (name, state) VALUES ('ghost', 'uncommitted')`);
    const closed = new Promise((resolve) => a.once('end', resolve));
    (a as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
    await closed;

    const b = await within(3_000, connect(c));
    try {
      expect((await b.query(`SELECT count(*)::int AS n FROM item WHERE name = 'ghost'`)).rows).toEqual([{ n: 0 }]);
      expect((await b.query('SHOW statement_timeout')).rows).toEqual([{ statement_timeout: '0' }]);
      expect((await b.query('SELECT name FROM pg_prepared_statements')).rows).toEqual([]);
    } finally {
      await b.end();
    }
  });

  it('a client that vanished mid-pipeline after an error does not leave the next connection unanswered', async () => {
    const c = embedded!.connection;
    const raw = await RawConnection.open(c);
    raw.socket.write(parseMessage('SELEC broken')); // an error, and no Sync ever follows
    await raw.readUntil('E');
    raw.socket.destroy();

    const next = await within(3_000, connect(c));
    try {
      expect((await within(3_000, next.query('SELECT $1::int AS v', [7]))).rows).toEqual([{ v: 7 }]);
    } finally {
      await next.end();
    }
  });

  it('refuses a second start on the same data directory while the first runs', async () => {
    const err = await startEmbeddedPostgres({ dataDir }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toContain(`data directory ${dataDir} is in use by another running instance`);
    expect(err?.message).toContain(`pid ${process.pid}`);
  });

  it('refuses a data directory locked by another live process, without opening it', async () => {
    const other = await mkdtemp(path.join(os.tmpdir(), 'ae-embedded-pg-locked-'));
    try {
      const lock = { pid: process.ppid, hostname: os.hostname(), startedAt: new Date().toISOString() };
      await writeFile(path.join(other, 'pglite.lock'), JSON.stringify(lock));
      await expect(startEmbeddedPostgres({ dataDir: other })).rejects.toThrow(`pid ${process.ppid}`);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('keeps data across close() and a restart on the same directory, replacing a stale lock left by a dead process', async () => {
    await prisma!.$disconnect();
    await embedded!.close();
    await embedded!.close(); // idempotent
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    await writeFile(path.join(dataDir, 'pglite.lock'), JSON.stringify({ pid: deadPid, hostname: os.hostname(), startedAt: new Date().toISOString() }));

    embedded = await startEmbeddedPostgres({ dataDir, log: (m) => logs.push(m) });
    prisma = createPrismaClient({ connection: embedded.connection, poolMax: embedded.poolMax });
    expect(logs.some((m) => m.includes('stale lock') && m.includes(`pid ${deadPid}`))).toBe(true);
    const rows = await prisma.$queryRawUnsafe<{ name: string }[]>('SELECT name FROM item ORDER BY id');
    expect(rows.map((r) => r.name)).toEqual(['tx1', 'tx2', 'a']);
  });
});
