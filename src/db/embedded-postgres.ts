import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import type { PgConnectionOptions } from './connection.js';

/** Options for {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** The service's data directory; PGlite keeps its database in `<dataDir>/pglite`, across restarts. */
  dataDir: string;
  /** Loopback port to serve on; 0 (the default) picks a free one. */
  port?: number;
  /** Where progress and trouble are reported (one line each). */
  log?: (msg: string) => void;
}

/** A running embedded PostgreSQL. */
export interface EmbeddedPostgres {
  /** How to reach it (user and database `postgres`, no password). */
  connection: PgConnectionOptions;
  /** PGlite is one backend: a client pool larger than this only queues at the server. */
  poolMax: 1;
  /** Stops serving, closes PGlite cleanly (data flushed) and releases the data directory. */
  close(): Promise<void>;
}

/** Starting or running the embedded PostgreSQL failed; the message says what and where. */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

const HOST = '127.0.0.1';
/** How long a second connection may wait for its turn before it is refused. */
const QUEUE_WAIT_MS = 30_000;
const MAX_WAITING_CONNECTIONS = 64;
/** A waiting client sends only its startup (and maybe SSL) request before it is answered. */
const MAX_BUFFERED_BYTES = 64 * 1024;
const DRAIN_WAIT_MS = 5_000;
/** The wire-protocol Sync message: 'S', length 4. */
const SYNC_MESSAGE = new Uint8Array([0x53, 0, 0, 0, 4]);

/**
 * Starts PGlite on `<dataDir>/pglite` and serves it over the PostgreSQL wire protocol on
 * 127.0.0.1, so the same node-postgres/adapter-pg code and migration tool work against it.
 *
 * Clients are served strictly one connection at a time: further connections wait in a queue
 * (up to 30 s) until the current one disconnects, and each new connection starts from a clean
 * session (no open or half-finished transaction, no leftover settings or prepared statements).
 * Refuses to start while another process (or this one) has the same data directory open.
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const log = opts.log ?? (() => {});
  const dataDir = path.resolve(opts.dataDir);
  const pgDataDir = path.join(dataDir, 'pglite');
  const port = opts.port ?? 0;

  try {
    await mkdir(dataDir, { recursive: true });
  } catch (err) {
    throw new EmbeddedPostgresError(`embedded PostgreSQL: cannot create data directory ${dataDir}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  const releaseLock = await lockDataDir(dataDir, log);

  let db: PGlite | undefined;
  let inner: PGLiteSocketServer | undefined;
  try {
    const fresh = !existsSync(path.join(pgDataDir, 'PG_VERSION'));
    if (fresh) log(`embedded PostgreSQL: creating a new database in ${pgDataDir} (takes a few seconds)`);
    try {
      db = await PGlite.create({ dataDir: pgDataDir });
    } catch (err) {
      throw new EmbeddedPostgresError(`embedded PostgreSQL: PGlite could not open its database in ${pgDataDir}: ${messageOf(err)}`, {
        cause: err,
      });
    }

    // maxConnections 1, not the multiplexer: with more, the server interleaves several clients'
    // protocol messages on PGlite's single session. It keeps an explicit BEGIN…COMMIT to one
    // client, but the unnamed statement, prepared statements, settings and the extended-protocol
    // state are shared, so a client's Bind can bind to another client's Parse (a large parameter
    // arriving in several TCP chunks is enough). One client at a time is real Postgres semantics.
    // That server closes a second connection outright instead of queueing it (a pool that
    // reconnects races its own old connection's teardown), so the gate below queues in front.
    inner = new PGLiteSocketServer({ db, host: HOST, port: 0, maxConnections: 1 });
    try {
      await inner.start();
    } catch (err) {
      throw new EmbeddedPostgresError(`embedded PostgreSQL: the PGlite socket server could not start: ${messageOf(err)}`, {
        cause: err,
      });
    }
    const innerServer = inner;
    const innerPort = Number(innerServer.getServerConn().split(':').pop());
    const database = db;

    const gate = new ConnectionGate({
      upstreamPort: innerPort,
      activeUpstreams: () => innerServer.getStats().activeConnections,
      resetSession: () => resetSession(database),
      log,
    });
    let boundPort: number;
    try {
      boundPort = await gate.listen(port);
    } catch (err) {
      throw new EmbeddedPostgresError(`embedded PostgreSQL: cannot listen on ${HOST}:${port}: ${messageOf(err)}`, { cause: err });
    }
    log(`embedded PostgreSQL (PGlite) listening on ${HOST}:${boundPort}, data in ${pgDataDir}`);

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> => {
      closing ??= (async () => {
        const problems: string[] = [];
        await gate.close().catch((err: unknown) => problems.push(`closing connections: ${messageOf(err)}`));
        await innerServer.stop().catch((err: unknown) => problems.push(`stopping the socket server: ${messageOf(err)}`));
        await database.close().catch((err: unknown) => problems.push(`closing PGlite: ${messageOf(err)}`));
        await releaseLock().catch((err: unknown) => problems.push(`removing the lock file: ${messageOf(err)}`));
        if (problems.length > 0) {
          throw new EmbeddedPostgresError(`embedded PostgreSQL in ${pgDataDir} did not shut down cleanly: ${problems.join('; ')}`);
        }
        log('embedded PostgreSQL stopped');
      })();
      return closing;
    };

    return {
      connection: { host: HOST, port: boundPort, user: 'postgres', password: undefined, database: 'postgres' },
      poolMax: 1,
      close,
    };
  } catch (err) {
    await inner?.stop().catch(() => {});
    await db?.close().catch(() => {});
    await releaseLock().catch(() => {});
    throw err;
  }
}

/**
 * Returns the session to what a new connection expects. A client that vanished mid-pipeline
 * after an error leaves the backend discarding everything until a Sync, so the next
 * connection's queries would never be answered; one that vanished inside BEGIN leaves the
 * transaction open; SET, PREPARE, temp tables and LISTEN would leak to the next client.
 */
async function resetSession(db: PGlite): Promise<void> {
  await db.runExclusive(() => db.execProtocolRaw(SYNC_MESSAGE));
  if (db.isInTransaction()) await db.exec('ROLLBACK');
  await db.exec('DISCARD ALL');
}

interface GateOptions {
  upstreamPort: number;
  /** Connections the PGlite socket server still counts (it forgets one a tick after close). */
  activeUpstreams: () => number;
  resetSession: () => Promise<void>;
  log: (msg: string) => void;
}

interface WaitingClient {
  socket: net.Socket;
  since: number;
  chunks: Buffer[];
  bytes: number;
  timer: NodeJS.Timeout;
  onData: (chunk: Buffer) => void;
}

/** Accepts any number of connections and passes them, one at a time, to the PGlite server. */
class ConnectionGate {
  private readonly server: net.Server;
  private readonly waiting: WaitingClient[] = [];
  private active: { client: net.Socket; upstream: net.Socket; released: Promise<void> } | undefined;
  private closing = false;

  constructor(private readonly opts: GateOptions) {
    this.server = net.createServer((socket) => this.accept(socket));
  }

  listen(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, HOST, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.opts.log(`embedded PostgreSQL: listener error: ${err.message}`));
        const address = this.server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const w of this.waiting.splice(0)) this.refuse(w, '57P01', 'the embedded PostgreSQL is shutting down');
    const active = this.active;
    if (active) {
      active.client.destroy();
      active.upstream.destroy();
      await active.released;
    }
    await closed;
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on('error', () => {}); // a client going away is reported by 'close'
    if (this.closing) {
      endWithError(socket, '57P01', 'the embedded PostgreSQL is shutting down');
      return;
    }
    if (this.waiting.length >= MAX_WAITING_CONNECTIONS) {
      endWithError(socket, '53300', `the embedded PostgreSQL serves one connection at a time and ${MAX_WAITING_CONNECTIONS} are already waiting`);
      return;
    }
    const w: WaitingClient = {
      socket,
      since: Date.now(),
      chunks: [],
      bytes: 0,
      timer: setTimeout(() => {
        this.dequeue(w);
        this.refuse(
          w,
          '53300',
          `the embedded PostgreSQL serves one connection at a time and the current one was not closed within ${QUEUE_WAIT_MS / 1000} s`,
        );
      }, QUEUE_WAIT_MS),
      onData: (chunk) => {
        w.chunks.push(chunk);
        w.bytes += chunk.length;
        if (w.bytes > MAX_BUFFERED_BYTES) {
          this.dequeue(w);
          socket.destroy();
        }
      },
    };
    w.timer.unref();
    socket.on('data', w.onData);
    socket.once('close', () => this.dequeue(w));
    this.waiting.push(w);
    this.admitNext();
  }

  private dequeue(w: WaitingClient): void {
    clearTimeout(w.timer);
    const i = this.waiting.indexOf(w);
    if (i !== -1) this.waiting.splice(i, 1);
  }

  private refuse(w: WaitingClient, code: string, message: string): void {
    clearTimeout(w.timer);
    w.socket.off('data', w.onData);
    this.opts.log(`embedded PostgreSQL: refused a waiting connection: ${message}`);
    endWithError(w.socket, code, message);
  }

  private admitNext(): void {
    if (this.active || this.closing) return;
    let w = this.waiting.shift();
    while (w?.socket.destroyed) w = this.waiting.shift();
    if (!w) return;
    clearTimeout(w.timer);
    const waited = Date.now() - w.since;
    if (waited > 1_000) this.opts.log(`embedded PostgreSQL: a connection waited ${waited} ms for the previous one to close`);
    const client = w.socket;
    const upstream = net.connect({ host: HOST, port: this.opts.upstreamPort });
    upstream.setNoDelay(true);
    // Writes before 'connect' are queued by the socket, and nothing runs between off() and
    // pipe(), so no byte of the client's is lost or reordered.
    for (const chunk of w.chunks) upstream.write(chunk);
    client.off('data', w.onData);
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.on('error', (err) => {
      this.opts.log(`embedded PostgreSQL: connection to PGlite failed: ${err.message}`);
      client.destroy();
    });
    client.on('close', () => upstream.end());
    const released = new Promise<void>((resolve) => {
      upstream.once('close', () => {
        client.end();
        void this.release().then(resolve);
      });
    });
    this.active = { client, upstream, released };
  }

  private async release(): Promise<void> {
    const deadline = Date.now() + DRAIN_WAIT_MS;
    while (this.opts.activeUpstreams() > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2));
    }
    if (this.opts.activeUpstreams() > 0) {
      this.opts.log('embedded PostgreSQL: the previous connection is still registered after 5 s; admitting the next anyway');
    }
    try {
      await this.opts.resetSession();
    } catch (err) {
      this.opts.log(`embedded PostgreSQL: resetting the session between connections failed: ${messageOf(err)}`);
    }
    this.active = undefined;
    this.admitNext();
  }
}

/** Answers with a FATAL ErrorResponse, so the client reports why instead of "connection terminated". */
function endWithError(socket: net.Socket, code: string, message: string): void {
  socket.end(errorResponse(code, message), () => socket.destroy());
}

function errorResponse(code: string, message: string): Buffer {
  const field = (type: string, value: string) => Buffer.concat([Buffer.from(type, 'ascii'), Buffer.from(value, 'utf8'), Buffer.from([0])]);
  const body = Buffer.concat([field('S', 'FATAL'), field('V', 'FATAL'), field('C', code), field('M', message), Buffer.from([0])]);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'ascii');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

interface LockContent {
  pid: number;
  hostname: string;
  startedAt: string;
}

/**
 * Takes `<dataDir>/pglite.lock` (two processes on one PGlite directory corrupt it) and returns
 * its release. A lock whose process is gone is stale and replaced.
 */
async function lockDataDir(dataDir: string, log: (msg: string) => void): Promise<() => Promise<void>> {
  const lockPath = path.join(dataDir, 'pglite.lock');
  const mine = JSON.stringify({ pid: process.pid, hostname: os.hostname(), startedAt: new Date().toISOString() } satisfies LockContent);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(lockPath, mine, { flag: 'wx' });
      return async () => {
        const current = await readFile(lockPath, 'utf8').catch(() => undefined);
        if (current === mine) await rm(lockPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new EmbeddedPostgresError(`embedded PostgreSQL: cannot create lock file ${lockPath}: ${messageOf(err)}`, { cause: err });
      }
    }
    const holder = await readLockHolder(lockPath);
    if (holder === 'gone') continue;
    if (holder.alive) {
      throw new EmbeddedPostgresError(
        `embedded PostgreSQL: data directory ${dataDir} is in use by another running instance (${holder.who}); ` +
          `stop it first or point DATA_DIR elsewhere, since two processes on one PGlite database corrupt it ` +
          `(if you are sure none is running, delete ${lockPath})`,
      );
    }
    log(`embedded PostgreSQL: removing stale lock ${lockPath} (${holder.who} is no longer running)`);
    await rm(lockPath, { force: true });
  }
  throw new EmbeddedPostgresError(`embedded PostgreSQL: could not take lock ${lockPath}: another process keeps taking it`);
}

async function readLockHolder(lockPath: string): Promise<'gone' | { alive: boolean; who: string }> {
  let raw: string;
  let mtimeMs: number;
  try {
    [raw, mtimeMs] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath).then((s) => s.mtimeMs)]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw new EmbeddedPostgresError(`embedded PostgreSQL: cannot read lock file ${lockPath}: ${messageOf(err)}`, { cause: err });
  }
  let content: Partial<LockContent> = {};
  try {
    content = JSON.parse(raw) as Partial<LockContent>;
  } catch {
    // An empty or torn file is either being written right now or left by a crash mid-write.
    return { alive: Date.now() - mtimeMs < 5_000, who: 'a process that is writing the lock file' };
  }
  const { pid, hostname, startedAt } = content;
  if (typeof pid !== 'number' || typeof hostname !== 'string') {
    return { alive: Date.now() - mtimeMs < 5_000, who: 'unknown process' };
  }
  const who = `pid ${pid} on ${hostname}${startedAt ? `, since ${startedAt}` : ''}`;
  if (hostname !== os.hostname()) return { alive: true, who };
  if (pid === process.pid) {
    // Same pid: this process, or a previous one with the same pid (pid 1 in a restarted
    // container). Only a lock written since this process started is really ours.
    const processStart = Date.now() - process.uptime() * 1000;
    const lockTime = startedAt ? Date.parse(startedAt) : mtimeMs;
    return { alive: !(lockTime < processStart - 1_000), who: `this process, pid ${pid}` };
  }
  return { alive: isRunning(pid), who };
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
