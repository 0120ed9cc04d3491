import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineActionType } from '../../src/engine/action-types.js';
import { createApiKey } from '../../src/engine/api-keys.js';
import pg from 'pg';
import { readStats, statsStatements, type StatsScope, type StatsWindow } from '../../src/engine/stats.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { PermanentHandlerError } from '../../src/handlers/types.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData, postGraphql } from '../helpers/http.js';

// Two types of the test's own, one of them gated by an approval rule, served by one chain of two
// handlers (api, then webhook) whose outcome the payload picks.
const MODES = ['ok', 'fallback', 'fail', 'wait', 'task', 'block'] as const;
const payload = z.strictObject({ mode: z.enum(MODES) });
const alpha = defineActionType({ type: 'stats_alpha', description: 'test', payload, reversible: false });
const beta = defineActionType({ type: 'stats_beta', description: 'test', payload, reversible: false });

let release: () => void = () => {};
const blocked = new Promise<void>((resolve) => {
  release = resolve;
});

const apiHandler = defineHandler({
  name: 'stats.api',
  kind: 'api',
  types: [alpha, beta],
  repeat: 'check',
  async execute({ payload: p }) {
    if (p.mode === 'block') await blocked;
    if (p.mode === 'ok' || p.mode === 'block') return { status: 'completed', provider: 'test', data: {} };
    throw new PermanentHandlerError(`the api cannot do ${p.mode}`);
  },
});
const webhookHandler = defineHandler({
  name: 'stats.webhook',
  kind: 'webhook',
  types: [alpha, beta],
  repeat: 'check',
  async execute({ payload: p, action }) {
    if (p.mode === 'fallback') return { status: 'completed', provider: 'test', data: {} };
    if (p.mode === 'wait') return { status: 'waiting', key: `stats:${action.id}`, message: 'Waiting for the provider' };
    if (p.mode === 'task') return { status: 'waiting', key: `stats-task:${action.id}`, message: 'Waiting for an operator', task: { instructions: 'Do it by hand' } };
    throw new PermanentHandlerError(`the webhook cannot do ${p.mode} either`);
  },
});

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer({
    env: { RETRY_BACKOFF_MS: '50', WORKER_CONCURRENCY: '4', RECONCILE_SECONDS: '3600' },
    app: { extraActionTypes: [alpha, beta], extraHandlers: [apiHandler, webhookHandler] },
    worker: true,
  });
});
afterAll(async () => {
  release();
  await t?.close();
});

const STATS = `query($from: DateTime, $to: DateTime, $bucket: StatsBucket) {
  stats(from: $from, to: $to, bucket: $bucket) {
    from to bucket total
    byStatus { status count }
    byType { type count }
    series { bucketStart type status count }
    approvalWait { count p50Seconds p90Seconds maxSeconds }
    handlers { handler attempts succeeded failed fellBack unfinished successRate fallbackRate }
    queue { pendingApproval queued scheduled executing waitingOnProvider waitingOnOperator openManualTasks }
  }
}`;

const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message } } }`;
const APPROVE = `mutation($id: ID!) { approveAction(id: $id) { action { status } errors { code message } } }`;
const REJECT = `mutation($id: ID!) { rejectAction(id: $id, reason: "no") { action { status } errors { code message } } }`;
const GATE = `mutation($type: String!) { upsertSafetyRule(input: { actionType: $type, kind: REQUIRES_APPROVAL }) { errors { code message } } }`;

/** The keys of one fresh space: its admin, an analyst, an operator, and an agent and approver for user `u1`. */
async function space(slug: string) {
  const admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: slug })).key;
  const agent = await createApiKey(t.app.db, { role: 'AGENT', space: slug, user: 'u1' });
  const approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: slug, user: 'u1' })).key;
  const analyst = (await createApiKey(t.app.db, { role: 'ANALYST', space: slug })).key;
  const operator = (await createApiKey(t.app.db, { role: 'OPERATOR', space: slug })).key;
  expect((await graphqlData(t.url, admin, GATE, { type: 'stats_beta' })).upsertSafetyRule.errors).toEqual([]);
  const spaceId = (await t.app.db.space.findUniqueOrThrow({ where: { slug } })).id;
  return { admin, agent: agent.key, userId: agent.userId!, approver, analyst, operator, spaceId };
}

async function create(agent: string, type: string, mode: (typeof MODES)[number], extra: Record<string, unknown> = {}): Promise<string> {
  const out = (await graphqlData(t.url, agent, CREATE, { input: { type, payload: { mode }, ...extra } })).createAction;
  expect(out.errors).toEqual([]);
  return out.action.id as string;
}

/** Polls the database until `check` holds for the action (the worker runs in this process). */
async function until(id: string, what: string, check: (a: { status: string; executions: Array<{ status: string; handler: string }> }) => boolean) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const a = await t.app.db.action.findUniqueOrThrow({ where: { id }, include: { executions: true } });
    if (check(a)) return a;
    if (Date.now() > deadline) throw new Error(`action ${id} did not reach ${what}: ${a.status}, ${JSON.stringify(a.executions.map((e) => [e.handler, e.status]))}`);
    await sleep(25);
  }
}
const reaches = (id: string, status: string) => until(id, status, (a) => a.status === status);
const waitsOn = (id: string, handler: string) => until(id, `a WAITING ${handler}`, (a) => a.executions.some((e) => e.handler === handler && e.status === 'WAITING'));

/** percentile_cont over sorted values, as PostgreSQL computes it. */
function percentile(sorted: number[], p: number): number {
  const at = p * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

describe('stats', () => {
  it('counts a space\'s actions by status, type and minute, approval waits, handler success and fallback rates and queue depth exactly; another space\'s never; an approver its own user\'s only; agents are refused', async () => {
    const started = new Date(Date.now() - 60_000);
    const main = await space('stats-main');
    const other = await space('stats-other');

    // Another space, busy with the same types: never counted in stats-main's numbers.
    await create(other.agent, 'stats_alpha', 'ok');
    await create(other.agent, 'stats_alpha', 'fallback');
    const otherPending = await create(other.agent, 'stats_beta', 'ok');

    const ids = {
      ok1: await create(main.agent, 'stats_alpha', 'ok'),
      ok2: await create(main.agent, 'stats_alpha', 'ok'),
      fallback: await create(main.agent, 'stats_alpha', 'fallback'),
      fail: await create(main.agent, 'stats_alpha', 'fail'),
      wait: await create(main.agent, 'stats_alpha', 'wait'),
      task: await create(main.agent, 'stats_alpha', 'task'),
      block: await create(main.agent, 'stats_alpha', 'block'),
      scheduled: await create(main.agent, 'stats_alpha', 'ok', { scheduledFor: new Date(Date.now() + 3_600_000).toISOString() }),
      approved: await create(main.agent, 'stats_beta', 'ok'),
      rejected: await create(main.agent, 'stats_beta', 'ok'),
      pending: await create(main.agent, 'stats_beta', 'ok'),
      approvedFails: await create(main.agent, 'stats_beta', 'fail'),
    };
    // A second user of the same space: in the space's numbers, not in u1's approver's.
    const agent2 = (await createApiKey(t.app.db, { role: 'AGENT', space: 'stats-main', user: 'u2' })).key;
    const ofU2 = await create(agent2, 'stats_alpha', 'ok');

    await sleep(30); // a measurable wait before the decisions
    for (const id of [ids.approved, ids.approvedFails]) expect((await graphqlData(t.url, main.approver, APPROVE, { id })).approveAction.errors).toEqual([]);
    expect((await graphqlData(t.url, main.approver, REJECT, { id: ids.rejected })).rejectAction.errors).toEqual([]);

    for (const id of [ids.ok1, ids.ok2, ids.fallback, ids.approved, ofU2]) await reaches(id, 'COMPLETED');
    for (const id of [ids.fail, ids.approvedFails]) await reaches(id, 'FAILED');
    await waitsOn(ids.wait, 'stats.webhook');
    await waitsOn(ids.task, 'stats.webhook');
    await until(ids.block, 'a RUNNING stats.api', (a) => a.executions.some((e) => e.status === 'RUNNING'));
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id: otherPending } })).status).toBe('PENDING');

    const window = { from: started.toISOString(), to: new Date(Date.now() + 60_000).toISOString(), bucket: 'MINUTE' };
    const all = (await graphqlData(t.url, main.admin, STATS, window)).stats;
    expect(all.from).toBe(window.from);
    expect(all.to).toBe(window.to);
    expect(all.bucket).toBe('MINUTE');
    expect(all.total).toBe(13);
    expect(all.byStatus).toEqual([
      { status: 'PENDING', count: 1 },
      { status: 'APPROVED', count: 1 },
      { status: 'REJECTED', count: 1 },
      { status: 'EXECUTING', count: 3 },
      { status: 'COMPLETED', count: 5 },
      { status: 'FAILED', count: 2 },
    ]);
    expect(all.byType).toEqual([
      { type: 'stats_alpha', count: 9 },
      { type: 'stats_beta', count: 4 },
    ]);

    // The series: each action in the UTC minute of its creation, by type and current status.
    const rows = await t.app.db.action.findMany({ where: { spaceId: main.spaceId }, select: { createdAt: true, type: true, status: true, decidedAt: true, requiresApproval: true } });
    const expected = new Map<string, number>();
    for (const r of rows) {
      const key = JSON.stringify([new Date(Math.floor(r.createdAt.getTime() / 60_000) * 60_000).toISOString(), r.type, r.status]);
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    expect(all.series.map((p: any) => JSON.stringify([p.bucketStart, p.type, p.status]))).toEqual(
      expect.arrayContaining([...expected.keys()]),
    );
    expect(Object.fromEntries(all.series.map((p: any) => [JSON.stringify([p.bucketStart, p.type, p.status]), p.count]))).toEqual(Object.fromEntries(expected));
    expect(all.series.map((p: any) => p.bucketStart)).toEqual([...all.series.map((p: any) => p.bucketStart)].sort());

    // Approval waits: the approved, the rejected and the approved-then-failed action, from creation to decision.
    const waits = rows
      .filter((r) => r.requiresApproval && r.decidedAt)
      .map((r) => (r.decidedAt!.getTime() - r.createdAt.getTime()) / 1000)
      .sort((a, b) => a - b);
    expect(waits).toHaveLength(3);
    expect(waits[0]).toBeGreaterThan(0.02);
    expect(all.approvalWait.count).toBe(3);
    // In seconds to the millisecond (waits are whole milliseconds; interpolated percentiles are rounded).
    const toTheMs = (got: number, exact: number) => expect(Math.abs(got - exact), `${got} vs ${exact}`).toBeLessThanOrEqual(0.0005 + 1e-9);
    toTheMs(all.approvalWait.p50Seconds, percentile(waits, 0.5));
    toTheMs(all.approvalWait.p90Seconds, percentile(waits, 0.9));
    expect(all.approvalWait.maxSeconds).toBe(waits[2]);

    // stats.api ran for every action that was executed (10): ok1, ok2, approved, ofU2 succeeded;
    // fallback, fail, wait, task, approvedFails failed permanently and the chain went on to the
    // webhook; block is still running. The webhook: fallback succeeded; fail and approvedFails
    // failed with nothing after them; wait and task wait.
    expect(all.handlers).toEqual([
      { handler: 'stats.api', attempts: 10, succeeded: 4, failed: 5, fellBack: 5, unfinished: 1, successRate: 4 / 9, fallbackRate: 5 / 9 },
      { handler: 'stats.webhook', attempts: 5, succeeded: 1, failed: 2, fellBack: 0, unfinished: 2, successRate: 1 / 3, fallbackRate: 0 },
    ]);
    expect(all.queue).toEqual({ pendingApproval: 1, queued: 1, scheduled: 1, executing: 1, waitingOnProvider: 1, waitingOnOperator: 1, openManualTasks: 1 });

    // Analysts and operators read the space's actions: the same numbers.
    expect((await graphqlData(t.url, main.analyst, STATS, window)).stats).toEqual(all);
    expect((await graphqlData(t.url, main.operator, STATS, window)).stats).toEqual(all);

    // u1's approver: everything but u2's action.
    const own = (await graphqlData(t.url, main.approver, STATS, window)).stats;
    expect(own.total).toBe(12);
    expect(own.byStatus.find((s: any) => s.status === 'COMPLETED').count).toBe(4);
    expect(own.byType).toEqual([
      { type: 'stats_alpha', count: 8 },
      { type: 'stats_beta', count: 4 },
    ]);
    expect(own.handlers[0]).toEqual({ handler: 'stats.api', attempts: 9, succeeded: 3, failed: 5, fellBack: 5, unfinished: 1, successRate: 3 / 8, fallbackRate: 5 / 8 });
    expect(own.approvalWait.count).toBe(3);
    expect(own.queue).toEqual(all.queue);
    // u2's approver sees u2's one action, and none of u1's queue.
    const approver2 = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'stats-main', user: 'u2' })).key;
    const ofOne = (await graphqlData(t.url, approver2, STATS, window)).stats;
    expect(ofOne.total).toBe(1);
    expect(ofOne.handlers).toEqual([{ handler: 'stats.api', attempts: 1, succeeded: 1, failed: 0, fellBack: 0, unfinished: 0, successRate: 1, fallbackRate: 0 }]);
    expect(ofOne.queue).toEqual({ pendingApproval: 0, queued: 0, scheduled: 0, executing: 0, waitingOnProvider: 0, waitingOnOperator: 0, openManualTasks: 0 });

    // The other space sees only its own three.
    const theirs = (await graphqlData(t.url, other.analyst, STATS, window)).stats;
    expect(theirs.total).toBe(3);
    expect(theirs.queue.pendingApproval).toBe(1);
    expect(theirs.handlers.map((h: any) => h.handler)).toEqual(['stats.api', 'stats.webhook']);
    expect(theirs.handlers[0].attempts).toBe(2);

    // Agents are refused.
    const refused = (await postGraphql(t.url, main.agent, STATS, window)).body;
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(refused.data).toBeNull();

    // Once the blocked handler finishes, queue depth follows.
    release();
    await reaches(ids.block, 'COMPLETED');
    expect((await graphqlData(t.url, main.admin, STATS, window)).stats.queue.executing).toBe(0);
  });

  it('puts actions in whole UTC hour, day and minute buckets with from inclusive and to exclusive, and gives exact approval-wait percentiles', async () => {
    const s = await space('stats-clock');
    const at = (iso: string) => new Date(iso);
    // Each action: when it was created, decided, and (if it ran) when its execution started.
    const plan = [
      { decision: 'approve', created: '2026-03-01T10:05:00.000Z', decided: '2026-03-01T10:06:00.000Z', ran: '2026-03-01T10:07:00.000Z' },
      { decision: 'reject', created: '2026-03-01T10:55:00.000Z', decided: '2026-03-01T11:00:00.000Z', ran: null },
      { decision: 'approve', created: '2026-03-01T11:10:30.000Z', decided: '2026-03-01T11:30:30.000Z', ran: '2026-03-01T11:31:00.000Z' },
      { decision: 'approve', created: '2026-02-28T23:59:59.999Z', decided: '2026-03-01T00:00:00.999Z', ran: '2026-03-01T00:00:05.000Z' },
      { decision: 'approve', created: '2026-03-01T12:00:00.000Z', decided: '2026-03-01T12:00:05.000Z', ran: '2026-03-01T12:01:00.000Z' },
    ] as const;
    for (const p of plan) {
      const id = await create(s.agent, 'stats_beta', 'ok');
      if (p.decision === 'approve') {
        expect((await graphqlData(t.url, s.approver, APPROVE, { id })).approveAction.errors).toEqual([]);
        await reaches(id, 'COMPLETED');
      } else {
        expect((await graphqlData(t.url, s.approver, REJECT, { id })).rejectAction.errors).toEqual([]);
      }
      await t.app.db.action.update({ where: { id }, data: { createdAt: at(p.created), decidedAt: at(p.decided) } });
      if (p.ran) await t.app.db.execution.updateMany({ where: { actionId: id }, data: { startedAt: at(p.ran) } });
    }
    const stats = async (from: string, to: string, bucket: string) => (await graphqlData(t.url, s.admin, STATS, { from, to, bucket })).stats;

    const hours = await stats('2026-03-01T10:00:00Z', '2026-03-01T12:00:00Z', 'HOUR');
    expect(hours.total).toBe(3);
    expect(hours.byStatus).toEqual([
      { status: 'REJECTED', count: 1 },
      { status: 'COMPLETED', count: 2 },
    ]);
    expect(hours.byType).toEqual([{ type: 'stats_beta', count: 3 }]);
    expect(hours.series).toEqual([
      { bucketStart: '2026-03-01T10:00:00.000Z', type: 'stats_beta', status: 'REJECTED', count: 1 },
      { bucketStart: '2026-03-01T10:00:00.000Z', type: 'stats_beta', status: 'COMPLETED', count: 1 },
      { bucketStart: '2026-03-01T11:00:00.000Z', type: 'stats_beta', status: 'COMPLETED', count: 1 },
    ]);
    // Decided in the window: waits of 60, 300 and 1200 s.
    expect(hours.approvalWait).toEqual({ count: 3, p50Seconds: 300, p90Seconds: 1020, maxSeconds: 1200 });
    expect(hours.handlers).toEqual([{ handler: 'stats.api', attempts: 2, succeeded: 2, failed: 0, fellBack: 0, unfinished: 0, successRate: 1, fallbackRate: 0 }]);
    expect(hours.queue).toEqual({ pendingApproval: 0, queued: 0, scheduled: 0, executing: 0, waitingOnProvider: 0, waitingOnOperator: 0, openManualTasks: 0 });

    const days = await stats('2026-02-28T00:00:00Z', '2026-03-02T00:00:00Z', 'DAY');
    expect(days.series).toEqual([
      { bucketStart: '2026-02-28T00:00:00.000Z', type: 'stats_beta', status: 'COMPLETED', count: 1 },
      { bucketStart: '2026-03-01T00:00:00.000Z', type: 'stats_beta', status: 'REJECTED', count: 1 },
      { bucketStart: '2026-03-01T00:00:00.000Z', type: 'stats_beta', status: 'COMPLETED', count: 3 },
    ]);
    // Waits of 1, 5, 60, 300 and 1200 s: the 90th percentile interpolates between 300 and 1200.
    expect(days.approvalWait).toEqual({ count: 5, p50Seconds: 60, p90Seconds: 840, maxSeconds: 1200 });
    expect(days.handlers[0].attempts).toBe(4);

    const minutes = await stats('2026-03-01T10:00:00Z', '2026-03-01T12:00:00Z', 'MINUTE');
    expect(minutes.series.map((p: any) => [p.bucketStart, p.status])).toEqual([
      ['2026-03-01T10:05:00.000Z', 'COMPLETED'],
      ['2026-03-01T10:55:00.000Z', 'REJECTED'],
      ['2026-03-01T11:10:00.000Z', 'COMPLETED'],
    ]);

    // A window that does not start on a bucket: the first bucket starts before it, and counts only what is inside.
    const unaligned = await stats('2026-03-01T10:30:00Z', '2026-03-01T11:20:00Z', 'HOUR');
    expect(unaligned.series).toEqual([
      { bucketStart: '2026-03-01T10:00:00.000Z', type: 'stats_beta', status: 'REJECTED', count: 1 },
      { bucketStart: '2026-03-01T11:00:00.000Z', type: 'stats_beta', status: 'COMPLETED', count: 1 },
    ]);
    expect(unaligned.approvalWait).toEqual({ count: 1, p50Seconds: 300, p90Seconds: 300, maxSeconds: 300 });

    // from is inclusive, to exclusive, to the millisecond.
    expect((await stats('2026-03-01T10:05:00.000Z', '2026-03-01T10:05:00.001Z', 'MINUTE')).total).toBe(1);
    expect((await stats('2026-03-01T10:04:59.000Z', '2026-03-01T10:05:00.000Z', 'MINUTE')).total).toBe(0);
    expect((await stats('2026-03-01T11:00:00Z', '2026-03-01T12:00:00Z', 'HOUR')).total).toBe(1);
    expect((await stats('2026-03-01T12:00:00Z', '2026-03-01T12:00:00.001Z', 'MINUTE')).total).toBe(1);

    // Nothing in the window: empty lists, nulls for the waits.
    const empty = await stats('2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z', 'HOUR');
    expect(empty).toMatchObject({ total: 0, byStatus: [], byType: [], series: [], handlers: [], approvalWait: { count: 0, p50Seconds: null, p90Seconds: null, maxSeconds: null } });
  });

  it('defaults to the 24 hours before now in HOUR buckets', async () => {
    const s = await space('stats-defaults');
    await create(s.agent, 'stats_beta', 'ok');
    const before = Date.now();
    const out = (await graphqlData(t.url, s.operator, '{ stats { from to bucket total byStatus { status count } queue { pendingApproval } } }', {})).stats;
    const to = Date.parse(out.to);
    expect(to).toBeGreaterThanOrEqual(before - 1000);
    expect(to).toBeLessThanOrEqual(Date.now() + 1000);
    expect(to - Date.parse(out.from)).toBe(24 * 3_600_000);
    expect(out.bucket).toBe('HOUR');
    expect(out.total).toBe(1);
    expect(out.byStatus).toEqual([{ status: 'PENDING', count: 1 }]);
    expect(out.queue.pendingApproval).toBe(1);
    // Only `to`: from is 24 hours before it.
    const only = (await graphqlData(t.url, s.operator, '{ stats(to: "2026-03-02T00:00:00Z") { from to } }', {})).stats;
    expect(only).toEqual({ from: '2026-03-01T00:00:00.000Z', to: '2026-03-02T00:00:00.000Z' });
  });

  it('refuses bad windows with INVALID_INPUT naming the argument: from not before to, longer than 93 days, more than 2,000 buckets', async () => {
    const s = await space('stats-bad');
    const refusal = async (vars: Record<string, unknown>) => {
      const out = (await postGraphql(t.url, s.admin, STATS, vars)).body;
      expect(out.data).toBeNull();
      expect(out.errors).toHaveLength(1);
      return { code: out.errors![0]!.extensions?.code, field: out.errors![0]!.extensions?.field, message: out.errors![0]!.message };
    };
    expect(await refusal({ from: '2026-03-01T10:00:00Z', to: '2026-03-01T10:00:00Z' })).toEqual({
      code: 'INVALID_INPUT',
      field: ['from'],
      message: 'from (2026-03-01T10:00:00.000Z) must be before to (2026-03-01T10:00:00.000Z)',
    });
    expect(await refusal({ from: '2026-03-02T00:00:00Z', to: '2026-03-01T00:00:00Z' })).toMatchObject({ code: 'INVALID_INPUT', field: ['from'] });
    // A from in the future with to left to default.
    const future = await refusal({ from: new Date(Date.now() + 3_600_000).toISOString() });
    expect(future).toMatchObject({ code: 'INVALID_INPUT', field: ['from'] });
    expect(future.message).toMatch(/must be before to .*which defaults to now/);

    const long = await refusal({ from: '2026-01-01T00:00:00Z', to: '2026-04-04T00:00:00.001Z', bucket: 'DAY' });
    expect(long).toMatchObject({ code: 'INVALID_INPUT', field: ['from'] });
    expect(long.message).toMatch(/^the window from 2026-01-01T00:00:00.000Z to 2026-04-04T00:00:00.001Z is 93\.000 days long; at most 93 days/);
    // Exactly 93 days is allowed.
    expect((await graphqlData(t.url, s.admin, STATS, { from: '2026-01-01T00:00:00Z', to: '2026-04-04T00:00:00Z', bucket: 'DAY' })).stats.total).toBe(0);

    // 93 days in hours: 2,232 buckets.
    const hours = await refusal({ from: '2026-01-01T00:00:00Z', to: '2026-04-04T00:00:00Z', bucket: 'HOUR' });
    expect(hours).toMatchObject({ code: 'INVALID_INPUT', field: ['bucket'] });
    expect(hours.message).toMatch(/^bucket HOUR cuts the window .* into 2,232 buckets; at most 2,000 are allowed: choose a wider bucket \(DAY\) or a shorter window$/);
    // 2,000 whole minutes are allowed; 2,001, or 2,000 minutes that straddle 2,001 buckets, are not.
    const start = Date.parse('2026-03-01T00:00:00Z');
    const iso = (ms: number) => new Date(ms).toISOString();
    expect((await graphqlData(t.url, s.admin, STATS, { from: iso(start), to: iso(start + 2000 * 60_000), bucket: 'MINUTE' })).stats.total).toBe(0);
    const minutes = await refusal({ from: iso(start), to: iso(start + 2001 * 60_000), bucket: 'MINUTE' });
    expect(minutes).toMatchObject({ code: 'INVALID_INPUT', field: ['bucket'] });
    expect(minutes.message).toMatch(/into 2,001 buckets; at most 2,000 are allowed: choose a wider bucket \(HOUR or DAY\) or a shorter window$/);
    expect(await refusal({ from: iso(start + 30_000), to: iso(start + 30_000 + 2000 * 60_000), bucket: 'MINUTE' })).toMatchObject({ code: 'INVALID_INPUT', field: ['bucket'] });

    // A date that is not one is refused by the DateTime scalar before anything runs.
    const bad = (await postGraphql(t.url, s.admin, STATS, { from: '2026-02-31T00:00:00Z' })).body;
    expect(bad.errors?.[0]?.message).toMatch(/DateTime|2026-02-31/);
  });

  it('has for each statement the index meant for it: with sequential scans disabled, over a populated database (90 days of actions in three spaces), for a space and for an approver\'s user, each plan uses that index', async () => {
    // Three spaces with 6,000 actions each over 90 days (one every 21 minutes), a fifth of them
    // decided, most with an execution; then ANALYZE, so the planner sees real proportions.
    const spaces = [];
    for (const slug of ['stats-plans', 'stats-noise-1', 'stats-noise-2']) {
      const agent = await createApiKey(t.app.db, { role: 'AGENT', space: slug, user: 'u1' });
      const principal = await t.app.db.principal.findFirstOrThrow({ where: { user: { id: agent.userId! } } });
      spaces.push({ spaceId: principal.spaceId, userId: agent.userId!, principalId: principal.id });
    }
    for (const s of spaces) {
      await t.app.db.$executeRawUnsafe(
        `INSERT INTO "Action" ("id", "spaceId", "userId", "requestedById", "type", "payload", "payloadHash", "status", "requiresApproval", "createdAt", "updatedAt", "decidedAt")
         SELECT gen_random_uuid(), $1::uuid, $2::uuid, $3::uuid, CASE WHEN i % 3 = 0 THEN 'stats_beta' ELSE 'stats_alpha' END, '{}'::jsonb, '',
           (CASE WHEN i % 50 = 0 THEN 'PENDING' WHEN i % 50 = 1 THEN 'EXECUTING' WHEN i % 7 = 0 THEN 'FAILED' ELSE 'COMPLETED' END)::"ActionStatus",
           i % 5 = 0, now() - make_interval(mins => i * 21), now(), CASE WHEN i % 5 = 0 THEN now() - make_interval(mins => i * 21 - 3) END
         FROM generate_series(1, 6000) i`,
        s.spaceId, s.userId, s.principalId,
      );
      await t.app.db.$executeRawUnsafe(
        `INSERT INTO "Execution" ("id", "actionId", "attempt", "handler", "kind", "status", "startedAt", "finishedAt", "permanent")
         SELECT gen_random_uuid(), a."id", 1, 'stats.api', 'API', (CASE WHEN a."status" = 'EXECUTING' THEN 'RUNNING' WHEN a."status" = 'FAILED' THEN 'FAILED' ELSE 'SUCCEEDED' END)::"ExecutionStatus",
           a."createdAt" + interval '1 second', a."createdAt" + interval '2 seconds', a."status" = 'FAILED'
         FROM "Action" a WHERE a."spaceId" = $1::uuid AND a."status" <> 'PENDING'`,
        s.spaceId,
      );
    }
    await t.app.db.$executeRawUnsafe('ANALYZE "Action"');
    await t.app.db.$executeRawUnsafe('ANALYZE "Execution"');
    await t.app.db.$executeRawUnsafe('ANALYZE "ManualTask"');

    const now = new Date();
    const window: StatsWindow = { from: new Date(now.getTime() - 86_400_000), to: now, bucket: 'HOUR' };
    const target = spaces[0]!;
    // The scan of each statement's main table, by the index meant for it.
    const by = (...indexes: string[]) => new RegExp(`(Index Scan using|Index Only Scan using|Bitmap Index Scan on) "(${indexes.join('|')})"`);
    const meant: Record<string, { space: RegExp; approver: RegExp }> = {
      created: { space: by('Action_spaceId_createdAt_idx'), approver: by('Action_spaceId_userId_createdAt_idx') },
      approvalWait: { space: by('Action_spaceId_decidedAt_idx'), approver: by('Action_spaceId_decidedAt_idx') },
      handlers: { space: by('Action_spaceId_createdAt_idx'), approver: by('Action_spaceId_userId_createdAt_idx') },
      queue: { space: by('Action_spaceId_status_createdAt_idx'), approver: by('Action_spaceId_status_createdAt_idx', 'Action_spaceId_userId_createdAt_idx') },
    };
    const scopes: StatsScope[] = [
      { spaceId: target.spaceId, userId: null },
      { spaceId: target.spaceId, userId: target.userId },
    ];
    for (const scope of scopes) {
      const who = scope.userId ? 'approver' : 'space';
      for (const [name, statement] of Object.entries(statsStatements(scope, window, now))) {
        const plan = await t.app.db.$transaction(async (tx) => {
          // Told to avoid sequential scans, the planner still uses one where no index can serve.
          await tx.$executeRawUnsafe('SET LOCAL enable_seqscan = off');
          return tx.$queryRawUnsafe<Array<{ 'QUERY PLAN': string }>>(`EXPLAIN ${statement.text}`, ...statement.values);
        });
        const text = plan.map((r) => r['QUERY PLAN']).join('\n');
        expect(text, `${name} (${who}):\n${text}`).not.toMatch(/Seq Scan/);
        expect(text, `${name} (${who}):\n${text}`).toMatch(meant[name]![who]);
      }
    }
  });

  it('sends its statements unnamed, so PostgreSQL plans each for the window it is given (a named statement may settle on one generic plan)', async () => {
    const scope: StatsScope = { spaceId: (await t.app.db.space.findFirstOrThrow()).id, userId: null };
    const now = new Date();
    const window: StatsWindow = { from: new Date(now.getTime() - 86_400_000), to: now, bucket: 'HOUR' };
    const texts = new Set(Object.values(statsStatements(scope, window, now)).map((x) => x.text));
    const sent: Array<{ name?: string }> = [];
    const original = pg.Client.prototype.query;
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const config = args[0] as { text?: string; name?: string };
      if (typeof config === 'object' && config?.text && texts.has(config.text)) sent.push({ name: config.name });
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof pg.Client.prototype.query;
    try {
      await readStats(t.app.db, scope, window, now);
    } finally {
      pg.Client.prototype.query = original;
    }
    expect(sent).toHaveLength(texts.size);
    expect(sent.every((x) => x.name === undefined)).toBe(true);
  });
});
