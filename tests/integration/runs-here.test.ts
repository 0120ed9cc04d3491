import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createApiKey } from '../../src/engine/api-keys.js';
import { defineActionType } from '../../src/engine/action-types/define.js';
import { providerOf } from '../../src/engine/config-cache.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { startWorker, type ActionWorker } from '../../src/worker.js';
import { graphqlData } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { watchEngineStatements, type StatementWatch } from '../helpers/statements.js';
import { waitFor, waitForActionStatus } from '../helpers/wait.js';

// Runs started here (worker.ts): an action approved in a process whose worker has a slot to
// spare is approved and claimed in one statement and runs in that process, with no queue job;
// the process's heartbeat in Redis keeps every reconciler and job off it while it runs.

/** A type whose handler waits at a gate the test opens, and fails once when asked to. */
const gated = defineActionType({
  type: 'gated_test',
  description: 'Waits until the test lets it finish.',
  payload: z.strictObject({ note: z.string(), failOnce: z.boolean().optional() }),
  reversible: true,
  describe: (p) => ({ headline: `Gated ${p.note}`, details: [], instructions: 'Nothing to do.' }),
});
const gates = new Map<string, { entered: () => void; open: Promise<void>; release: () => void; reached: Promise<void> }>();
const calls: Array<{ id: string; attempt: number; pid: number }> = [];
function gateOf(id: string) {
  let gate = gates.get(id);
  if (!gate) {
    let release!: () => void;
    let entered!: () => void;
    const open = new Promise<void>((resolve) => (release = resolve));
    const reached = new Promise<void>((resolve) => (entered = resolve));
    gate = { entered, open, release, reached };
    gates.set(id, gate);
  }
  return gate;
}
const gatedHandler = defineHandler({
  name: 'gated_test.api',
  kind: 'api',
  types: [gated],
  repeat: 'check',
  async execute(ctx) {
    calls.push({ id: ctx.action.id, attempt: ctx.attempt, pid: process.pid });
    if (ctx.action.payload.failOnce && ctx.attempt === 1) throw new Error('the test provider is busy; try again');
    const gate = gateOf(ctx.action.id);
    gate.entered();
    await gate.open;
    return { status: 'completed', provider: 'test', data: { note: ctx.action.payload.note } };
  },
});

const app = { extraActionTypes: [gated], extraHandlers: [gatedHandler] };
let a: TestServer;
let b: TestServer;
let bWorker: ActionWorker | null = null;
let agent: string;
let approver: string;

/** Statements the engine's connections sent (both processes'). */
let statements: StatementWatch;

beforeAll(async () => {
  statements = watchEngineStatements();
  // Process A: API and worker, three jobs at once (two may run here, one is always the queue's).
  a = await startTestServer({ app, worker: true, env: { RECONCILE_SECONDS: '3600', EXPIRY_SWEEP_SECONDS: '3600', RETRY_BACKOFF_MS: '50', WORKER_CONCURRENCY: '3' } });
  // Process B: another of the same deployment (its worker is started where a test needs it).
  b = await startTestServer({
    app,
    database: 'from-env',
    env: { DATABASE_URL: a.app.config.databaseUrl!, RECONCILE_SECONDS: '3600', EXPIRY_SWEEP_SECONDS: '3600', RETRY_BACKOFF_MS: '50' },
    redisPrefix: a.app.config.redisPrefix,
  });
  const admin = (await createApiKey(a.app.db, { role: 'ADMIN', space: 'here' })).key;
  agent = (await createApiKey(a.app.db, { role: 'AGENT', space: 'here', user: 'hugo' })).key;
  approver = (await createApiKey(a.app.db, { role: 'APPROVER', space: 'here', user: 'hugo' })).key;
  const rule = await graphqlData(a.url, admin, `mutation { upsertSafetyRule(input: { actionType: "gated_test", kind: REQUIRES_APPROVAL }) { errors { code message } } }`);
  expect(rule.upsertSafetyRule.errors).toEqual([]);
});
afterAll(async () => {
  statements?.stop();
  for (const gate of gates.values()) gate.release();
  await bWorker?.close();
  await b?.close();
  await a?.close();
});

const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message } } }`;
const APPROVE = `mutation($id: ID!) { approveAction(id: $id) { action { id status } errors { code message } } }`;

async function pending(note: string, extra: { failOnce?: boolean } = {}): Promise<string> {
  const out = (await graphqlData(a.url, agent, CREATE, { input: { type: 'gated_test', payload: { note, ...extra } } })).createAction;
  expect(out.errors).toEqual([]);
  expect(out.action.status).toBe('PENDING');
  return out.action.id;
}

async function approveOnA(id: string): Promise<void> {
  const out = (await graphqlData(a.url, approver, APPROVE, { id })).approveAction;
  expect(out.errors).toEqual([]);
  expect(out.action.status).toBe('APPROVED');
}

describe('runs started in the approving process', () => {
  it('an approval there approves and claims in one statement, and the action runs there with no queue job', async () => {
    const id = await pending('one statement');
    // The approver's key, the type's rules and the handler configurations are read once, then
    // cached: out of the count.
    await graphqlData(a.url, approver, '{ __typename }');
    const spaceId = a.app.engine.pendingScopes!.get(id)!.spaceId;
    await a.app.engine.configCache.safetyRules(spaceId, 'gated_test');
    await a.app.engine.configCache.handlerConfigs(spaceId, providerOf({ note: 'one statement' }));
    statements.reset();
    await approveOnA(id);
    await gateOf(id).reached;
    // Approved and claimed: one statement; the handler's RUNNING row (repeat `check`): the other.
    expect(statements.count).toBe(2);
    const running = await a.app.db.action.findUniqueOrThrow({ where: { id }, include: { statusUpdates: { orderBy: { seq: 'asc' } } } });
    expect(running.status).toBe('EXECUTING');
    expect(running.runner).toMatch(new RegExp(`:${process.pid}:`));
    expect(running.attempts).toBe(1);
    // Both status updates were written by the one statement: the same moment, consecutive.
    const [approved, executing] = running.statusUpdates.slice(-2);
    expect([approved!.status, approved!.message, executing!.status, executing!.message]).toEqual(['APPROVED', 'Approved', 'EXECUTING', 'Executing']);
    expect(executing!.createdAt.getTime()).toBe(approved!.createdAt.getTime());
    expect(executing!.seq).toBe(approved!.seq + 1);
    expect(await a.app.engine.queue.state(id)).toBeNull();

    gateOf(id).release();
    const done = await waitForActionStatus(a.app.db, id, 'COMPLETED', 10_000);
    expect(done.executions.map((e) => [e.attempt, e.status])).toEqual([[1, 'SUCCEEDED']]);
    expect(await a.app.db.receipt.count({ where: { actionId: id } })).toBe(1);
    expect(await a.app.engine.queue.state(id)).toBeNull();
    // The audit trail reads as it does through the queue.
    const events = (await a.app.db.auditEntry.findMany({ where: { actionId: id }, orderBy: { chainSeq: 'asc' }, select: { event: true } })).map((e) => e.event);
    expect(events).toEqual(['action.created', 'approval.requested', 'action.approved', 'action.queued', 'execution.started', 'execution.completed']);
  });

  it('an action approved at creation there is created and claimed in one statement and runs there; the answer says APPROVED', async () => {
    // A space with no rule for the type: its actions are approved at creation.
    const auto = await createApiKey(a.app.db, { role: 'AGENT', space: 'auto-here', user: 'ida' });
    await graphqlData(a.url, auto.key, '{ __typename }');
    await a.app.engine.configCache.safetyRules(auto.spaceId, 'gated_test');
    await a.app.engine.configCache.handlerConfigs(auto.spaceId, providerOf({ note: 'created' }));
    statements.reset();
    const out = (await graphqlData(a.url, auto.key, CREATE, { input: { type: 'gated_test', payload: { note: 'created' } } })).createAction;
    expect(out.errors).toEqual([]);
    expect(out.action.status).toBe('APPROVED');
    const id: string = out.action.id;
    await gateOf(id).reached;
    // Created and claimed: one statement; the handler's RUNNING row: the other.
    expect(statements.count).toBe(2);
    const running = await a.app.db.action.findUniqueOrThrow({ where: { id }, include: { statusUpdates: { orderBy: { seq: 'asc' } } } });
    expect([running.status, running.attempts]).toEqual(['EXECUTING', 1]);
    expect(running.runner).toMatch(new RegExp(`:${process.pid}:`));
    expect(running.statusUpdates.map((u) => [u.seq, u.status, u.message])).toEqual([
      [1, 'APPROVED', 'Approved by the safety rules'],
      [2, 'EXECUTING', 'Executing'],
    ]);
    expect(running.statusUpdates[1]!.createdAt.getTime()).toBe(running.statusUpdates[0]!.createdAt.getTime());
    expect(await a.app.engine.queue.state(id)).toBeNull();

    gateOf(id).release();
    const done = await waitForActionStatus(a.app.db, id, 'COMPLETED', 10_000);
    expect(done.executions.map((e) => [e.attempt, e.status])).toEqual([[1, 'SUCCEEDED']]);
    expect(await a.app.db.receipt.count({ where: { actionId: id } })).toBe(1);
    const events = (await a.app.db.auditEntry.findMany({ where: { actionId: id }, orderBy: { chainSeq: 'asc' }, select: { event: true } })).map((e) => e.event);
    expect(events).toEqual(['action.created', 'action.queued', 'execution.started', 'execution.completed']);
  });

  it("another process's reconciler leaves a run going there alone", async () => {
    const id = await pending('held');
    await approveOnA(id);
    await gateOf(id).reached;
    bWorker = startWorker(b.app);
    await bWorker.reconcile();
    expect(await b.app.engine.queue.state(id)).toBeNull();
    expect((await b.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('EXECUTING');
    gateOf(id).release();
    const done = await waitForActionStatus(a.app.db, id, 'COMPLETED', 10_000);
    expect(done.executions).toHaveLength(1);
    expect(calls.filter((c) => c.id === id)).toHaveLength(1);
  });

  it('an action claimed by a process whose heartbeat is alive is left alone; once it stops, the reconciler runs it again as a stranded one', async () => {
    const id = await pending('stranded');
    // What a process that claimed it and then died leaves: EXECUTING, its runner named, the
    // attempt RUNNING, no job.
    const runner = `elsewhere:1:${randomUUID()}`;
    await a.app.db.action.update({ where: { id }, data: { status: 'EXECUTING', attempts: 1, runner } });
    await a.app.db.execution.create({ data: { actionId: id, attempt: 1, handler: 'gated_test.api', kind: 'API', status: 'RUNNING' } });
    await b.app.engine.queue.beat(runner, 60_000);
    bWorker ??= startWorker(b.app);
    await bWorker.reconcile();
    expect(await b.app.engine.queue.state(id)).toBeNull();
    expect((await b.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('EXECUTING');

    await b.app.engine.queue.endBeat(runner);
    gateOf(id).release();
    await bWorker.reconcile();
    const done = await waitForActionStatus(a.app.db, id, 'COMPLETED', 10_000);
    // The interrupted attempt is marked so; the handler ran once more (its repeat is `check`).
    expect(done.executions.map((e) => e.status).sort()).toEqual(['FAILED', 'SUCCEEDED']);
    expect(done.runner).toBeNull();
    expect(calls.filter((c) => c.id === id)).toHaveLength(1);
  });

  it('a retryable failure there hands the retry to the queue, counted as attempt 2', async () => {
    const id = await pending('retry', { failOnce: true });
    gateOf(id).release();
    await approveOnA(id);
    const done = await waitForActionStatus(a.app.db, id, 'COMPLETED', 10_000);
    expect(done.executions.sort((x, y) => x.attempt - y.attempt).map((e) => [e.attempt, e.status])).toEqual([
      [1, 'FAILED'],
      [2, 'SUCCEEDED'],
    ]);
    expect(done.attempts).toBe(2);
    expect(calls.filter((c) => c.id === id).map((c) => c.attempt)).toEqual([1, 2]);
    // Attempt 2 ran as the queue's job.
    expect(await a.app.engine.queue.state(id)).toBe('completed');
  });

  it('a job one process handed over does not resume an action that another live process claimed meanwhile', async () => {
    const id = await pending('claimed elsewhere');
    const runner = `elsewhere:2:${randomUUID()}`;
    const action = await a.app.db.action.update({ where: { id }, data: { status: 'EXECUTING', attempts: 1, runner } });
    await a.app.engine.queue.beat(runner, 60_000);
    // As a process whose own claim lost that race hands over what it could not run.
    await a.app.engine.queue.handOver(action, { actionId: id, spaceId: action.spaceId, type: action.type }, { delay: 0, attemptsBefore: 0, runner: `loser:3:${randomUUID()}` });
    await waitFor('the handed-over job to finish', async () => (await a.app.engine.queue.state(id)) === 'completed', 10_000);
    const after = await a.app.db.action.findUniqueOrThrow({ where: { id }, include: { executions: true } });
    expect([after.status, after.runner, after.executions.length]).toEqual(['EXECUTING', runner, 0]);
    expect(calls.filter((c) => c.id === id)).toEqual([]);
    await a.app.engine.queue.endBeat(runner);
  });

  it('WORKER_CONCURRENCY is shared with the queue: with 3, two run there at once and the next is queued', async () => {
    // B's worker would take the queued one at once; without it the job waits for A's one slot.
    await bWorker?.close();
    bWorker = null;
    const ids = [await pending('first'), await pending('second'), await pending('third')];
    for (const id of ids.slice(0, 2)) {
      await approveOnA(id);
      await gateOf(id).reached;
    }
    await approveOnA(ids[2]!);
    const rows = await a.app.db.action.findMany({ where: { id: { in: ids } }, select: { id: true, runner: true } });
    const runnerOf = new Map(rows.map((r) => [r.id, r.runner]));
    expect(ids.map((id) => runnerOf.get(id) !== null)).toEqual([true, true, false]);
    expect(await a.app.engine.queue.state(ids[2]!)).toMatch(/^(waiting|active|prioritized)$/);
    for (const id of ids) gateOf(id).release();
    for (const id of ids) expect((await waitForActionStatus(a.app.db, id, 'COMPLETED', 10_000)).executions).toHaveLength(1);
  });
});

describe('closing a worker', () => {
  it('waits for the runs started in its process to finish', async () => {
    const c = await startTestServer({ app, worker: true, env: { RECONCILE_SECONDS: '3600' } });
    try {
      const admin = (await createApiKey(c.app.db, { role: 'ADMIN', space: 'closing' })).key;
      const key = (await createApiKey(c.app.db, { role: 'AGENT', space: 'closing', user: 'cleo' })).key;
      const by = (await createApiKey(c.app.db, { role: 'APPROVER', space: 'closing', user: 'cleo' })).key;
      await graphqlData(c.url, admin, `mutation { upsertSafetyRule(input: { actionType: "gated_test", kind: REQUIRES_APPROVAL }) { errors { code } } }`);
      const id = (await graphqlData(c.url, key, CREATE, { input: { type: 'gated_test', payload: { note: 'closing' } } })).createAction.action.id as string;
      expect((await graphqlData(c.url, by, APPROVE, { id })).approveAction.action.status).toBe('APPROVED');
      await gateOf(id).reached;
      let closed = false;
      const closing = c.worker!.close().then(() => (closed = true));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(closed).toBe(false);
      gateOf(id).release();
      await closing;
      expect((await c.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('COMPLETED');
    } finally {
      await c.close();
    }
  });
});
