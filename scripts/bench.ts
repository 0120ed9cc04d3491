/**
 * Benchmark of the whole path (spec §11), beside the bare ceiling of its parts, in one run.
 *
 *   npm run bench -- [--actions 500] [--concurrency 20] [--worker-concurrency 5] [--approvals 200]
 *                    [--solo 20] [--growth] [--processes] [--json FILE] [--cpu-profile FILE] …
 *   npm run bench -- --help   lists every flag
 *
 * 1. Ceilings: BullMQ (N jobs, the engine's job options, added by C adders and processed by a
 *    Worker doing nothing, same worker concurrency; add → `completed`) and PostgreSQL (N
 *    transactions BEGIN; one-row INSERT; COMMIT, C at once), and for reference the same commits
 *    all under one advisory lock.
 * 2. Whole path, with the API server and an execution worker in this process: N
 *    `createAction(type: "noop")` mutations over HTTP, C in flight, until a graphql-ws
 *    subscriber on `actionEvents` receives COMPLETED; then 20 more one at a time; the path split
 *    by the status events seen; CPU ms per action (this process, the PostgreSQL backends of the
 *    engine's connections, the whole machine), SQL statements per action (counted at the `pg`
 *    driver on the engine's connections), write transactions and WAL per action (server-wide),
 *    and what the engine's connections waited for (pg_stat_activity sampled every 10 ms).
 *    Checks every action COMPLETED with one execution and one receipt, and the audit verifies.
 * 3. Approve → EXECUTING: `noop` actions in a second space whose safety rule (set by an admin
 *    with `upsertSafetyRule`) requires approval, approved by the user's APPROVER key with
 *    `approveAction`, C in flight and one at a time; from sending the mutation to the subscriber
 *    receiving EXECUTING.
 * 4. The audit sealer's lag: for each measured action's last audit entry, entry written → first
 *    signed checkpoint covering it ("no sealer running" when no checkpoint appears).
 * 5. With --growth: the same whole-path run again after storing 100,000 completed actions and
 *    500,000 audit entries (--seed-actions, --seed-audit), compared with the empty database.
 * 6. With --processes: the same load against `action-engine start` (1 process) and `serve` +
 *    `worker` as separate processes (1+1, 2+2; --process-layouts), requests round-robin over the
 *    API processes; CPU of the spawned processes from /proc, statements through a preloaded
 *    counter (scripts/bench-probe.mjs).
 *
 * Everything is on loopback: the local PostgreSQL (fresh migrated databases, dropped at the end;
 * TEST_DATABASE_URL overrides the server) and Redis (TEST_REDIS_URL, default
 * redis://127.0.0.1:6379; unique key prefixes, deleted at the end). Stops with an error after
 * the time limit (5 minutes, more with --growth / --processes; --time-limit). Prints figures,
 * and with --json FILE writes them all; it asserts nothing beyond exiting 1 when a check fails.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../tests/helpers/postgres.js';
import { deleteRedisPrefix, testRedisUrl, uniqueRedisPrefix } from '../tests/helpers/redis.js';
import { bullmqCeiling, postgresCeiling } from './bench-ceilings.js';
import { parseLayout, startInProcessEngine, startProcessEngine, type Engine, type ProcessLayout } from './bench-engines.js';
import {
  auditCheck,
  checkActions,
  measureApprovals,
  measureSealerLag,
  measureSolo,
  measureWholePath,
  prepareLoad,
  wholePathBatch,
  type ApprovalFigures,
  type Check,
  type Load,
  type SealerLag,
  type WholePathFigures,
} from './bench-load.js';
import { summariseProfileDir } from './bench-profile.js';
import { seedHistory, type SeedResult } from './bench-seed.js';
import {
  assertLoopback,
  change,
  latencyHeader,
  latencyRow,
  ms,
  num,
  once,
  pct,
  rate,
  type Defer,
  type Measurement,
  type Stats,
} from './bench-stats.js';

const ROOT = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
/** How long to wait for the sealer to cover the measured actions' entries. */
const SEALER_WAIT_MS = 10_000;
/** How long to wait for the sealer to seal the seeded backlog before the growth run. */
const BACKLOG_WAIT_MS = 240_000;

// ---------------------------------------------------------------------------------------------
// Arguments

interface Options {
  actions: number;
  warmUp: number;
  concurrency: number;
  workerConcurrency: number;
  approvals: number;
  solo: number;
  growth: boolean;
  seedActions: number;
  seedAudit: number;
  processes: boolean;
  layouts: ProcessLayout[];
  json: string | null;
  cpuProfile: string | null;
  timeLimitSeconds: number;
}

const FLAGS: Array<[string, string]> = [
  ['--actions N', 'actions in each measured whole-path run (default 500)'],
  ['--warm-up N', 'actions run through each engine before it is measured, so that V8 has compiled its hot code (default 3000)'],
  ['--concurrency C', 'requests in flight (default 20)'],
  ['--worker-concurrency W', 'jobs each worker runs at once, WORKER_CONCURRENCY (default 5)'],
  ['--approvals M', 'actions approved C in flight for approve → EXECUTING (default 200; 0 skips approvals)'],
  ['--solo K', 'actions run one at a time, and approvals one at a time (default 20)'],
  ['--growth', 'also run the whole path with history stored (see --seed-actions, --seed-audit) and compare'],
  ['--seed-actions N', 'completed actions stored for --growth (default 100000)'],
  ['--seed-audit N', 'audit entries stored for --growth (default 500000)'],
  ['--processes', 'also run against spawned engine processes (see --process-layouts)'],
  ['--process-layouts L', 'comma-separated: N = N `start` processes, S+W = S `serve` + W `worker` (default 1,1+1,2+2; implies --processes)'],
  ['--json FILE', 'write every figure as JSON to FILE'],
  ['--cpu-profile FILE', 'CPU profile of this process during the measured run to FILE; with --processes, of each spawned process to FILE.<layout>/'],
  ['--time-limit S', 'stop with an error after S seconds (default 300, +900 with --growth, +240 per process layout)'],
  ['--help', 'this list'],
];

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      actions: { type: 'string', default: '500' },
      'warm-up': { type: 'string', default: '3000' },
      concurrency: { type: 'string', default: '20' },
      'worker-concurrency': { type: 'string', default: '5' },
      approvals: { type: 'string', default: '200' },
      solo: { type: 'string', default: '20' },
      growth: { type: 'boolean', default: false },
      'seed-actions': { type: 'string', default: '100000' },
      'seed-audit': { type: 'string', default: '500000' },
      processes: { type: 'boolean', default: false },
      'process-layouts': { type: 'string' },
      json: { type: 'string' },
      'cpu-profile': { type: 'string' },
      'time-limit': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log('usage: npm run bench -- [flags]   (tsx scripts/bench.ts)\n');
    for (const [flag, text] of FLAGS) console.log(`  ${flag.padEnd(24)}${text}`);
    process.exit(0);
  }
  const int = (name: string, raw: string, min: number, max: number) => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
    return n;
  };
  const layouts = (values['process-layouts'] ?? '1,1+1,2+2').split(',').map(parseLayout);
  const growth = values.growth;
  // Naming layouts asks for them.
  const processes = values.processes || values['process-layouts'] !== undefined;
  return {
    actions: int('actions', values.actions, 1, 20_000),
    warmUp: int('warm-up', values['warm-up'], 0, 100_000),
    concurrency: int('concurrency', values.concurrency, 1, 200),
    // WORKER_CONCURRENCY's own bounds (src/config.ts).
    workerConcurrency: int('worker-concurrency', values['worker-concurrency'], 1, 100),
    approvals: int('approvals', values.approvals, 0, 20_000),
    solo: int('solo', values.solo, 1, 1000),
    growth,
    seedActions: int('seed-actions', values['seed-actions'], 1, 10_000_000),
    seedAudit: int('seed-audit', values['seed-audit'], 0, 50_000_000),
    processes,
    layouts,
    json: values.json ?? null,
    cpuProfile: values['cpu-profile'] ?? null,
    timeLimitSeconds: values['time-limit']
      ? int('time-limit', values['time-limit'], 10, 24 * 3600)
      : 300 + (growth ? 900 : 0) + (processes ? 240 * layouts.length : 0),
  };
}

/** Progress, on stderr (stdout carries the report). */
const progress = (text: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);

// ---------------------------------------------------------------------------------------------
// One engine, measured

interface SuiteResult {
  engine: string;
  processes: number;
  sealer: { running: boolean; note: string };
  wholePath: Omit<WholePathFigures, 'ids'>;
  solo: { measurement: Measurement; phases: Array<{ label: string; stats: Stats }> };
  approvals: Omit<ApprovalFigures, 'ids'> | null;
  checks: Check[];
  auditPerAction: Stats;
  auditEvents: Record<string, number>;
  sealerLag: SealerLag;
}

/** Warm-up, the measured whole path, one at a time, checks, the sealer's lag. */
async function measureEngine(
  engine: Engine,
  load: Load,
  db: TestDatabase,
  opts: Options,
  run: { label: string; verify: 'all' | 'measured'; approvals: boolean; cpuProfile: string | null },
  defer: Defer,
): Promise<SuiteResult> {
  progress(`${engine.label} ${run.label}: warm-up`);
  // A cold engine (V8 still compiling its hot code, pools, prepared statements) would make the
  // measured run look slower than the engine's steady state, and the growth comparison unfair.
  if (opts.warmUp > 0) await wholePathBatch(load, opts.warmUp, `${run.label} warm-up`);
  progress(`${engine.label} ${run.label}: whole path, ${opts.actions} actions, ${opts.concurrency} in flight`);
  const { ids, ...whole } = await measureWholePath(load, db, opts.actions, { label: run.label, cpuProfile: run.cpuProfile }, defer);
  progress(`${engine.label} ${run.label}: ${opts.solo} one at a time`);
  const solo = await measureSolo(load, opts.solo);
  let approvals: ApprovalFigures | null = null;
  if (run.approvals && opts.approvals > 0) {
    progress(`${engine.label} ${run.label}: ${opts.approvals} approvals ${opts.concurrency} in flight, ${opts.solo} one at a time`);
    approvals = await measureApprovals(load, opts.approvals, opts.solo);
  }
  progress(`${engine.label} ${run.label}: checks`);
  const measured = [...ids, ...solo.ids];
  const checked = await checkActions(engine.db, load.auto, measured);
  const checks = [...checked.checks];
  if (approvals) {
    const a = await checkActions(engine.db, load.approval, approvals.ids);
    checks.push(...a.checks.map((c) => ({ ...c, text: `approved: ${c.text}` })));
  }
  // After the approvals, so that the walk covers their chains and the admin chain of the rule too.
  checks.push(await auditCheck(engine.db, approvals ? [...measured, ...approvals.ids] : measured, run.verify));
  const sealerLag = await measureSealerLag(engine.db, ids, SEALER_WAIT_MS);
  const { ids: _approvalIds, ...approvalFigures } = approvals ?? { ids: [] };
  return {
    engine: engine.label,
    processes: engine.processes.length,
    sealer: engine.sealer,
    wholePath: whole,
    solo: { measurement: solo.measurement, phases: solo.phases },
    approvals: approvals ? (approvalFigures as Omit<ApprovalFigures, 'ids'>) : null,
    checks,
    auditPerAction: checked.auditPerAction,
    auditEvents: checked.auditEvents,
    sealerLag,
  };
}

// ---------------------------------------------------------------------------------------------
// Growth

interface GrowthResult {
  seed: SeedResult;
  /** How long the sealer took to seal the stored backlog; null when no sealer ran. */
  backlogSealSeconds: number | null;
  backlogNote: string;
  seeded: SuiteResult;
  throughputChange: number;
  p99Change: number;
  withinTarget: boolean;
}

/** Entries not yet covered by a checkpoint; null when the audit log has no checkpoints. */
async function unsealedEntries(db: TestDatabase): Promise<number | null> {
  const client = new pg.Client({ connectionString: db.url, application_name: 'bench-seed' });
  await client.connect();
  try {
    const { rows } = await client.query<{ t: string | null }>(`SELECT to_regclass('"AuditCheckpoint"')::text AS t`);
    if (!rows[0]?.t) return null;
    const { rows: counted } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "AuditEntry" e
        WHERE NOT EXISTS (SELECT 1 FROM "AuditCheckpoint") OR ("txid", "id") > (SELECT "lastTxid", "lastId" FROM "AuditCheckpoint" ORDER BY "id" DESC LIMIT 1)`,
    );
    return counted[0]!.n;
  } finally {
    await client.end();
  }
}

async function growth(engine: Engine, load: Load, db: TestDatabase, opts: Options, empty: SuiteResult, defer: Defer): Promise<GrowthResult> {
  const agent = await engine.db.principal.findFirstOrThrow({ where: { role: 'AGENT', space: { slug: 'bench' } }, select: { id: true, spaceId: true, userId: true } });
  progress(`growth: storing ${opts.seedActions} actions and ${opts.seedAudit} audit entries`);
  let last = 0;
  const seed = await seedHistory(db, { spaceId: agent.spaceId, userId: agent.userId!, principalId: agent.id }, { actions: opts.seedActions, auditEntries: opts.seedAudit }, (text) => {
    if (performance.now() - last < 5000) return;
    progress(text);
    last = performance.now();
  });
  progress(`growth: stored in ${seed.seconds.toFixed(1)} s, VACUUM (ANALYZE) ${seed.vacuumSeconds.toFixed(1)} s`);

  let backlogSealSeconds: number | null = null;
  let backlogNote: string;
  if (!engine.sealer.running) {
    backlogNote = `no sealer running (${engine.sealer.note}): the stored entries stay unsealed`;
  } else if ((await unsealedEntries(db)) === null) {
    backlogNote = 'no AuditCheckpoint table';
  } else {
    const t0 = performance.now();
    let left = (await unsealedEntries(db))!;
    progress(`growth: waiting for the sealer to seal ${left} entries`);
    while (left > 0 && performance.now() - t0 < BACKLOG_WAIT_MS) {
      await sleep(1000);
      left = (await unsealedEntries(db))!;
    }
    backlogSealSeconds = (performance.now() - t0) / 1000;
    backlogNote = left === 0 ? `sealed the stored backlog in ${backlogSealSeconds.toFixed(1)} s` : `${left} entries still unsealed after ${BACKLOG_WAIT_MS / 1000} s; measuring anyway`;
  }
  progress(`growth: ${backlogNote}`);
  const seeded = await measureEngine(engine, load, db, opts, { label: 'seeded', verify: 'measured', approvals: false, cpuProfile: null }, defer);
  const throughputChange = change(empty.wholePath.measurement.throughput, seeded.wholePath.measurement.throughput);
  const p99Change = change(empty.wholePath.measurement.latency.p99, seeded.wholePath.measurement.latency.p99);
  return { seed, backlogSealSeconds, backlogNote, seeded, throughputChange, p99Change, withinTarget: throughputChange >= -0.15 && p99Change <= 0.15 };
}

// ---------------------------------------------------------------------------------------------
// Machine

interface Machine {
  cores: number;
  cpuModel: string;
  node: string;
  postgres: string;
  redis: string;
  commit: string | null;
  /** Files changed against the commit (`git status --porcelain`), when any. */
  dirty: boolean | null;
  loadAverageAtStart: number[];
  loadAverageAtEnd?: number[];
}

async function describeMachine(db: TestDatabase): Promise<Machine> {
  const client = new pg.Client({ connectionString: db.url, application_name: 'bench' });
  await client.connect();
  const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v").finally(() => client.end());
  const redis = new Redis(testRedisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  let redisVersion = 'unknown';
  try {
    await redis.connect();
    redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown';
  } finally {
    redis.disconnect();
  }
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  const commit = git('rev-parse', 'HEAD') ?? process.env.BENCH_GIT_COMMIT ?? null;
  const status = git('status', '--porcelain', '--untracked-files=no');
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    postgres: rows[0]?.v ?? 'unknown',
    redis: redisVersion,
    commit,
    dirty: status === null ? null : status.length > 0,
    loadAverageAtStart: loadavg(),
  };
}

// ---------------------------------------------------------------------------------------------
// Report

interface Report {
  version: 1;
  startedAt: string;
  options: Omit<Options, 'layouts'> & { layouts: string[] };
  machine: Machine;
  ceilings: { postgres: Measurement; postgresSerialised: Measurement; bullmq: Measurement };
  /** The in-process run on the empty database. */
  main: SuiteResult;
  ratio: {
    /** Whole-path throughput / min(ceilings). */
    throughput: number;
    floor: 'BullMQ' | 'Postgres';
    /** Whole-path p50 / (BullMQ p50 + Postgres p50). */
    latencyP50: number;
  };
  /** The headline figures of issue #8, from `main`. */
  summary: {
    throughput: number;
    ratioOfCeiling: number;
    wholePathP50: number;
    wholePathP99: number;
    soloP50: number;
    /** One approval at a time (the system otherwise idle): the figure issue #8's target (≤ 5 ms p50) is about. */
    approveToExecutingSoloP50: number | null;
    approveToExecutingSoloP99: number | null;
    /** C approvals in flight: includes waiting behind the queue's backlog. */
    approveToExecutingLoadedP50: number | null;
    approveToExecutingLoadedP99: number | null;
    engineCpuMsPerAction: number;
    /**
     * CPU per action of the engine alone: its one `start` process (layout `1`), without the load
     * generator that the in-process figure includes; null when that layout did not run.
     */
    engineAloneCpuMsPerAction: number | null;
    statementsPerAction: number | null;
    walBytesPerAction: number;
    sealerLagP50: number | null;
    sealerLagP99: number | null;
  };
  growth: GrowthResult | null;
  processes: SuiteResult[] | null;
  /** With --cpu-profile and --processes: each spawned process's main thread, over its whole life. */
  profiles: Array<{ layout: string; role: string; pid: number; file: string; shares: Array<[string, number]> }>;
  ok: boolean;
}

const W = 46;

function printSuite(s: SuiteResult, title: string): void {
  const w = s.wholePath;
  console.log('');
  console.log(`${title} — engine: ${s.engine}${s.processes > 1 || s.engine !== 'in-process' ? ` (${s.processes} processes)` : ''}`);
  console.log(`${latencyHeader('', W)}${'throughput'.padStart(12)}`);
  for (const m of [w.measurement, s.solo.measurement]) console.log(`${latencyRow(m.label, m.latency, W)} ${rate(m.throughput)}`);
  console.log(`${latencyHeader('where the time goes (ms, per action)', W)}${'p50, one at a time'.padStart(20)}`);
  w.phases.forEach((p, i) => console.log(`${latencyRow(p.label, p.stats, W)}${ms(s.solo.phases[i]?.stats.p50 ?? NaN).padStart(20)}`));
  if (s.approvals) {
    const a = s.approvals;
    console.log(`${latencyHeader(`approvals (${a.loaded.count}, C in flight; ${a.solo.count} one at a time)`, W)}`);
    console.log(latencyRow('approveAction sent → EXECUTING event', a.loaded.toExecuting, W));
    console.log(latencyRow('approveAction sent → COMPLETED event', a.loaded.toCompleted, W));
    console.log(latencyRow('approveAction HTTP (send → response)', a.loaded.httpResponse, W));
    console.log(latencyRow('one at a time: sent → EXECUTING event', a.solo.toExecuting, W));
    console.log(latencyRow('one at a time: sent → COMPLETED event', a.solo.toCompleted, W));
    console.log(`  ${a.loaded.approvesPerSecond.toFixed(1)} approvals/s reached EXECUTING`);
  }
  const c = w.cpu;
  console.log(
    `cost per action: ${num(w.statementsPerAction)} SQL statements (engine connections), ${w.writeTxPerAction.toFixed(1)} write transactions and ` +
      `${(w.walBytesPerAction / 1024).toFixed(1)} kB WAL (server-wide counters)`,
  );
  console.log(
    `CPU per action: engine processes ${c.engineMsPerAction.toFixed(2)} ms${s.engine === 'in-process' ? ' (this process, load generator included)' : ''}` +
      ` (${pct(c.engineCores)} of one core), its PostgreSQL backends ${c.postgresMsPerAction.toFixed(2)} ms` +
      `${c.loadGeneratorMsPerAction === null ? '' : `, load generator ${c.loadGeneratorMsPerAction.toFixed(2)} ms`}, whole machine ${c.machineMsPerAction.toFixed(2)} ms (everything running on it)` +
      `${w.eventLoopUtilisation === null ? '' : `; event loop ${pct(w.eventLoopUtilisation)} busy`}`,
  );
  const waits = Object.entries(w.waits.meanByWait).sort((a, b) => b[1] - a[1]);
  console.log(
    `engine's PostgreSQL connections (${w.waits.samples} samples every ~${w.waits.everyMs} ms), mean number: ` +
      Object.entries(w.waits.meanByState)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v.toFixed(2)}`)
        .join(', '),
  );
  console.log(`  by wait event: ${waits.slice(0, 8).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
  console.log(
    `  waiting for a lock (wait_event_type Lock): mean ${num(w.waits.lockWaiting.mean, 2)}, max ${w.waits.lockWaiting.max}` +
      `${waits.some(([k, v]) => k.includes(' Lock:') && v >= 0.005) ? `: ${waits.filter(([k, v]) => k.includes(' Lock:') && v >= 0.005).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}` : ''}`,
  );
  console.log('    (idle in transaction / Client:ClientRead: PostgreSQL waits for the engine to send the next statement)');
  const lag = s.sealerLag;
  console.log(
    lag.state === 'measured'
      ? `audit sealer lag (entry written → covering checkpoint, ${lag.covered}/${lag.actions} actions' last entries, ${lag.checkpoints} checkpoints): ` +
          `p50 ${num(lag.lag.p50)} ms, p99 ${num(lag.lag.p99)} ms, max ${num(lag.lag.max)} ms`
      : `audit sealer lag: ${lag.note}${s.sealer.running ? '' : ` [${s.sealer.note}]`}`,
  );
  console.log(`checks:`);
  for (const check of s.checks) console.log(`  ${check.ok ? 'ok  ' : 'FAIL'} ${check.text}`);
  const a = s.auditPerAction;
  console.log(
    `  audit rows per action: ${a.min === a.max ? a.min : `min ${a.min}, p50 ${a.p50}, max ${a.max}`} (mean ${a.mean.toFixed(2)}): ` +
      Object.entries(s.auditEvents)
        .map(([k, v]) => `${k} ${v.toFixed(2).replace(/\.00$/, '')}`)
        .join(', '),
  );
  if (w.profile) {
    const shown = w.profile.slice(0, 16);
    console.log(`CPU profile of this process during the measured run (the --cpu-profile file; open it in Chrome DevTools), share of CPU samples:`);
    for (let i = 0; i < shown.length; i += 4) console.log(`  ${shown.slice(i, i + 4).map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`.padEnd(30)).join('')}`);
  }
}

function printReport(r: Report): void {
  const { ceilings, main } = r;
  console.log('');
  console.log(`${latencyHeader('', W)}${'throughput'.padStart(12)}   (latency ms; throughput = N / first start → last completion)`);
  for (const m of [main.wholePath.measurement, ceilings.bullmq, ceilings.postgres, ceilings.postgresSerialised, main.solo.measurement]) {
    console.log(`${latencyRow(m.label, m.latency, W)} ${rate(m.throughput)}`);
  }
  const floor = r.ratio.floor === 'BullMQ' ? ceilings.bullmq : ceilings.postgres;
  console.log('');
  console.log(
    `throughput ratio  whole path / min(ceilings) = ${main.wholePath.measurement.throughput.toFixed(1)} / ${floor.throughput.toFixed(1)} (${r.ratio.floor}) = ` +
      `${r.ratio.throughput.toFixed(3)}  (${(r.ratio.throughput * 100).toFixed(1)}% of the ceiling)`,
  );
  const both = ceilings.bullmq.latency.p50 + ceilings.postgres.latency.p50;
  console.log(
    `p50 latency ratio whole path / (BullMQ p50 + Postgres p50) = ${main.wholePath.measurement.latency.p50.toFixed(1)} / ${both.toFixed(1)} = ${r.ratio.latencyP50.toFixed(1)}×`,
  );
  printSuite(main, `whole path, empty database (N=${r.options.actions}, C=${r.options.concurrency}, worker concurrency ${r.options.workerConcurrency})`);

  if (r.growth) {
    const g = r.growth;
    printSuite(g.seeded, `whole path with ${g.seed.actions} actions and ${g.seed.auditEntries} audit entries stored`);
    console.log('');
    console.log(
      `growth: stored ${g.seed.actions} actions (+${g.seed.statusUpdates} status updates, ${g.seed.executions} executions, ${g.seed.receipts} receipts) and ` +
        `${g.seed.auditEntries} audit entries in ${g.seed.seconds.toFixed(1)} s, VACUUM (ANALYZE) ${g.seed.vacuumSeconds.toFixed(1)} s; ${g.backlogNote}`,
    );
    const e = main.wholePath.measurement;
    const s = g.seeded.wholePath.measurement;
    console.log(`${''.padEnd(28)}${'empty'.padStart(10)}${'stored'.padStart(10)}${'change'.padStart(10)}`);
    const row = (label: string, a: number, b: number, unit = '') =>
      console.log(`${label.padEnd(28)}${`${a.toFixed(1)}${unit}`.padStart(10)}${`${b.toFixed(1)}${unit}`.padStart(10)}${`${(change(a, b) * 100).toFixed(1)}%`.padStart(10)}`);
    row('throughput (actions/s)', e.throughput, s.throughput);
    row('p50 (ms)', e.latency.p50, s.latency.p50);
    row('p99 (ms)', e.latency.p99, s.latency.p99);
    row('one at a time p50 (ms)', main.solo.measurement.latency.p50, g.seeded.solo.measurement.latency.p50);
    row('engine CPU ms/action', main.wholePath.cpu.engineMsPerAction, g.seeded.wholePath.cpu.engineMsPerAction);
    row('PostgreSQL CPU ms/action', main.wholePath.cpu.postgresMsPerAction, g.seeded.wholePath.cpu.postgresMsPerAction);
    console.log(`  throughput and p99 within 15 % of the empty database: ${g.withinTarget ? 'yes' : 'no'}`);
  }

  if (r.processes) {
    console.log('');
    console.log(`separate engine processes (the same load; requests round-robin over the API processes; the subscriber on the first):`);
    const head = ['layout', 'actions/s', 'p50', 'p99', 'solo p50', 'appr→EXEC solo p50', 'C p50', 'C p99', 'CPU ms/act', 'PG CPU', 'load gen', 'stmts/act', 'checks'];
    const widths = [11, 10, 8, 8, 9, 19, 8, 8, 11, 8, 9, 10, 7];
    console.log(head.map((h, i) => (i === 0 ? h.padEnd(widths[i]!) : h.padStart(widths[i]!))).join(''));
    for (const s of [main, ...r.processes]) {
      const w = s.wholePath;
      const cells = [
        s.engine,
        w.measurement.throughput.toFixed(1),
        w.measurement.latency.p50.toFixed(1),
        w.measurement.latency.p99.toFixed(1),
        s.solo.measurement.latency.p50.toFixed(1),
        num(s.approvals?.solo.toExecuting.p50),
        num(s.approvals?.loaded.toExecuting.p50),
        num(s.approvals?.loaded.toExecuting.p99),
        w.cpu.engineMsPerAction.toFixed(2),
        w.cpu.postgresMsPerAction.toFixed(2),
        num(w.cpu.loadGeneratorMsPerAction, 2),
        num(w.statementsPerAction),
        s.checks.every((c) => c.ok) ? 'ok' : 'FAIL',
      ];
      console.log(cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(''));
    }
    console.log('  (in-process: CPU of this process, which also runs the load generator; the others: CPU of the spawned engine processes only)');
    for (const s of r.processes) {
      const failed = s.checks.filter((c) => !c.ok);
      if (failed.length) console.log(`  ${s.engine}: ${failed.map((c) => `FAIL ${c.text}`).join('; ')}`);
      if (s.sealerLag.state === 'measured') console.log(`  ${s.engine}: sealer lag p50 ${num(s.sealerLag.lag.p50)} ms, p99 ${num(s.sealerLag.lag.p99)} ms`);
    }
  }
  for (const p of r.profiles) {
    console.log(`CPU profile of the ${p.role} process (pid ${p.pid}) of ${p.layout}, whole life including start-up, share of CPU samples (${p.file}):`);
    const shown = p.shares.slice(0, 12);
    for (let i = 0; i < shown.length; i += 4) console.log(`  ${shown.slice(i, i + 4).map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`.padEnd(30)).join('')}`);
  }
  console.log('');
  const s = r.summary;
  console.log(
    `summary: ${s.throughput.toFixed(1)} actions/s = ${(s.ratioOfCeiling * 100).toFixed(1)}% of min(ceilings); p50 ${s.wholePathP50.toFixed(1)} ms, p99 ${s.wholePathP99.toFixed(1)} ms; ` +
      `one at a time p50 ${s.soloP50.toFixed(1)} ms; approve → EXECUTING one at a time p50 ${num(s.approveToExecutingSoloP50)} ms, p99 ${num(s.approveToExecutingSoloP99)} ms ` +
      `(${r.options.concurrency} in flight: p50 ${num(s.approveToExecutingLoadedP50)} ms, p99 ${num(s.approveToExecutingLoadedP99)} ms); ` +
      `${s.engineCpuMsPerAction.toFixed(2)} ms CPU per action in-process (load generator included)${s.engineAloneCpuMsPerAction === null ? '' : `, ${s.engineAloneCpuMsPerAction.toFixed(2)} ms in a \`start\` process alone`}; ` +
      `${num(s.statementsPerAction)} SQL statements per action; sealer lag p50 ${num(s.sealerLagP50)} ms, p99 ${num(s.sealerLagP99)} ms`,
  );
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(opts: Options, defer: Defer): Promise<boolean> {
  const startedAt = new Date().toISOString();
  assertLoopback('Redis', new URL(testRedisUrl).hostname);
  const prefix = uniqueRedisPrefix('bench');
  defer('Redis keys', () => deleteRedisPrefix(prefix));
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ae-bench-'));
  defer('data dir', () => rm(dataDir, { recursive: true, force: true }));
  const db = await createTestDatabase();
  defer('database', () => db.drop());
  assertLoopback('PostgreSQL', db.connection.host);
  const machine = await describeMachine(db);

  console.log(
    `action-engine bench  ${startedAt}  node ${process.version}  N=${opts.actions}  C=${opts.concurrency}  worker concurrency=${opts.workerConcurrency}  ` +
      `cpus=${machine.cores} (${machine.cpuModel})  PostgreSQL ${machine.postgres}  Redis ${machine.redis}  commit ${machine.commit?.slice(0, 12) ?? 'unknown'}${machine.dirty ? ' + changes' : ''}  ` +
      `load average ${machine.loadAverageAtStart.map((v) => v.toFixed(2)).join(' ')}`,
  );
  console.log(`  PostgreSQL ${db.connection.host}:${db.connection.port}/${db.connection.database}  Redis ${new URL(testRedisUrl).host} prefix ${prefix}`);

  progress('ceilings: PostgreSQL commits');
  const pgCeiling = await postgresCeiling(db, opts.actions, opts.concurrency, { serialised: false }, defer);
  const pgSerial = await postgresCeiling(db, opts.actions, opts.concurrency, { serialised: true }, defer);
  progress('ceilings: BullMQ');
  const bull = await bullmqCeiling(prefix, opts.actions, opts.concurrency, opts.workerConcurrency, defer);

  progress('starting the engine in this process');
  const settings = { db, redisUrl: testRedisUrl, redisPrefix: prefix, dataDir, workerConcurrency: opts.workerConcurrency };
  const engine = await startInProcessEngine(settings);
  const closeEngine = once(engine.close);
  defer('in-process engine', closeEngine);
  const load = await prepareLoad(engine, opts.concurrency, defer);
  const mainRun = await measureEngine(engine, load, db, opts, { label: 'empty', verify: 'all', approvals: true, cpuProfile: opts.cpuProfile }, defer);
  const grown = opts.growth ? await growth(engine, load, db, opts, mainRun, defer) : null;
  await load.close();
  await closeEngine();

  const processRuns: SuiteResult[] = [];
  const profiles: Report['profiles'] = [];
  if (opts.processes) {
    for (const layout of opts.layouts) {
      progress(`processes ${layout.label}: starting`);
      const lprefix = uniqueRedisPrefix('bench');
      defer(`Redis keys (${layout.label})`, () => deleteRedisPrefix(lprefix));
      const ldb = await createTestDatabase();
      defer(`database (${layout.label})`, () => ldb.drop());
      const ldir = await mkdtemp(path.join(tmpdir(), 'ae-bench-'));
      defer(`data dir (${layout.label})`, () => rm(ldir, { recursive: true, force: true }));
      const profileDir = opts.cpuProfile ? `${opts.cpuProfile}.${layout.label.replace(/\W+/g, '_')}` : undefined;
      const pengine = await startProcessEngine({ ...settings, db: ldb, redisPrefix: lprefix, dataDir: ldir }, layout, { profileDir });
      const closeProcesses = once(pengine.close);
      defer(`engine processes (${layout.label})`, closeProcesses);
      const pload = await prepareLoad(pengine, opts.concurrency, defer);
      processRuns.push(await measureEngine(pengine, pload, ldb, opts, { label: 'processes', verify: 'all', approvals: true, cpuProfile: null }, defer));
      await pload.close();
      await closeProcesses();
      if (profileDir) {
        for (const p of await summariseProfileDir(profileDir)) {
          profiles.push({ layout: layout.label, role: pengine.processes.find((x) => x.pid === p.pid)?.role ?? '?', ...p });
        }
      }
    }
  }

  const floor = bull.throughput <= pgCeiling.throughput ? 'BullMQ' : 'Postgres';
  const floorThroughput = Math.min(bull.throughput, pgCeiling.throughput);
  const w = mainRun.wholePath;
  const lag = mainRun.sealerLag.state === 'measured' ? mainRun.sealerLag.lag : null;
  machine.loadAverageAtEnd = loadavg();
  const { layouts, ...rest } = opts;
  const report: Report = {
    version: 1,
    startedAt,
    options: { ...rest, layouts: layouts.map((l) => l.label) },
    machine,
    ceilings: { postgres: pgCeiling, postgresSerialised: pgSerial, bullmq: bull },
    main: mainRun,
    ratio: {
      throughput: w.measurement.throughput / floorThroughput,
      floor,
      latencyP50: w.measurement.latency.p50 / (bull.latency.p50 + pgCeiling.latency.p50),
    },
    summary: {
      throughput: w.measurement.throughput,
      ratioOfCeiling: w.measurement.throughput / floorThroughput,
      wholePathP50: w.measurement.latency.p50,
      wholePathP99: w.measurement.latency.p99,
      soloP50: mainRun.solo.measurement.latency.p50,
      approveToExecutingSoloP50: mainRun.approvals?.solo.toExecuting.p50 ?? null,
      approveToExecutingSoloP99: mainRun.approvals?.solo.toExecuting.p99 ?? null,
      approveToExecutingLoadedP50: mainRun.approvals?.loaded.toExecuting.p50 ?? null,
      approveToExecutingLoadedP99: mainRun.approvals?.loaded.toExecuting.p99 ?? null,
      engineCpuMsPerAction: w.cpu.engineMsPerAction,
      engineAloneCpuMsPerAction: processRuns.find((run) => run.engine === parseLayout('1').label)?.wholePath.cpu.engineMsPerAction ?? null,
      statementsPerAction: w.statementsPerAction,
      walBytesPerAction: w.walBytesPerAction,
      sealerLagP50: lag?.p50 ?? null,
      sealerLagP99: lag?.p99 ?? null,
    },
    growth: grown,
    processes: opts.processes ? processRuns : null,
    profiles,
    ok: [mainRun, ...(grown ? [grown.seeded] : []), ...processRuns].every((s) => s.checks.every((c) => c.ok)),
  };
  printReport(report);
  if (opts.json) {
    await writeFile(opts.json, `${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
    console.log(`figures written to ${opts.json}`);
  }
  return report.ok;
}

let opts: Options;
try {
  opts = parseOptions();
} catch (error) {
  // A mistyped flag: one line, not a stack.
  console.error(`bench: ${error instanceof Error ? error.message : String(error)} (--help lists the flags)`);
  process.exit(2);
}
const cleanups: Array<{ label: string; fn: () => Promise<unknown> | unknown }> = [];
let timer: NodeJS.Timeout | undefined;
let ok = false;
/** A time-out or an interrupt: said in one line, without a stack. */
class Stop extends Error {}
try {
  const timeLimit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Stop(`time limit: the benchmark did not finish in ${opts.timeLimitSeconds} s`)), opts.timeLimitSeconds * 1000);
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
        sleep(20_000, undefined, { ref: false }).then(() => {
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
