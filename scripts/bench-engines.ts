/**
 * The engine under load, two ways: in this process (API server and execution worker beside the
 * load generator, as the benchmark always ran), or as separate `action-engine` processes
 * (`start`, or `serve` + `worker` scaled out) spawned by the benchmark and stopped at the end.
 *
 * Each engine tells what it costs: CPU time of its processes (this process: `process.cpuUsage`,
 * which then includes the load generator; spawned processes: utime + stime from
 * `/proc/<pid>/stat`) and SQL statements sent on its connections (application_name
 * `action-engine`), counted where the `pg` driver sends them — here by patching
 * `pg.Client.prototype.query`, in spawned processes by the same patch preloaded from
 * scripts/bench-probe.mjs, which answers over the IPC channel.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { createApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { PrismaClient } from '../src/generated/prisma/client.js';
import { createLogger } from '../src/logger.js';
import { createApiServer } from '../src/server.js';
import { startWorker } from '../src/worker.js';
import type { TestDatabase } from '../tests/helpers/postgres.js';

const ROOT = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const PROBE = pathToFileURL(path.join(ROOT, 'scripts/bench-probe.mjs')).href;
/** How long a spawned process may take to say it is ready. */
const START_TIMEOUT_MS = 60_000;
/** How long a spawned process may take to stop after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 15_000;

/**
 * Statements sent by the engine's connections in this process (application_name
 * `action-engine`); the bench's own clients use other names and are not counted.
 */
export const engineStatements = { count: 0 };
{
  const query = pg.Client.prototype.query as (...args: unknown[]) => unknown;
  pg.Client.prototype.query = function counted(this: pg.Client & { connectionParameters?: { application_name?: string } }, ...args: unknown[]) {
    if (this.connectionParameters?.application_name === 'action-engine') engineStatements.count += 1;
    return query.apply(this, args);
  } as typeof pg.Client.prototype.query;
}

/** What the load generator needs of an engine, however it runs. */
export interface Engine {
  /** e.g. "in-process", "1 (start)", "2+2". */
  label: string;
  /** GraphQL over HTTP, one per API process (requests go round-robin); `ws://` on the same path. */
  graphqlUrls: string[];
  /** For keys and checks (in this process: the engine's own client). */
  db: PrismaClient;
  /** The processes the engine runs in, with their role (`in-process`, `start`, `serve`, `worker`). */
  processes: Array<{ pid: number; role: string }>;
  /** CPU ms used so far by the engine's processes. In-process, this includes the load generator. */
  cpuMs(): Promise<number>;
  /** SQL statements sent so far on the engine's connections; null when they cannot be counted. */
  statements(): Promise<number | null>;
  /** The in-process app, when there is one (e.g. for the sealer). */
  app: App | null;
  /** Whether an audit sealer runs with this engine, and why not when it does not. */
  sealer: { running: boolean; note: string };
  close(): Promise<void>;
}

/** The environment every engine gets (beside DATABASE_URL, REDIS_PREFIX and DATA_DIR). */
export interface EngineSettings {
  db: TestDatabase;
  redisUrl: string;
  redisPrefix: string;
  dataDir: string;
  workerConcurrency: number;
}

function engineEnv(s: EngineSettings, logLevel: string): Record<string, string> {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: s.dataDir,
    DATABASE_URL: s.db.url,
    ...(process.env.DB_POOL_MAX ? { DB_POOL_MAX: process.env.DB_POOL_MAX } : {}),
    REDIS_URL: s.redisUrl,
    REDIS_PREFIX: s.redisPrefix,
    REDIS_AUTOSTART: 'false',
    ENABLE_NOOP_HANDLER: 'true',
    WORKER_CONCURRENCY: String(s.workerConcurrency),
    // The approval measurement asks for hundreds of approvals by one user within the hour.
    APPROVAL_REQUESTS_PER_HOUR: '100000',
    LOG_LEVEL: logLevel,
    SHUTDOWN_TIMEOUT_MS: '2000',
  };
}

// ---------------------------------------------------------------------------------------------
// In this process

/** API server, execution worker (and the audit sealer, when the engine has one) in this process. */
export async function startInProcessEngine(s: EngineSettings): Promise<Engine> {
  const config = loadConfig(engineEnv(s, 'silent'));
  const app = await createApp(config, createLogger({ level: config.logLevel }), { migrate: false, sweepExpiredApprovals: false });
  const closers: Array<() => Promise<unknown>> = [() => app.close()];
  try {
    const worker = startWorker(app);
    closers.push(() => worker.close());
    const server = createApiServer(app);
    closers.push(() => server.close());
    const port = await server.listen(0, '127.0.0.1');
    const sealer = await startSealerIfPresent(app);
    if (sealer.close) closers.push(sealer.close);
    return {
      label: 'in-process',
      graphqlUrls: [`http://127.0.0.1:${port}/graphql`],
      db: app.db,
      processes: [{ pid: process.pid, role: 'in-process' }],
      cpuMs: async () => {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1000;
      },
      statements: async () => engineStatements.count,
      app,
      sealer: { running: sealer.running, note: sealer.note },
      close: async () => {
        for (const close of closers.reverse()) await close();
      },
    };
  } catch (error) {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    throw error;
  }
}

/**
 * The audit sealer (src/engine/audit-sealer.ts, issue #8) runs in the processes that run the
 * worker (`start`, `worker`); `startWorker` alone does not start it, so the in-process engine
 * starts it here when the module exists. Loaded by a computed name so that the bench also runs
 * on a tree from before the sealer (its "before" figures).
 */
async function startSealerIfPresent(app: App): Promise<{ running: boolean; note: string; close?: () => Promise<unknown> }> {
  const file = path.join(ROOT, 'src/engine/audit-sealer.ts');
  if (!existsSync(file)) return { running: false, note: 'no src/engine/audit-sealer.ts in this tree' };
  try {
    const specifier = pathToFileURL(file).href;
    const mod = (await import(specifier)) as { startAuditSealer?: (options: Record<string, unknown>) => { close?: () => Promise<unknown> | unknown } };
    const signer = (app as unknown as { signer?: unknown }).signer;
    if (typeof mod.startAuditSealer !== 'function') return { running: false, note: 'audit-sealer.ts exports no startAuditSealer' };
    if (!signer) return { running: false, note: 'the app has no signer (App.signer)' };
    const intervalMs = (app.config as unknown as { auditSealIntervalMs?: number }).auditSealIntervalMs;
    const sealer = mod.startAuditSealer({ db: app.db, signer, logger: app.logger, ...(intervalMs ? { intervalMs } : {}) });
    return { running: true, note: 'started by the bench beside the in-process worker', close: async () => sealer.close?.() };
  } catch (error) {
    return { running: false, note: `could not start it: ${error instanceof Error ? error.message : String(error)}` };
  }
}

// ---------------------------------------------------------------------------------------------
// Separate processes

/** A layout of engine processes: `start` (API + worker in one) or `serve` + `worker`. */
export interface ProcessLayout {
  label: string;
  start: number;
  serve: number;
  worker: number;
}

/** "1" = one `start` process; "S+W" = S `serve` and W `worker` processes. */
export function parseLayout(text: string): ProcessLayout {
  const t = text.trim();
  if (/^[1-8]$/.test(t)) return { label: `${t} (start)`, start: Number(t), serve: 0, worker: 0 };
  const m = /^([1-8])\+([1-8])$/.exec(t);
  if (!m) throw new Error(`a process layout is N (N × start) or S+W (S serve + W worker processes), 1 to 8 each (got "${text}")`);
  return { label: t, start: 0, serve: Number(m[1]), worker: Number(m[2]) };
}

interface Spawned {
  mode: 'start' | 'serve' | 'worker';
  child: ChildProcess;
  url: string | null;
  /** Last lines of stderr and non-JSON stdout, for an error message. */
  tail: string[];
  exited: Promise<number | null>;
}

const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process in ms (0 when it is gone). */
export async function processCpuMs(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) in parentheses: state is the 3rd field, utime the 14th, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  } catch {
    return 0;
  }
}

/** Busy and total CPU ms of the whole machine so far (/proc/stat; every core, every process). */
export async function machineCpuMs(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((s, x) => s + x, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: ((total - idle) * 1000) / clockTicks, total: (total * 1000) / clockTicks };
}

/**
 * Spawns the layout's processes one after another (each ready before the next starts, so the
 * first creates the signing and secrets keys in DATA_DIR and the others read them), against
 * the same database and Redis prefix. `profileDir`: each process writes a CPU profile there
 * (`node --cpu-prof`) when it stops.
 */
export async function startProcessEngine(s: EngineSettings, layout: ProcessLayout, options: { profileDir?: string } = {}): Promise<Engine> {
  const spawned: Spawned[] = [];
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
    ...engineEnv(s, 'info'),
  };
  if (options.profileDir) await mkdir(options.profileDir, { recursive: true });
  const stopAll = async () => {
    await Promise.all(spawned.map((p) => stopProcess(p)));
  };
  try {
    const modes = [
      ...Array<'start'>(layout.start).fill('start'),
      ...Array<'serve'>(layout.serve).fill('serve'),
      ...Array<'worker'>(layout.worker).fill('worker'),
    ];
    for (const mode of modes) spawned.push(await spawnEngineProcess(mode, env, options.profileDir));
    const db = benchPrismaClient(s.db);
    return {
      label: layout.label,
      graphqlUrls: spawned.flatMap((p) => (p.url ? [p.url] : [])),
      db,
      processes: spawned.map((p) => ({ pid: p.child.pid!, role: p.mode })),
      cpuMs: async () => (await Promise.all(spawned.map((p) => processCpuMs(p.child.pid!)))).reduce((a, b) => a + b, 0),
      statements: async () => {
        const counts = await Promise.all(spawned.map((p) => askStatements(p)));
        return counts.some((n) => n === null) ? null : counts.reduce<number>((a, b) => a + (b ?? 0), 0);
      },
      app: null,
      sealer: { running: layout.start + layout.worker > 0, note: 'whatever `start` / `worker` run (the sealer, once wired into them)' },
      close: async () => {
        await db.$disconnect();
        await stopAll();
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** A Prisma client of the bench's own (application_name `bench`), not counted as the engine's. */
function benchPrismaClient(db: TestDatabase): PrismaClient {
  const c = db.connection;
  return new PrismaClient({
    adapter: new PrismaPg({ host: c.host, port: c.port, user: c.user, password: c.password, database: c.database, max: 4, application_name: 'bench' }),
  });
}

async function spawnEngineProcess(mode: Spawned['mode'], env: Record<string, string>, profileDir: string | undefined): Promise<Spawned> {
  const args = ['--import', PROBE, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), path.join(ROOT, 'bin/action-engine.js'), mode];
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line.slice(0, 300));
    if (tail.length > 20) tail.shift();
  };
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const p: Spawned = { mode, child, url: null, tail, exited };
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stderr! }).on('line', keep);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: { msg?: string; url?: string; level?: number } | null;
      try {
        entry = JSON.parse(line) as { msg?: string; url?: string; level?: number } | null;
      } catch {
        keep(line);
        return;
      }
      if (entry && (entry.level ?? 0) >= 40) keep(line);
      if (entry?.msg?.startsWith('Action Engine listening') && entry.url) {
        p.url = entry.url;
        resolve();
      }
      if (entry?.msg === 'Action Engine worker running' && mode === 'worker') resolve();
    });
    void exited.then((code) => reject(new Error(`action-engine ${mode} exited with ${code} before it was ready:\n  ${tail.join('\n  ')}`)));
  });
  const timeout = sleep(START_TIMEOUT_MS, undefined, { ref: false }).then(() => {
    throw new Error(`action-engine ${mode} was not ready within ${START_TIMEOUT_MS / 1000} s:\n  ${tail.join('\n  ')}`);
  });
  try {
    await Promise.race([ready, timeout]);
    if (p.url) await waitReady(p.url.replace(/\/graphql$/, '/readyz'));
    return p;
  } catch (error) {
    await stopProcess(p);
    throw error;
  }
}

async function waitReady(url: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
      last = `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await sleep(200);
  }
  throw new Error(`${url} did not answer 200 within ${START_TIMEOUT_MS / 1000} s (last: ${last})`);
}

let nextQuestion = 0;

/** Asks a spawned process's probe how many statements it has sent (null: no answer in 2 s). */
function askStatements(p: Spawned): Promise<number | null> {
  if (!p.child.connected) return Promise.resolve(null);
  const id = ++nextQuestion;
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(null), 2000);
    const onMessage = (m: unknown) => {
      const msg = m as { type?: string; id?: number; statements?: number };
      if (msg?.type === 'bench:stats' && msg.id === id) finish(msg.statements ?? null);
    };
    const finish = (n: number | null) => {
      clearTimeout(timer);
      p.child.off('message', onMessage);
      resolve(n);
    };
    p.child.on('message', onMessage);
    p.child.send({ type: 'bench:stats', id }, (error) => error && finish(null));
  });
}

/** SIGTERM (the service's own graceful stop), then SIGKILL after {@link STOP_TIMEOUT_MS}. Only this process's own children. */
async function stopProcess(p: Spawned): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const stopped = await Promise.race([p.exited.then(() => true), sleep(STOP_TIMEOUT_MS, false, { ref: false })]);
  if (!stopped) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}
