/**
 * Benchmark of the whole path (spec §11), beside the bare ceiling of its parts, in one run.
 *
 *   npx tsx scripts/bench.ts [--actions 500] [--concurrency 20] [--worker-concurrency 5] [--cpu-profile FILE]
 *
 * 1. Whole path: the API server and an execution worker in this process, one graphql-ws
 *    subscriber on `actionEvents`; N `createAction(type: "noop")` mutations over HTTP with C in
 *    flight. Latency: sending the mutation → the subscriber receiving its COMPLETED event.
 *    Then checks every action is COMPLETED with one execution and one receipt, and counts its
 *    audit rows.
 * 2. Ceiling, BullMQ: N jobs (same job options as the engine's queue) added by C adders and
 *    processed by a Worker doing nothing, same worker concurrency. Latency: add → `completed`.
 * 3. Ceiling, Postgres: N transactions (BEGIN; INSERT one small row; COMMIT), C at once.
 * 4. Ratios of the whole path to the ceilings.
 *
 * Also reported, to say where the time goes: the path split by the status events the
 * subscriber sees, how busy the audit chain's advisory lock is (sampled from pg_locks and
 * pg_stat_activity), SQL statements, write transactions and WAL per action, and this process's event-loop
 * utilisation; with --cpu-profile, a CPU profile of this process during the measured whole-path
 * run is written to FILE (open it in Chrome DevTools) and summarised by package.
 *
 * Everything is on loopback: the local PostgreSQL (a fresh migrated database, dropped at the end;
 * TEST_DATABASE_URL overrides the server) and Redis (TEST_REDIS_URL, default
 * redis://127.0.0.1:6379; a unique key prefix, deleted at the end). Stops with an error after
 * 5 minutes. Prints figures only; it asserts nothing beyond exiting 1 when a check fails.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Session } from 'node:inspector/promises';
import { parseArgs } from 'node:util';
import { Queue, Worker, type JobsOptions, type RedisOptions } from 'bullmq';
import { createClient, type Client } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import { createApp, redisOptionsFromUrl, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createApiKey } from '../src/engine/api-keys.js';
import { verifyAuditChain } from '../src/engine/audit.js';
import { createLogger } from '../src/logger.js';
import { createApiServer } from '../src/server.js';
import { startWorker } from '../src/worker.js';
import { createTestDatabase, type TestDatabase } from '../tests/helpers/postgres.js';
import { deleteRedisPrefix, testRedisUrl, uniqueRedisPrefix } from '../tests/helpers/redis.js';

const TIME_LIMIT_MS = 5 * 60_000;
/** The audit chain's advisory lock (src/engine/audit.ts): keys (0x41450000, 1). */
const AUDIT_LOCK = { classid: 0x41450000, objid: 1 };
const SAMPLE_EVERY_MS = 10;
/** Actions run one after another (each after the last has completed), for the unloaded latency. */
const SOLO_ACTIONS = 20;

// ---------------------------------------------------------------------------------------------
// Arguments

interface Options {
  actions: number;
  concurrency: number;
  workerConcurrency: number;
  cpuProfile: string | null;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      actions: { type: 'string', default: '500' },
      concurrency: { type: 'string', default: '20' },
      'worker-concurrency': { type: 'string', default: '5' },
      'cpu-profile': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log('usage: npx tsx scripts/bench.ts [--actions 500] [--concurrency 20] [--worker-concurrency 5] [--cpu-profile FILE]');
    process.exit(0);
  }
  const int = (name: string, raw: string, min: number, max: number) => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
    return n;
  };
  return {
    actions: int('actions', values.actions, 1, 20_000),
    concurrency: int('concurrency', values.concurrency, 1, 200),
    // WORKER_CONCURRENCY's own bounds (src/config.ts).
    workerConcurrency: int('worker-concurrency', values['worker-concurrency'], 1, 100),
    cpuProfile: values['cpu-profile'] ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// Figures

interface Stats {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles of durations in ms. */
function stats(values: readonly number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
  return {
    count: sorted.length,
    p50: at(50),
    p95: at(95),
    p99: at(99),
    min: sorted[0] ?? NaN,
    max: sorted.at(-1) ?? NaN,
    mean: sorted.reduce((s, v) => s + v, 0) / (sorted.length || 1),
  };
}

interface Measurement {
  label: string;
  /** Completed per second, first start → last completion. */
  throughput: number;
  seconds: number;
  latency: Stats;
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '–').padStart(8);
const rate = (v: number) => `${v.toFixed(1)}/s`.padStart(11);
const pct = (v: number) => `${(v * 100).toFixed(0)}%`;

function latencyHeader(first: string, width: number): string {
  return `${first.padEnd(width)}${'p50'.padStart(8)}${'p95'.padStart(8)}${'p99'.padStart(8)}${'max'.padStart(8)}`;
}
function latencyRow(label: string, s: Stats, width: number): string {
  return `${label.padEnd(width)}${ms(s.p50)}${ms(s.p95)}${ms(s.p99)}${ms(s.max)}`;
}

/** Runs `task(i)` for i = 0 … n-1 with at most `concurrency` in flight. */
async function pool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

type Defer = (label: string, fn: () => Promise<unknown> | unknown) => void;

/** `fn` the first time; later calls get the same promise (closing twice is then harmless). */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= fn());
}


function assertLoopback(what: string, host: string): void {
  if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host)) throw new Error(`${what} is not on loopback (${host}); this benchmark runs on loopback only`);
}

// ---------------------------------------------------------------------------------------------
// Ceiling: Postgres commits

async function postgresCeiling(db: TestDatabase, n: number, concurrency: number, options: { serialised: boolean }, defer: Defer): Promise<Measurement> {
  const client = new pg.Pool({ connectionString: db.url, max: concurrency, application_name: 'bench-ceiling' });
  client.on('error', () => undefined); // an idle connection dropped (the database going at cleanup)
  const end = once(() => client.end());
  defer('Postgres ceiling pool', end);
  try {
    const table = options.serialised ? 'bench_scratch_locked' : 'bench_scratch';
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (id bigserial PRIMARY KEY, note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
    const one = async (note: string) => {
      const c = await client.connect();
      try {
        await c.query('BEGIN');
        // Another key than the audit chain's: nothing else runs now, but keep them apart anyway.
        if (options.serialised) await c.query('SELECT pg_advisory_xact_lock($1, 99)', [AUDIT_LOCK.classid]);
        await c.query(`INSERT INTO ${table} (note) VALUES ($1)`, [note]);
        await c.query('COMMIT');
      } catch (error) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        c.release();
      }
    };
    await pool(Math.min(100, n), concurrency, (i) => one(`warm-up ${i}`));
    const latencies = new Array<number>(n);
    const started = performance.now();
    await pool(n, concurrency, async (i) => {
      const t0 = performance.now();
      await one(`row ${i}`);
      latencies[i] = performance.now() - t0;
    });
    const seconds = (performance.now() - started) / 1000;
    return {
      label: options.serialised ? 'ref: Postgres commit under one advisory lock' : 'ceiling: Postgres commit (1-row INSERT)',
      throughput: n / seconds,
      seconds,
      latency: stats(latencies),
    };
  } finally {
    await end();
  }
}

// ---------------------------------------------------------------------------------------------
// Ceiling: BullMQ add + process

async function bullmqCeiling(prefix: string, n: number, concurrency: number, workerConcurrency: number, defer: Defer): Promise<Measurement> {
  const connection = benchRedisOptions(testRedisUrl);
  // The engine's job options (src/engine/queue.ts): custom id, priority, 3 attempts, retention.
  const queue = new Queue('ceiling', {
    connection,
    prefix: `${prefix}:ceiling`,
    defaultJobOptions: {
      attempts: 3,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
  const addedAt = new Map<string, number>();
  const latencies: number[] = [];
  let done: () => void = () => {};
  let completed = 0;
  let target = 0;
  let lastCompletedAt = 0;
  const worker = new Worker<{ i: number; run: string }>('ceiling', async () => {}, {
    connection,
    prefix: `${prefix}:ceiling`,
    concurrency: workerConcurrency,
    lockDuration: 30_000,
    stalledInterval: 30_000,
    maxStalledCount: 2,
  });
  const close = once(async () => {
    await worker.close();
    await queue.close();
  });
  defer('BullMQ ceiling', close);
  worker.on('completed', (job) => {
    const t = performance.now();
    const start = addedAt.get(job.id ?? '');
    if (start === undefined) return;
    latencies.push(t - start);
    lastCompletedAt = t;
    if (++completed === target) done();
  });
  let workerError: Error | null = null;
  worker.on('error', (error) => {
    workerError = error;
  });
  const batch = async (run: string, count: number) => {
    addedAt.clear();
    latencies.length = 0;
    completed = 0;
    target = count;
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const started = performance.now();
    await pool(count, concurrency, async (i) => {
      const jobId = `${run}-${i}`;
      addedAt.set(jobId, performance.now());
      const opts: JobsOptions = { jobId, priority: 5, delay: 0 };
      await queue.add('execute', { i, run }, opts);
    });
    await finished;
    if (workerError) throw workerError;
    return { started, ended: lastCompletedAt };
  };
  try {
    await worker.waitUntilReady();
    await batch('warmup', Math.min(100, n));
    const { started, ended } = await batch('run', n);
    const seconds = (ended - started) / 1000;
    return { label: 'ceiling: BullMQ add→completed (no-op job)', throughput: n / seconds, seconds, latency: stats(latencies) };
  } finally {
    await close();
  }
}

// ---------------------------------------------------------------------------------------------
// CPU profile of this process (optional)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

async function startProfiler(): Promise<() => Promise<CpuProfile>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    return profile as CpuProfile;
  };
}

/** Where a profile's samples fall, by package (node_modules), source folder, or V8 bucket. */
function summariseProfile(profile: CpuProfile): Array<[string, number]> {
  const where = new Map<number, string>();
  for (const node of profile.nodes) {
    const { url, functionName } = node.callFrame;
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
    const src = /\/(src|scripts|tests)\/(.*)$/.exec(url);
    where.set(
      node.id,
      pkg ?? (src ? `${src[1]}/${src[2]!.split('/').slice(0, -1).join('/') || src[2]}` : url.startsWith('node:') ? `node:${url.slice(5).split('/')[0]}` : url ? 'other' : `(${functionName.replace(/[()]/g, '') || 'native'})`),
    );
  }
  const time = new Map<string, number>();
  let total = 0;
  (profile.samples ?? []).forEach((id, i) => {
    const dt = profile.timeDeltas?.[i] ?? 0;
    const key = where.get(id) ?? '?';
    time.set(key, (time.get(key) ?? 0) + dt);
    total += dt;
  });
  return [...time.entries()].map(([k, v]) => [k, v / (total || 1)] as [string, number]).sort((a, b) => b[1] - a[1]);
}

// ---------------------------------------------------------------------------------------------
// Whole path

interface ActionTimes {
  sent: number;
  responded?: number;
  events: Partial<Record<string, number>>;
  eventCount: number;
  statuses: string[];
}

interface LockSample {
  waiting: number;
  active: number;
  idleInTx: number;
  holder: string | null;
}

interface WholePathResult {
  measurement: Measurement;
  solo: Measurement;
  /** Each phase under load, and one at a time. */
  phases: Array<[string, Stats, Stats]>;
  checks: Array<{ ok: boolean; text: string }>;
  auditPerAction: Stats;
  auditEvents: string;
  samples: LockSample[];
  writeTxPerAction: number;
  /** SQL statements the engine's own connections sent (BEGIN/COMMIT included), per action. */
  statementsPerAction: number;
  walPerAction: number;
  eventLoopUtilisation: number;
  cpuOfOneCore: number;
  dbPoolMax: number;
  profile: Array<[string, number]> | null;
}

/**
 * Statements sent by the engine's connections (application_name `action-engine`), counted where
 * the `pg` driver sends them; the bench's own sampler is not counted.
 */
const engineStatements = { count: 0 };
{
  const query = pg.Client.prototype.query as (...args: unknown[]) => unknown;
  pg.Client.prototype.query = function counted(this: pg.Client & { connectionParameters?: { application_name?: string } }, ...args: unknown[]) {
    if (this.connectionParameters?.application_name === 'action-engine') engineStatements.count += 1;
    return query.apply(this, args);
  } as typeof pg.Client.prototype.query;
}

const CREATE_ACTION = `mutation($i: CreateActionInput!) {
  createAction(input: $i) { action { id status } errors { code message } }
}`;
const ACTION_EVENTS = 'subscription { actionEvents(filter: {type: ["noop"]}) { actionId status seq } }';

async function wholePath(
  db: TestDatabase,
  prefix: string,
  dataDir: string,
  opts: Options,
  defer: Defer,
): Promise<WholePathResult> {
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    DATABASE_URL: db.url,
    DB_POOL_MAX: process.env.DB_POOL_MAX,
    REDIS_URL: testRedisUrl,
    REDIS_PREFIX: prefix,
    REDIS_AUTOSTART: 'false',
    ENABLE_NOOP_HANDLER: 'true',
    WORKER_CONCURRENCY: String(opts.workerConcurrency),
    LOG_LEVEL: 'silent',
    SHUTDOWN_TIMEOUT_MS: '2000',
  });
  const app: App = await createApp(config, createLogger({ level: config.logLevel }), { migrate: false, sweepExpiredApprovals: false });
  defer('app', () => app.close());
  const worker = startWorker(app);
  const server = createApiServer(app);
  defer('API server', () => server.close());
  defer('worker', () => worker.close());
  const port = await server.listen(0, '127.0.0.1');
  const graphqlUrl = `http://127.0.0.1:${port}/graphql`;
  const { key } = await createApiKey(app.db, { role: 'AGENT', space: 'bench', user: 'bench-agent' });

  // --- the subscriber
  const times = new Map<string, ActionTimes>();
  /** Events of actions whose mutation has not answered yet (the worker can be that fast). */
  const early = new Map<string, Array<[string, number]>>();
  let waitingFor = new Set<string>();
  let allDone: () => void = () => {};
  const completedWaiters = new Map<string, () => void>();
  let subscriptionError: ((error: Error) => void) | null = null;
  const failed = new Promise<never>((_, reject) => {
    subscriptionError = reject;
  });
  failed.catch(() => undefined);
  const record = (id: string, status: string, t: number) => {
    const entry = times.get(id);
    if (!entry) {
      const list = early.get(id) ?? [];
      list.push([status, t]);
      early.set(id, list);
      return;
    }
    entry.eventCount += 1;
    if (entry.statuses.at(-1) !== status) entry.statuses.push(status);
    entry.events[status] ??= t;
    if (status === 'COMPLETED') completedWaiters.get(id)?.();
    if (status === 'COMPLETED' && waitingFor.delete(id) && waitingFor.size === 0) allDone();
  };
  const client: Client = createClient({
    url: `ws://127.0.0.1:${port}/graphql`,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
    connectionParams: { authorization: `Bearer ${key}` },
  });
  defer('graphql-ws client', () => client.dispose());
  const connected = new Promise<void>((resolve) => client.on('connected', () => resolve()));
  client.subscribe<{ actionEvents: { actionId: string; status: string; seq: number } }>(
    { query: ACTION_EVENTS },
    {
      next: ({ data, errors }) => {
        if (errors?.length) subscriptionError?.(new Error(`subscription error: ${JSON.stringify(errors)}`));
        if (data) record(data.actionEvents.actionId, data.actionEvents.status, performance.now());
      },
      error: (error) => subscriptionError?.(error instanceof Error ? error : new Error(`subscription failed: ${JSON.stringify(error)}`)),
      complete: () => subscriptionError?.(new Error('the subscription ended early')),
    },
  );
  await Promise.race([connected, failed]);

  // --- the mutation
  const create = async (note: string): Promise<string> => {
    const sent = performance.now();
    const res = await fetch(graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: CREATE_ACTION, variables: { i: { type: 'noop', payload: { note } } } }),
    });
    const body = (await res.json()) as {
      data?: { createAction: { action: { id: string; status: string } | null; errors: Array<{ code: string; message: string }> } };
      errors?: unknown[];
    };
    const responded = performance.now();
    const out = body.data?.createAction;
    if (res.status !== 200 || body.errors?.length || !out?.action || out.errors.length) {
      throw new Error(`createAction failed (HTTP ${res.status}): ${JSON.stringify(body.errors ?? out?.errors ?? body)}`);
    }
    if (out.action.status !== 'APPROVED') throw new Error(`noop action ${out.action.id} is ${out.action.status}, not APPROVED (is there a safety rule for noop?)`);
    const id = out.action.id;
    const entry: ActionTimes = { sent, responded, events: {}, eventCount: 0, statuses: [] };
    times.set(id, entry);
    waitingFor.add(id);
    for (const [status, t] of early.get(id) ?? []) record(id, status, t);
    early.delete(id);
    return id;
  };

  /** Creates `n` actions, C in flight; resolves when every one has been seen COMPLETED. */
  const batch = async (n: number, label: string): Promise<{ ids: string[]; started: number; ended: number }> => {
    waitingFor = new Set();
    let sending = true;
    const finished = new Promise<void>((resolve) => {
      allDone = () => {
        if (!sending) resolve();
      };
    });
    const ids: string[] = [];
    const started = performance.now();
    await Promise.race([
      pool(n, opts.concurrency, async (i) => {
        ids.push(await create(`${label} ${i}`));
      }),
      failed,
    ]);
    sending = false;
    if (waitingFor.size > 0) await Promise.race([finished, failed]);
    const ended = Math.max(...ids.map((id) => times.get(id)!.events.COMPLETED!));
    return { ids, started, ended };
  };

  // The server subscribes to Redis a moment after the socket connects: wait until an action's
  // events arrive before counting on the stream.
  for (let round = 0; ; round++) {
    if (round === 40) throw new Error('the subscriber saw no event of a noop action in 20 s');
    const id = await create(`sentinel ${round}`);
    waitingFor.clear();
    for (let i = 0; i < 10 && !times.get(id)?.events.COMPLETED; i++) await sleep(50);
    if (times.get(id)?.events.COMPLETED) break;
  }
  await batch(Math.min(100, Math.max(20, Math.round(opts.actions / 5))), 'warm-up');

  // --- measured run, with the audit lock sampled on the side
  const sampler = new pg.Client({ connectionString: db.url, application_name: 'bench-sampler' });
  sampler.on('error', () => undefined);
  await sampler.connect();
  defer('sampler', () => sampler.end());
  const samples: LockSample[] = [];
  let sampling = true;
  const sampleQuery = `
    SELECT count(*) FILTER (WHERE a.wait_event_type = 'Lock' AND a.wait_event = 'advisory')::int AS waiting,
           count(*) FILTER (WHERE a.state = 'active')::int AS active,
           count(*) FILTER (WHERE a.state = 'idle in transaction')::int AS "idleInTx",
           (SELECT h.state || coalesce(' / ' || h.wait_event_type || ':' || h.wait_event, '')
              FROM pg_locks l JOIN pg_stat_activity h ON h.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = ${AUDIT_LOCK.classid} AND l.objid = ${AUDIT_LOCK.objid}
               AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             LIMIT 1) AS holder
      FROM pg_stat_activity a
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.application_name = 'action-engine'`;
  // Write transactions (xids) and WAL bytes, server-wide: without other activity on the server, the engine's.
  const writes = async () => {
    const { rows } = await sampler.query<{ xid: string; lsn: string }>(
      "SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid, pg_current_wal_lsn()::text AS lsn",
    );
    return rows[0]!;
  };
  const writesBefore = await writes();
  // Never rejects: a failed sample (e.g. the sampler closed by an interrupted run) ends sampling.
  const sampled = (async () => {
    try {
      while (sampling) {
        const { rows } = await sampler.query<LockSample>(sampleQuery);
        if (rows[0]) samples.push(rows[0]);
        await sleep(SAMPLE_EVERY_MS);
      }
    } catch {
      sampling = false;
    }
  })();

  const stopProfiler = opts.cpuProfile ? await startProfiler() : null;
  const statements0 = engineStatements.count;
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let measured;
  try {
    measured = await batch(opts.actions, 'bench');
  } finally {
    sampling = false;
    await sampled;
  }
  const profile = stopProfiler ? await stopProfiler() : null;
  if (profile && opts.cpuProfile) await writeFile(opts.cpuProfile, JSON.stringify(profile));
  const wall = performance.now() - t0;
  const statementsPerAction = (engineStatements.count - statements0) / opts.actions;
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const cpu = process.cpuUsage(cpu0);
  const writesAfter = await writes();
  const { rows: walRows } = await sampler.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($1, $2)::text AS bytes', [writesAfter.lsn, writesBefore.lsn]);
  const writeTxPerAction = (Number(writesAfter.xid) - Number(writesBefore.xid)) / opts.actions;
  const walPerAction = Number(walRows[0]?.bytes ?? NaN) / opts.actions;

  const { ids, started, ended } = measured;
  const entries = ids.map((id) => times.get(id)!);
  const seconds = (ended - started) / 1000;
  const at = (e: ActionTimes, point: string) => (point === 'sent' ? e.sent : (e.events[point] ?? NaN));
  const between = (a: string, b: string, of = entries) => of.map((e) => at(e, b) - at(e, a)).filter(Number.isFinite);

  // Unloaded, for reference: a few more, each created once the one before has completed.
  const soloIds: string[] = [];
  const soloStarted = performance.now();
  for (let i = 0; i < SOLO_ACTIONS; i++) {
    const id = await create(`solo ${i}`);
    soloIds.push(id);
    if (!times.get(id)!.events.COMPLETED) {
      await Promise.race([new Promise<void>((resolve) => completedWaiters.set(id, resolve)), failed]);
      completedWaiters.delete(id);
    }
  }
  const solo = { ids: soloIds, started: soloStarted, ended: times.get(soloIds.at(-1)!)!.events.COMPLETED! };
  const soloEntries = solo.ids.map((id) => times.get(id)!);
  const soloLatency = stats(soloEntries.map((e) => e.events.COMPLETED! - e.sent));

  // --- checks, from the database
  const [byStatus, executions, receipts, audit, auditByEvent] = await Promise.all([
    app.db.action.groupBy({ by: ['status'], where: { id: { in: ids } }, _count: true }),
    app.db.execution.groupBy({ by: ['actionId'], where: { actionId: { in: ids } }, _count: true }),
    app.db.receipt.groupBy({ by: ['actionId'], where: { actionId: { in: ids } }, _count: true }),
    app.db.auditEntry.groupBy({ by: ['actionId'], where: { actionId: { in: ids } }, _count: true }),
    app.db.auditEntry.groupBy({ by: ['event'], where: { actionId: { in: ids } }, _count: true }),
  ]);
  const completed = byStatus.find((s) => s.status === 'COMPLETED')?._count ?? 0;
  const oneEach = (rows: Array<{ _count: number }>) => rows.length === ids.length && rows.every((r) => r._count === 1);
  const auditCounts = ids.map((id) => audit.find((a) => a.actionId === id)?._count ?? 0);
  const sequenceOk = entries.filter((e) => e.statuses.join('>') === 'APPROVED>EXECUTING>COMPLETED').length;
  const chain = await verifyAuditChain(app.db);
  const checks = [
    { ok: completed === ids.length, text: `${completed}/${ids.length} actions COMPLETED${completed === ids.length ? '' : ` (${byStatus.map((s) => `${s.status} ${s._count}`).join(', ')})`}` },
    { ok: oneEach(executions), text: `exactly 1 execution each: ${oneEach(executions) ? 'yes' : `no (${executions.length} actions have executions)`}` },
    { ok: oneEach(receipts), text: `exactly 1 receipt each: ${oneEach(receipts) ? 'yes' : `no (${receipts.length} actions have receipts)`}` },
    { ok: sequenceOk === ids.length, text: `subscriber saw APPROVED → EXECUTING → COMPLETED for ${sequenceOk}/${ids.length}` },
    { ok: chain.ok, text: `audit chain verifies: ${chain.ok ? `yes (${chain.checked} entries)` : `NO, first bad entry ${chain.firstBad?.id}`}` },
  ];

  return {
    measurement: { label: 'whole path: createAction → COMPLETED event', throughput: ids.length / seconds, seconds, latency: stats(between('sent', 'COMPLETED')) },
    solo: {
      label: `ref: whole path, one at a time (${SOLO_ACTIONS} more)`,
      throughput: SOLO_ACTIONS / ((solo.ended - solo.started) / 1000),
      seconds: (solo.ended - solo.started) / 1000,
      latency: soloLatency,
    },
    phases: (
      [
        ['HTTP createAction (send → response)', (of: ActionTimes[]) => of.map((e) => e.responded! - e.sent)],
        ['send → APPROVED event', (of: ActionTimes[]) => between('sent', 'APPROVED', of)],
        ['APPROVED → EXECUTING event', (of: ActionTimes[]) => between('APPROVED', 'EXECUTING', of)],
        ['EXECUTING → COMPLETED event', (of: ActionTimes[]) => between('EXECUTING', 'COMPLETED', of)],
        ['send → COMPLETED event (whole)', (of: ActionTimes[]) => between('sent', 'COMPLETED', of)],
      ] as const
    ).map(([label, f]) => [label, stats(f(entries)), stats(f(soloEntries))] as [string, Stats, Stats]),
    checks,
    auditPerAction: stats(auditCounts),
    auditEvents: auditByEvent
      .map((e) => `${e.event} ${(e._count / ids.length).toFixed(2).replace(/\.00$/, '')}`)
      .join(', '),
    samples,
    writeTxPerAction,
    statementsPerAction,
    walPerAction,
    eventLoopUtilisation: elu,
    cpuOfOneCore: (cpu.user + cpu.system) / 1000 / wall,
    dbPoolMax: config.dbPoolMax,
    profile: profile ? summariseProfile(profile) : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(opts: Options, defer: Defer): Promise<boolean> {
  assertLoopback('Redis', new URL(testRedisUrl).hostname);
  const prefix = uniqueRedisPrefix('bench');
  defer('Redis keys', () => deleteRedisPrefix(prefix));
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ae-bench-'));
  defer('data dir', () => rm(dataDir, { recursive: true, force: true }));
  const db = await createTestDatabase();
  defer('database', () => db.drop());
  assertLoopback('PostgreSQL', db.connection.host);

  console.log(
    `action-engine bench  ${new Date().toISOString()}  node ${process.version}  N=${opts.actions}  C=${opts.concurrency}  ` +
      `worker concurrency=${opts.workerConcurrency}  cpus=${cpus().length}`,
  );
  console.log(`  PostgreSQL ${db.connection.host}:${db.connection.port}/${db.connection.database}  Redis ${new URL(testRedisUrl).host} prefix ${prefix}`);

  const pgCeiling = await postgresCeiling(db, opts.actions, opts.concurrency, { serialised: false }, defer);
  const pgSerial = await postgresCeiling(db, opts.actions, opts.concurrency, { serialised: true }, defer);
  const bull = await bullmqCeiling(prefix, opts.actions, opts.concurrency, opts.workerConcurrency, defer);
  const whole = await wholePath(db, prefix, dataDir, opts, defer);

  const W = 46;
  console.log('');
  console.log(`${latencyHeader('', W)}${'throughput'.padStart(12)}   (latency ms; throughput = N / first start → last completion)`);
  for (const m of [whole.measurement, bull, pgCeiling, pgSerial, whole.solo]) console.log(`${latencyRow(m.label, m.latency, W)} ${rate(m.throughput)}`);

  const floor = bull.throughput <= pgCeiling.throughput ? bull : pgCeiling;
  const tRatio = whole.measurement.throughput / floor.throughput;
  const both = bull.latency.p50 + pgCeiling.latency.p50;
  console.log('');
  console.log(
    `throughput ratio  whole path / min(ceilings) = ${whole.measurement.throughput.toFixed(1)} / ${floor.throughput.toFixed(1)} (${floor === bull ? 'BullMQ' : 'Postgres'}) = ${tRatio.toFixed(3)}  (${(tRatio * 100).toFixed(1)}% of the ceiling)`,
  );
  console.log(
    `p50 latency ratio whole path / (BullMQ p50 + Postgres p50) = ${whole.measurement.latency.p50.toFixed(1)} / ${both.toFixed(1)} = ${(whole.measurement.latency.p50 / both).toFixed(1)}×` +
      `   (vs BullMQ alone ${(whole.measurement.latency.p50 / bull.latency.p50).toFixed(1)}×, vs Postgres alone ${(whole.measurement.latency.p50 / pgCeiling.latency.p50).toFixed(1)}×)`,
  );

  console.log('');
  console.log(`checks (whole path, ${opts.actions} actions, DB pool ${whole.dbPoolMax}, worker concurrency ${opts.workerConcurrency}):`);
  for (const c of whole.checks) console.log(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.text}`);
  if (opts.workerConcurrency + opts.concurrency > whole.dbPoolMax) {
    console.log(`  note: API requests (${opts.concurrency}) + worker jobs (${opts.workerConcurrency}) in flight share DB_POOL_MAX=${whole.dbPoolMax} connections`);
  }
  const a = whole.auditPerAction;
  console.log(`  audit rows per action: ${a.min === a.max ? a.min : `min ${a.min}, p50 ${a.p50}, max ${a.max}`} (mean ${a.mean.toFixed(2)}): ${whole.auditEvents}`);

  console.log('');
  console.log(`${latencyHeader('where the time goes (ms, per action)', W)}${'p50, one at a time'.padStart(20)}`);
  for (const [label, loaded, solo] of whole.phases) console.log(`${latencyRow(label, loaded, W)}${ms(solo.p50).padStart(20)}`);
  const s = whole.samples;
  if (s.length) {
    const held = s.filter((x) => x.holder !== null);
    const holders = new Map<string, number>();
    for (const x of held) holders.set(x.holder!, (holders.get(x.holder!) ?? 0) + 1);
    const top = [...holders.entries()].sort((x, y) => y[1] - x[1]).slice(0, 4);
    const mean = (f: (x: LockSample) => number) => s.reduce((t, x) => t + f(x), 0) / s.length;
    const heldFraction = held.length / s.length;
    // Three audited transactions per action (created+queued, EXECUTING, COMPLETED).
    const lockedTx = 3 * opts.actions;
    const holdMs = (heldFraction * whole.measurement.seconds * 1000) / lockedTx;
    console.log(
      `audit advisory lock (${s.length} samples, every ~${SAMPLE_EVERY_MS} ms): held in ${pct(heldFraction)} of samples; ` +
        `backends waiting for it: mean ${mean((x) => x.waiting).toFixed(1)}, max ${Math.max(...s.map((x) => x.waiting))}; ` +
        `engine connections active ${mean((x) => x.active).toFixed(1)}, idle in transaction ${mean((x) => x.idleInTx).toFixed(1)}`,
    );
    console.log(`  holder's state: ${top.map(([k, v]) => `${k} ${pct(v / held.length)}`).join(', ')}`);
    console.log('    (idle in transaction / ClientRead: Postgres is waiting for this process to send the next statement)');
    console.log(
      `  ≈ ${holdMs.toFixed(2)} ms held per audited transaction (3 per action) → that lock alone allows ≈ ${(1000 / (3 * holdMs)).toFixed(0)} actions/s`,
    );
  }
  console.log(
    `Postgres per action: ${whole.statementsPerAction.toFixed(1)} SQL statements, ${whole.writeTxPerAction.toFixed(1)} write transactions, ${(whole.walPerAction / 1024).toFixed(1)} kB WAL (server-wide counters); ` +
      `this process: event loop ${pct(whole.eventLoopUtilisation)} busy, CPU ${pct(whole.cpuOfOneCore)} of one core ` +
      `= ${((whole.cpuOfOneCore * 1000) / whole.measurement.throughput).toFixed(1)} ms CPU per action`,
  );
  if (whole.profile) {
    const shown = whole.profile.slice(0, 14);
    console.log(`CPU profile of this process during the measured run (written to ${opts.cpuProfile}), share of samples:`);
    for (let i = 0; i < shown.length; i += 4) console.log(`  ${shown.slice(i, i + 4).map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`.padEnd(30)).join('')}`);
  }
  return whole.checks.every((c) => c.ok);
}

const opts = parseOptions();
const cleanups: Array<{ label: string; fn: () => Promise<unknown> | unknown }> = [];
let timer: NodeJS.Timeout | undefined;
let ok = false;
/** A time-out or an interrupt: said in one line, without a stack. */
class Stop extends Error {}
try {
  const timeLimit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Stop(`time limit: the benchmark did not finish in ${TIME_LIMIT_MS / 1000} s`)), TIME_LIMIT_MS);
  });
  const interrupted = new Promise<never>((_, reject) => process.once('SIGINT', () => reject(new Stop('interrupted (SIGINT)'))));
  const run = main(opts, (label, fn) => cleanups.push({ label, fn }));
  // After a time-out or an interrupt the run goes on failing against closed clients: ignore that.
  run.catch(() => undefined);
  ok = await Promise.race([run, timeLimit, interrupted]);
} catch (error) {
  const text = error instanceof Stop ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
  console.error(`\nbenchmark failed: ${text}; cleaning up`);
  // Whatever the abandoned run still has going must not end the process before cleanup is done.
  process.on('unhandledRejection', () => undefined);
  let reported = false;
  process.on('uncaughtException', (e) => {
    if (!reported) console.error(`(while stopping: ${e.message})`);
    reported = true;
  });
} finally {
  clearTimeout(timer);
  for (const { label, fn } of cleanups.reverse()) {
    try {
      await Promise.race([
        Promise.resolve().then(fn),
        sleep(15_000, undefined, { ref: false }).then(() => {
          throw new Error('timed out');
        }),
      ]);
    } catch (error) {
      console.error(`cleanup of ${label} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
// Everything is closed; exit now rather than wait on a straggling timer of a library.
process.exit(ok ? 0 : 1);

function benchRedisOptions(url: string): RedisOptions {
  return { ...redisOptionsFromUrl(url), maxRetriesPerRequest: null };
}
