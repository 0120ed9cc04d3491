/**
 * The load generator and what it measures on an engine (in this process or spawned):
 *
 * - whole path: `createAction(type: "noop")` over HTTP, C in flight, until a graphql-ws
 *   subscriber on `actionEvents` receives COMPLETED; with the CPU, SQL statements, write
 *   transactions and WAL it cost, and a sample of what the engine's PostgreSQL connections
 *   were waiting for;
 * - one at a time: the same, each action sent once the previous one completed;
 * - approve → EXECUTING: `noop` actions in a second space whose safety rule requires approval,
 *   approved by the user's APPROVER key with `approveAction`; from sending the mutation to the
 *   subscriber receiving EXECUTING (and COMPLETED), C in flight and one at a time;
 * - checks from the database, and the audit sealer's lag (when checkpoints are written).
 */
import { Agent, request as httpRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFile } from 'node:fs/promises';
import { createClient, type Client } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import { createApiKey } from '../src/engine/api-keys.js';
import * as audit from '../src/engine/audit.js';
import type { PrismaClient } from '../src/generated/prisma/client.js';
import type { TestDatabase } from '../tests/helpers/postgres.js';
import { machineCpuMs, processCpuMs, type Engine } from './bench-engines.js';
import { startProfiler, summariseProfile } from './bench-profile.js';
import { once, pool, stats, type Defer, type Measurement, type Stats } from './bench-stats.js';

/** How often the engine's connections are sampled in pg_stat_activity during the measured run. */
const SAMPLE_EVERY_MS = 10;
/** Longest wait for the actions of a batch to reach a status after the last was sent. */
const SETTLE_TIMEOUT_MS = 60_000;

const CREATE_ACTION = `mutation($i: CreateActionInput!) {
  createAction(input: $i) { action { id status } errors { code message } }
}`;
const APPROVE_ACTION = `mutation($id: ID!) { approveAction(id: $id) { action { id status } errors { code message } } }`;
const UPSERT_RULE = `mutation($i: SafetyRuleInput!) { upsertSafetyRule(input: $i) { rule { id } errors { code message } } }`;
const ACTION_EVENTS = 'subscription { actionEvents(filter: {type: ["noop"]}) { actionId status seq } }';

/** The moments one action was seen at, in `performance.now()` ms. */
export interface ActionTrace {
  sent?: number;
  responded?: number;
  approveSent?: number;
  approveResponded?: number;
  /** First time each status was received. */
  events: Partial<Record<string, number>>;
  /** Statuses in the order received, repeats folded. */
  statuses: string[];
}

/** Status events of one subscriber, by action. */
class Tracker {
  readonly traces = new Map<string, ActionTrace>();
  private readonly waiters = new Map<string, Array<() => void>>();
  private reject: (error: Error) => void = () => {};
  /** Rejects when the subscription fails; never resolves. */
  readonly failed: Promise<never> = new Promise<never>((_, reject) => {
    this.reject = reject;
  });

  constructor() {
    this.failed.catch(() => undefined);
  }

  trace(id: string): ActionTrace {
    let t = this.traces.get(id);
    if (!t) this.traces.set(id, (t = { events: {}, statuses: [] }));
    return t;
  }

  record(id: string, status: string, at: number): void {
    const t = this.trace(id);
    if (t.statuses.at(-1) !== status) t.statuses.push(status);
    t.events[status] ??= at;
    const key = `${id}:${status}`;
    for (const resolve of this.waiters.get(key) ?? []) resolve();
    this.waiters.delete(key);
  }

  /** Resolves once `status` has been received for `id`. */
  wait(id: string, status: string): Promise<void> {
    if (this.traces.get(id)?.events[status] !== undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const key = `${id}:${status}`;
      this.waiters.set(key, [...(this.waiters.get(key) ?? []), resolve]);
    });
  }

  fail(error: Error): void {
    this.reject(error);
  }
}

/** The keys and live subscriptions a load needs on one engine. */
export interface Load {
  engine: Engine;
  concurrency: number;
  /** `bench` space: noop actions are auto-approved. */
  auto: Tracker;
  /** `bench-approval` space: noop actions need approval. */
  approval: Tracker;
  create(space: 'auto' | 'approval', note: string): Promise<string>;
  approve(id: string): Promise<void>;
  /** Resolves when every id has reached `status`; fails after {@link SETTLE_TIMEOUT_MS} saying which have not. */
  settle(tracker: Tracker, ids: readonly string[], status: string): Promise<void>;
  /** Closes the subscriptions (before the engine goes away). */
  close(): Promise<void>;
}

/**
 * Creates the keys (an agent in space `bench`; an agent, its user's approver and an admin in
 * space `bench-approval`), the REQUIRES_APPROVAL rule for `noop` in `bench-approval` (through
 * `upsertSafetyRule`, as an admin would), and a subscriber per space on the first API process;
 * waits until events of both spaces arrive.
 */
export async function prepareLoad(engine: Engine, concurrency: number, defer: Defer): Promise<Load> {
  const agent = await createApiKey(engine.db, { role: 'AGENT', space: 'bench', user: 'bench-agent' });
  const approvalAgent = await createApiKey(engine.db, { role: 'AGENT', space: 'bench-approval', user: 'bench-user' });
  const approver = await createApiKey(engine.db, { role: 'APPROVER', space: 'bench-approval', user: 'bench-user' });
  const admin = await createApiKey(engine.db, { role: 'ADMIN', space: 'bench-approval' });

  let next = 0;
  // node:http with kept-alive sockets, not fetch: undici's fetch spends ~1 ms of this process's CPU
  // per request building streams before a byte is sent, which the in-process figures would count
  // as the engine's and every latency would include.
  const agentPool = new Agent({ keepAlive: true, maxSockets: concurrency * 2 });
  defer('HTTP agent', async () => agentPool.destroy());
  const gql = <T>(key: string, query: string, variables: Record<string, unknown>): Promise<{ res: { status: number }; body: { data?: T; errors?: unknown[] } }> => {
    const url = new URL(engine.graphqlUrls[next++ % engine.graphqlUrls.length]!);
    const payload = Buffer.from(JSON.stringify({ query, variables }));
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          agent: agentPool,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': payload.length, authorization: `Bearer ${key}` },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            try {
              resolve({ res: { status: res.statusCode ?? 0 }, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data?: T; errors?: unknown[] } });
            } catch (error) {
              reject(new Error(`HTTP ${res.statusCode}: not JSON (${(error as Error).message})`));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  };

  const rule = await gql<{ upsertSafetyRule: { rule: { id: string } | null; errors: unknown[] } }>(admin.key, UPSERT_RULE, {
    i: { actionType: 'noop', kind: 'REQUIRES_APPROVAL', description: 'bench: approve → EXECUTING' },
  });
  if (!rule.body.data?.upsertSafetyRule.rule) throw new Error(`upsertSafetyRule failed: ${JSON.stringify(rule.body.errors ?? rule.body.data)}`);

  const disposers: Array<() => Promise<void>> = [];
  const subscribe = async (key: string, label: string): Promise<Tracker> => {
    const tracker = new Tracker();
    const client: Client = createClient({
      url: engine.graphqlUrls[0]!.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: false,
      // Its default prints the close event to the console; failures reach the sink's error below.
      onNonLazyError: () => undefined,
      connectionParams: { authorization: `Bearer ${key}` },
    });
    const dispose = once(async () => client.dispose());
    disposers.push(dispose);
    defer(`graphql-ws client (${label})`, dispose);
    const connected = new Promise<void>((resolve) => client.on('connected', () => resolve()));
    client.subscribe<{ actionEvents: { actionId: string; status: string; seq: number } }>(
      { query: ACTION_EVENTS },
      {
        next: ({ data, errors }) => {
          if (errors?.length) tracker.fail(new Error(`subscription error (${label}): ${JSON.stringify(errors)}`));
          if (data) tracker.record(data.actionEvents.actionId, data.actionEvents.status, performance.now());
        },
        error: (error) => tracker.fail(error instanceof Error ? error : new Error(`subscription (${label}) failed: ${JSON.stringify(error)}`)),
        complete: () => tracker.fail(new Error(`the subscription (${label}) ended early`)),
      },
    );
    await Promise.race([connected, tracker.failed]);
    return tracker;
  };
  const auto = await subscribe(agent.key, 'bench');
  const approval = await subscribe(approver.key, 'bench-approval');

  const load: Load = {
    engine,
    concurrency,
    auto,
    approval,
    close: async () => {
      await Promise.all(disposers.map((d) => d()));
    },
    async create(space, note) {
      const tracker = space === 'auto' ? auto : approval;
      const sent = performance.now();
      const { res, body } = await gql<{ createAction: { action: { id: string; status: string } | null; errors: Array<{ code: string; message: string }> } }>(
        space === 'auto' ? agent.key : approvalAgent.key,
        CREATE_ACTION,
        { i: { type: 'noop', payload: { note } } },
      );
      const responded = performance.now();
      const out = body.data?.createAction;
      if (res.status !== 200 || body.errors?.length || !out?.action || out.errors.length) {
        throw new Error(`createAction failed (HTTP ${res.status}): ${JSON.stringify(body.errors ?? out?.errors ?? body)}`);
      }
      const expected = space === 'auto' ? 'APPROVED' : 'PENDING';
      if (out.action.status !== expected) {
        throw new Error(`noop action ${out.action.id} in ${space === 'auto' ? 'bench' : 'bench-approval'} is ${out.action.status}, not ${expected} (safety rules?)`);
      }
      const trace = tracker.trace(out.action.id);
      trace.sent = sent;
      trace.responded = responded;
      return out.action.id;
    },
    async approve(id) {
      const trace = approval.trace(id);
      trace.approveSent = performance.now();
      const { res, body } = await gql<{ approveAction: { action: { id: string; status: string } | null; errors: Array<{ code: string; message: string }> } }>(
        approver.key,
        APPROVE_ACTION,
        { id },
      );
      trace.approveResponded = performance.now();
      const out = body.data?.approveAction;
      if (res.status !== 200 || body.errors?.length || !out?.action || out.errors.length) {
        throw new Error(`approveAction failed (HTTP ${res.status}): ${JSON.stringify(body.errors ?? out?.errors ?? body)}`);
      }
    },
    async settle(tracker, ids, status) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const missing = ids.filter((id) => tracker.traces.get(id)?.events[status] === undefined);
          const seen = new Map<string, number>();
          for (const id of missing) {
            const last = tracker.traces.get(id)?.statuses.at(-1) ?? 'no event';
            seen.set(last, (seen.get(last) ?? 0) + 1);
          }
          reject(
            new Error(
              `${missing.length} of ${ids.length} actions not seen ${status} within ${SETTLE_TIMEOUT_MS / 1000} s (last status seen: ${[...seen].map(([k, v]) => `${k} ${v}`).join(', ')})`,
            ),
          );
        }, SETTLE_TIMEOUT_MS);
      });
      try {
        await Promise.race([Promise.all(ids.map((id) => tracker.wait(id, status))), tracker.failed, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };

  // The server subscribes to Redis a moment after the socket connects: wait until an action's
  // events arrive in both spaces before counting on the streams.
  for (const [space, tracker, status] of [
    ['auto', auto, 'COMPLETED'],
    ['approval', approval, 'PENDING'],
  ] as const) {
    for (let round = 0; ; round++) {
      if (round === 40) throw new Error(`the subscriber saw no ${status} event of a noop action in space ${space} in 20 s`);
      const id = await load.create(space, `sentinel ${round}`);
      for (let i = 0; i < 10 && tracker.traces.get(id)?.events[status] === undefined; i++) await sleep(50);
      if (tracker.traces.get(id)?.events[status] !== undefined) break;
    }
  }
  return load;
}

/** Creates `n` auto-approved actions, C in flight; resolves when every one has been seen COMPLETED. */
export async function wholePathBatch(load: Load, n: number, label: string): Promise<{ ids: string[]; started: number; ended: number }> {
  const ids: string[] = [];
  const started = performance.now();
  await Promise.race([
    pool(n, load.concurrency, async (i) => {
      ids.push(await load.create('auto', `${label} ${i}`));
    }),
    load.auto.failed,
  ]);
  await load.settle(load.auto, ids, 'COMPLETED');
  const ended = ids.reduce((last, id) => Math.max(last, load.auto.traces.get(id)!.events.COMPLETED!), 0);
  return { ids, started, ended };
}

// ---------------------------------------------------------------------------------------------
// The measured whole path

/** What the engine's PostgreSQL connections were doing, from pg_stat_activity samples. */
export interface WaitSummary {
  samples: number;
  everyMs: number;
  /** Mean connections per state, e.g. `active`, `idle in transaction`, `idle`. */
  meanByState: Record<string, number>;
  /** Mean connections per state and wait event, e.g. `active / Lock:transactionid`, `active / (running)`. */
  meanByWait: Record<string, number>;
  /** Connections waiting for a heavyweight lock (wait_event_type Lock): mean and most at once. */
  lockWaiting: { mean: number; max: number };
}

/** CPU time per action, in ms. */
export interface CpuFigures {
  /** The engine's processes (in-process: this process, load generator included). */
  engineMsPerAction: number;
  /** Share of one core the engine's processes used during the run. */
  engineCores: number;
  /** The PostgreSQL backends of the engine's connections (/proc of their pids). */
  postgresMsPerAction: number;
  /** The load generator alone (only when the engine runs in other processes). */
  loadGeneratorMsPerAction: number | null;
  /** Every process on the machine, other benchmarks and tests included. */
  machineMsPerAction: number;
}

export interface WholePathFigures {
  measurement: Measurement;
  /** The path split by the status events the subscriber sees. */
  phases: Array<{ label: string; stats: Stats }>;
  cpu: CpuFigures;
  /** Statements sent on the engine's connections (BEGIN/COMMIT included), per action; null when not countable. */
  statementsPerAction: number | null;
  /** Server-wide: transactions that were given an xid (wrote), per action. */
  writeTxPerAction: number;
  /** Server-wide WAL bytes per action. */
  walBytesPerAction: number;
  /** In-process only: this process's event-loop utilisation. */
  eventLoopUtilisation: number | null;
  waits: WaitSummary;
  /** Share of this process's CPU samples by package (with --cpu-profile, in-process). */
  profile: Array<[string, number]> | null;
  ids: string[];
}

const PHASES: Array<[string, string, string]> = [
  ['HTTP createAction (send → response)', 'sent', 'responded'],
  ['send → APPROVED event', 'sent', 'APPROVED'],
  ['APPROVED → EXECUTING event', 'APPROVED', 'EXECUTING'],
  ['EXECUTING → COMPLETED event', 'EXECUTING', 'COMPLETED'],
  ['send → COMPLETED event (whole)', 'sent', 'COMPLETED'],
];

function at(t: ActionTrace, point: string): number {
  if (point === 'sent') return t.sent ?? NaN;
  if (point === 'responded') return t.responded ?? NaN;
  if (point === 'approveSent') return t.approveSent ?? NaN;
  if (point === 'approveResponded') return t.approveResponded ?? NaN;
  return t.events[point] ?? NaN;
}

function phaseStats(traces: ActionTrace[], phases = PHASES): Array<{ label: string; stats: Stats }> {
  return phases.map(([label, a, b]) => ({ label, stats: stats(traces.map((t) => at(t, b) - at(t, a))) }));
}

/**
 * The measured whole-path run: `n` actions, C in flight, with CPU, statements, WAL and a
 * pg_stat_activity sample of the engine's connections taken on the side.
 */
export async function measureWholePath(
  load: Load,
  db: TestDatabase,
  n: number,
  options: { label: string; cpuProfile?: string | null },
  defer: Defer,
): Promise<WholePathFigures> {
  const { engine } = load;
  const sampler = new pg.Client({ connectionString: db.url, application_name: 'bench-sampler' });
  sampler.on('error', () => undefined);
  await sampler.connect();
  defer('sampler', () => sampler.end());

  const waitRows: Array<Array<{ state: string; wait: string | null; lock: boolean; n: number }>> = [];
  let sampling = true;
  const sampleQuery = `
    SELECT coalesce(state, 'unknown') AS state, wait_event_type || ':' || wait_event AS wait,
           coalesce(wait_event_type = 'Lock', false) AS lock, count(*)::int AS n
      FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'action-engine'
     GROUP BY 1, 2, 3`;
  // Write transactions (xids) and WAL bytes, server-wide: without other activity on the server, the engine's.
  const writes = async () => {
    const { rows } = await sampler.query<{ xid: string; lsn: string }>("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid, pg_current_wal_lsn()::text AS lsn");
    return rows[0]!;
  };
  const backendCpu = async () => {
    const { rows } = await sampler.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'action-engine'",
    );
    return new Map(await Promise.all(rows.map(async (r) => [r.pid, await processCpuMs(r.pid)] as const)));
  };

  const writesBefore = await writes();
  const backends0 = await backendCpu();
  // Never rejects: a failed sample (e.g. the sampler closed by an interrupted run) ends sampling.
  const sampled = (async () => {
    try {
      while (sampling) {
        const { rows } = await sampler.query<{ state: string; wait: string | null; lock: boolean; n: number }>(sampleQuery);
        waitRows.push(rows);
        await sleep(SAMPLE_EVERY_MS);
      }
    } catch {
      sampling = false;
    }
  })();

  const stopProfiler = options.cpuProfile && engine.app ? await startProfiler() : null;
  const statements0 = await engine.statements();
  const elu0 = performance.eventLoopUtilization();
  const engineCpu0 = await engine.cpuMs();
  const ownCpu0 = process.cpuUsage();
  const machine0 = await machineCpuMs();
  const t0 = performance.now();
  let measured;
  try {
    measured = await wholePathBatch(load, n, options.label);
  } finally {
    sampling = false;
    await sampled;
  }
  const wall = performance.now() - t0;
  const engineCpu = (await engine.cpuMs()) - engineCpu0;
  const ownCpu = process.cpuUsage(ownCpu0);
  const machine1 = await machineCpuMs();
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const statements1 = await engine.statements();
  const profile = stopProfiler ? await stopProfiler() : null;
  if (profile && options.cpuProfile) await writeFile(options.cpuProfile, JSON.stringify(profile));
  const backends1 = await backendCpu();
  let postgresCpu = 0;
  for (const [pid, ms] of backends1) postgresCpu += ms - (backends0.get(pid) ?? 0);
  const writesAfter = await writes();
  const { rows: walRows } = await sampler.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($1, $2)::text AS bytes', [writesAfter.lsn, writesBefore.lsn]);

  const { ids, started, ended } = measured;
  const traces = ids.map((id) => load.auto.traces.get(id)!);
  const seconds = (ended - started) / 1000;

  const meanByState: Record<string, number> = {};
  const meanByWait: Record<string, number> = {};
  let lockSum = 0;
  let lockMax = 0;
  for (const rows of waitRows) {
    let locks = 0;
    for (const r of rows) {
      meanByState[r.state] = (meanByState[r.state] ?? 0) + r.n / waitRows.length;
      const key = `${r.state} / ${r.wait ?? '(running)'}`;
      meanByWait[key] = (meanByWait[key] ?? 0) + r.n / waitRows.length;
      if (r.lock) locks += r.n;
    }
    lockSum += locks;
    lockMax = Math.max(lockMax, locks);
  }

  return {
    measurement: { label: `whole path: createAction → COMPLETED event`, throughput: ids.length / seconds, seconds, latency: stats(traces.map((t) => at(t, 'COMPLETED') - at(t, 'sent'))) },
    phases: phaseStats(traces),
    cpu: {
      engineMsPerAction: engineCpu / n,
      engineCores: engineCpu / wall,
      postgresMsPerAction: postgresCpu / n,
      loadGeneratorMsPerAction: engine.app ? null : (ownCpu.user + ownCpu.system) / 1000 / n,
      machineMsPerAction: (machine1.busy - machine0.busy) / n,
    },
    statementsPerAction: statements0 === null || statements1 === null ? null : (statements1 - statements0) / n,
    writeTxPerAction: (Number(writesAfter.xid) - Number(writesBefore.xid)) / n,
    walBytesPerAction: Number(walRows[0]?.bytes ?? NaN) / n,
    eventLoopUtilisation: engine.app ? elu : null,
    waits: { samples: waitRows.length, everyMs: SAMPLE_EVERY_MS, meanByState, meanByWait, lockWaiting: { mean: waitRows.length ? lockSum / waitRows.length : NaN, max: lockMax } },
    profile: profile ? summariseProfile(profile) : null,
    ids,
  };
}

/** `k` actions, each sent once the previous one has completed: the unloaded latency. */
export async function measureSolo(load: Load, k: number): Promise<{ measurement: Measurement; phases: Array<{ label: string; stats: Stats }>; ids: string[] }> {
  const ids: string[] = [];
  const started = performance.now();
  for (let i = 0; i < k; i++) {
    const id = await load.create('auto', `solo ${i}`);
    ids.push(id);
    await load.settle(load.auto, [id], 'COMPLETED');
  }
  const traces = ids.map((id) => load.auto.traces.get(id)!);
  const ended = traces.at(-1)!.events.COMPLETED!;
  return {
    measurement: {
      label: `ref: whole path, one at a time (${k} more)`,
      throughput: k / ((ended - started) / 1000),
      seconds: (ended - started) / 1000,
      latency: stats(traces.map((t) => at(t, 'COMPLETED') - at(t, 'sent'))),
    },
    phases: phaseStats(traces),
    ids,
  };
}

// ---------------------------------------------------------------------------------------------
// Approvals

export interface ApprovalFigures {
  /** Approvals sent C in flight. */
  loaded: { count: number; approvesPerSecond: number; toExecuting: Stats; toCompleted: Stats; httpResponse: Stats };
  /** Approvals sent one at a time, each once the previous action completed. */
  solo: { count: number; toExecuting: Stats; toCompleted: Stats; httpResponse: Stats };
  ids: string[];
}

/**
 * Approve → EXECUTING at the subscriber. `m` pending actions are created first (C in flight,
 * not measured), then approved C in flight; then `k` more created and approved one at a time.
 */
export async function measureApprovals(load: Load, m: number, k: number): Promise<ApprovalFigures> {
  const tracker = load.approval;
  const createPending = async (count: number, label: string) => {
    const ids: string[] = [];
    await Promise.race([
      pool(count, load.concurrency, async (i) => {
        ids.push(await load.create('approval', `${label} ${i}`));
      }),
      tracker.failed,
    ]);
    await load.settle(tracker, ids, 'PENDING');
    return ids;
  };
  const figures = (ids: string[]) => {
    const traces = ids.map((id) => tracker.traces.get(id)!);
    return {
      toExecuting: stats(traces.map((t) => at(t, 'EXECUTING') - at(t, 'approveSent'))),
      toCompleted: stats(traces.map((t) => at(t, 'COMPLETED') - at(t, 'approveSent'))),
      httpResponse: stats(traces.map((t) => at(t, 'approveResponded') - at(t, 'approveSent'))),
    };
  };

  const loadedIds = await createPending(m, 'approval');
  const started = performance.now();
  await Promise.race([pool(loadedIds.length, load.concurrency, (i) => load.approve(loadedIds[i]!)), tracker.failed]);
  await load.settle(tracker, loadedIds, 'COMPLETED');
  const ended = Math.max(...loadedIds.map((id) => tracker.traces.get(id)!.events.EXECUTING ?? NaN).filter(Number.isFinite));
  const loaded = { count: loadedIds.length, approvesPerSecond: loadedIds.length / ((ended - started) / 1000), ...figures(loadedIds) };

  const soloIds = await createPending(k, 'approval solo');
  for (const id of soloIds) {
    await load.approve(id);
    await load.settle(tracker, [id], 'COMPLETED');
  }
  return { loaded, solo: { count: soloIds.length, ...figures(soloIds) }, ids: [...loadedIds, ...soloIds] };
}

// ---------------------------------------------------------------------------------------------
// Checks

export interface Check {
  ok: boolean;
  text: string;
}

export interface CheckResult {
  checks: Check[];
  auditPerAction: Stats;
  /** Audit entries per action, by event. */
  auditEvents: Record<string, number>;
}

/**
 * From the database: every action COMPLETED with one execution and one receipt, and the
 * subscriber saw APPROVED → EXECUTING → COMPLETED; audit rows per action.
 */
export async function checkActions(db: PrismaClient, tracker: Tracker, ids: string[]): Promise<CheckResult> {
  const [byStatus, executions, receipts, auditRows, auditByEvent] = await Promise.all([
    db.action.groupBy({ by: ['status'], where: { id: { in: ids } }, _count: true }),
    db.execution.groupBy({ by: ['actionId'], where: { actionId: { in: ids } }, _count: true }),
    db.receipt.groupBy({ by: ['actionId'], where: { actionId: { in: ids } }, _count: true }),
    db.auditEntry.groupBy({ by: ['actionId'], where: { actionId: { in: ids } }, _count: true }),
    db.auditEntry.groupBy({ by: ['event'], where: { actionId: { in: ids } }, _count: true }),
  ]);
  const completed = byStatus.find((s) => s.status === 'COMPLETED')?._count ?? 0;
  const oneEach = (rows: Array<{ _count: number }>) => rows.length === ids.length && rows.every((r) => r._count === 1);
  const auditCounts = ids.map((id) => auditRows.find((a) => a.actionId === id)?._count ?? 0);
  const sequenceOk = ids.filter((id) => tracker.traces.get(id)?.statuses.join('>').endsWith('APPROVED>EXECUTING>COMPLETED')).length;
  return {
    checks: [
      { ok: completed === ids.length, text: `${completed}/${ids.length} actions COMPLETED${completed === ids.length ? '' : ` (${byStatus.map((s) => `${s.status} ${s._count}`).join(', ')})`}` },
      { ok: oneEach(executions), text: `exactly 1 execution each: ${oneEach(executions) ? 'yes' : `no (${executions.length} actions have executions)`}` },
      { ok: oneEach(receipts), text: `exactly 1 receipt each: ${oneEach(receipts) ? 'yes' : `no (${receipts.length} actions have receipts)`}` },
      { ok: sequenceOk === ids.length, text: `subscriber saw APPROVED → EXECUTING → COMPLETED for ${sequenceOk}/${ids.length}` },
    ],
    auditPerAction: stats(auditCounts),
    auditEvents: Object.fromEntries(auditByEvent.map((e) => [e.event, e._count / ids.length])),
  };
}

/**
 * The audit check. `all`: the engine's `verifyAuditChain` over every chain. `measured`: only the
 * chains of `ids` (per-chain audit; with made-up stored entries the full walk would stop at
 * them); before per-chain audit there is one global chain, which is then not verified.
 */
export async function auditCheck(db: PrismaClient, ids: string[], scope: 'all' | 'measured'): Promise<Check> {
  if (scope === 'all') {
    const chain = await audit.verifyAuditChain(db);
    return { ok: chain.ok, text: `audit verifies (every chain): ${chain.ok ? `yes (${chain.checked} entries)` : `NO, first bad entry ${chain.firstBad?.id} (${chain.firstBad?.reason ?? ''})`}` };
  }
  const v = await verifyActionChains(db, ids);
  if (!v) return { ok: true, text: 'audit: not verified (single global chain: the made-up stored entries would stop the walk)' };
  return { ok: v.ok, text: `audit chains of the measured actions verify: ${v.ok ? `yes (${v.checked} entries)` : `NO: ${v.bad}`}` };
}

/** Whether the audit log has per-chain columns (issue #8); before it, one global chain. */
export async function hasPerChainAudit(db: PrismaClient): Promise<boolean> {
  const rows = await db.$queryRawUnsafe<Array<{ n: number }>>(
    `SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'AuditEntry' AND column_name IN ('chain', 'chainSeq', 'txid')`,
  );
  return rows[0]?.n === 3;
}

/**
 * Verifies the chains of `actionIds` only (format 2: each entry's link over its content, no
 * gap, prevHash = the previous entry's hash, the last entry = the action's recorded head).
 * Null when the audit log has no per-chain format.
 */
async function verifyActionChains(db: PrismaClient, actionIds: string[]): Promise<{ ok: boolean; checked: number; bad?: string } | null> {
  if (!(await hasPerChainAudit(db)) || typeof audit.auditLink !== 'function') return null;
  let checked = 0;
  for (let i = 0; i < actionIds.length; i += 200) {
    const slice = actionIds.slice(i, i + 200);
    const [entries, actions] = await Promise.all([
      db.auditEntry.findMany({ where: { chain: { in: slice } }, orderBy: [{ chain: 'asc' }, { chainSeq: 'asc' }] }),
      db.action.findMany({ where: { id: { in: slice } }, select: { id: true, auditSeq: true, auditHead: true } }),
    ]);
    const heads = new Map(actions.map((a) => [a.id, a]));
    let prev: (typeof entries)[number] | null = null;
    const endOf = (e: (typeof entries)[number]) => {
      const head = heads.get(e.chain);
      return head && (head.auditSeq !== e.chainSeq || head.auditHead !== e.hash) ? `entry ${e.id}: chain ${e.chain} ends at seq ${e.chainSeq}, the action records ${head.auditSeq}` : null;
    };
    for (const e of entries) {
      checked += 1;
      const same = prev !== null && prev.chain === e.chain;
      if (!same && prev) {
        const cut = endOf(prev);
        if (cut) return { ok: false, checked, bad: cut };
      }
      if (e.chainSeq !== (same ? prev!.chainSeq + 1 : 1)) return { ok: false, checked, bad: `entry ${e.id}: gap before seq ${e.chainSeq}` };
      if (e.prevHash !== (same ? prev!.hash : '')) return { ok: false, checked, bad: `entry ${e.id}: prevHash does not match` };
      if (audit.auditLink(e.prevHash, e.chainSeq, audit.auditContentHash(e)) !== e.hash) return { ok: false, checked, bad: `entry ${e.id}: hash mismatch` };
      prev = e;
    }
    if (prev) {
      const cut = endOf(prev);
      if (cut) return { ok: false, checked, bad: cut };
    }
    const chains = new Set(entries.map((e) => e.chain));
    const missing = slice.filter((id) => !chains.has(id));
    if (missing.length) return { ok: false, checked, bad: `${missing.length} actions have no audit chain (e.g. ${missing[0]})` };
  }
  return { ok: true, checked };
}

// ---------------------------------------------------------------------------------------------
// The audit sealer's lag

export type SealerLag =
  | { state: 'measured'; actions: number; covered: number; waitedMs: number; lag: Stats; checkpoints: number }
  | { state: 'no-sealer'; note: string };

/**
 * For each action's last audit entry, the time from its `createdAt` to the `createdAt` of the
 * first checkpoint that covers it ((txid, id) ≤ (lastTxid, lastId)). Waits up to `waitMs` for
 * the sealer to cover them all. "no sealer running" when there is no checkpoint at all.
 */
export async function measureSealerLag(db: PrismaClient, actionIds: string[], waitMs: number): Promise<SealerLag> {
  const table = await db.$queryRawUnsafe<Array<{ t: string | null }>>(`SELECT to_regclass('"AuditCheckpoint"')::text AS t`);
  if (!table[0]?.t || !(await hasPerChainAudit(db))) return { state: 'no-sealer', note: 'no AuditCheckpoint table (an engine from before #8)' };
  const started = performance.now();
  const query = async () =>
    db.$queryRawUnsafe<Array<{ lag: number | null }>>(
      `WITH last AS (
         SELECT DISTINCT ON ("chain") "chain", "txid", "id", "createdAt" FROM "AuditEntry"
          WHERE "chain" = ANY($1::text[]) ORDER BY "chain", "chainSeq" DESC)
       SELECT extract(epoch FROM (c."createdAt" - l."createdAt")) * 1000 AS lag
         FROM last l
         LEFT JOIN LATERAL (SELECT "createdAt" FROM "AuditCheckpoint" c
                             WHERE (c."lastTxid", c."lastId") >= (l."txid", l."id") ORDER BY c."id" LIMIT 1) c ON true`,
      actionIds,
    );
  for (;;) {
    const [{ n: checkpoints } = { n: 0 }] = await db.$queryRawUnsafe<Array<{ n: number }>>(`SELECT count(*)::int AS n FROM "AuditCheckpoint"`);
    const rows = await query();
    const covered = rows.filter((r) => r.lag !== null);
    const waited = performance.now() - started;
    if (checkpoints === 0 && waited > Math.min(waitMs, 3000)) return { state: 'no-sealer', note: 'no sealer running (no AuditCheckpoint rows)' };
    if ((covered.length === rows.length && checkpoints > 0) || waited > waitMs) {
      return { state: 'measured', actions: rows.length, covered: covered.length, waitedMs: waited, lag: stats(covered.map((r) => Number(r.lag))), checkpoints };
    }
    await sleep(250);
  }
}
