import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { approvalJobId, escalateAction } from '../../src/engine/approval-jobs.js';
import { approvalToken, readOutbox } from '../helpers/outbox.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData } from '../helpers/http.js';
import { waitFor } from '../helpers/wait.js';

// One "minute" of escalateAfterMinutes is 300 ms here; approval windows last 0.002 h (7 s: whole seconds).
// Neither the expiry sweep nor the reconciler runs during the tests (both every hour, after the
// first round at start): whatever expires or escalates does so by its own delayed job.
const MINUTE_MS = 300;
const AFTER_MINUTES = 3;
const ESCALATES_AFTER_MS = AFTER_MINUTES * MINUTE_MS;
const TTL_MS = 7000;

let t: TestServer;
let admin: string;
let agent: string;
let approver: string;

beforeAll(async () => {
  t = await startTestServer({
    env: { ESCALATION_MINUTE_MS: String(MINUTE_MS), APPROVAL_TTL_HOURS: '0.002', EXPIRY_SWEEP_SECONDS: '3600', RECONCILE_SECONDS: '3600' },
    worker: true,
  });
  admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'esc' })).key;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'esc', user: 'erin', email: 'erin@example.com' })).key;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'esc', user: 'erin' })).key;
  // dana is a user of the space with an address; nomail is one without.
  await createApiKey(t.app.db, { role: 'APPROVER', space: 'esc', user: 'dana', email: 'dana@example.com' });
  await createApiKey(t.app.db, { role: 'APPROVER', space: 'esc', user: 'nomail' });
  const saved = await graphqlData(t.url, admin, RULE, { input: { actionType: 'create_document', kind: 'REQUIRES_APPROVAL', escalateAfterMinutes: AFTER_MINUTES, escalateTo: ['boss@example.com', 'dana', 'nomail', 'erin@example.com'] } });
  expect(saved.upsertSafetyRule).toEqual({
    rule: { escalateAfterMinutes: AFTER_MINUTES, escalateTo: ['boss@example.com', 'dana', 'nomail', 'erin@example.com'] },
    errors: [],
  });
});
afterAll(async () => {
  await t?.close();
});

const RULE = `mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { rule { escalateAfterMinutes escalateTo } errors { code field message } } }`;
const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status createdAt } errors { code message } } }`;

let n = 0;
async function createPending(): Promise<{ id: string; createdAt: number }> {
  n += 1;
  const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'create_document', payload: { title: `Plan ${n}`, content: 'x' } } })).createAction;
  expect(out.errors).toEqual([]);
  expect(out.action.status).toBe('PENDING');
  return { id: out.action.id, createdAt: new Date(out.action.createdAt).getTime() };
}

async function auditEvents(actionId: string) {
  return t.app.db.auditEntry.findMany({ where: { actionId }, orderBy: { chainSeq: 'asc' }, select: { event: true, data: true, actor: true, createdAt: true } });
}

async function mailsAbout(title: string) {
  return (await readOutbox(t.app.config.outboxDir)).filter((m) => m.text.includes(title));
}

const ESCALATED_MESSAGE = `Asked boss@example.com and dana@example.com as well: no decision after ${AFTER_MINUTES} minutes (nomail: no email address known)`;

describe('escalation rule fields', () => {
  it('refuses escalation on a rule that does not wait for approval, out-of-range minutes, one field without the other, and entries that are neither an address nor a handle of the space, naming the field; nothing is saved', async () => {
    const refused = async (input: Record<string, unknown>) => (await graphqlData(t.url, admin, RULE, { input: { actionType: 'send_email', kind: 'REQUIRES_APPROVAL', ...input } })).upsertSafetyRule;
    expect(await refused({ kind: 'RATE_LIMIT', limit: 5, windowSeconds: 60, escalateAfterMinutes: 5, escalateTo: ['a@example.com'] })).toMatchObject({
      rule: null,
      errors: [{ code: 'INVALID_INPUT', field: ['input', 'escalateAfterMinutes'] }],
    });
    expect(await refused({ kind: 'BLOCKED', escalateTo: ['a@example.com'] })).toMatchObject({ errors: [{ code: 'INVALID_INPUT', field: ['input', 'escalateTo'] }] });
    expect(await refused({ escalateAfterMinutes: 0, escalateTo: ['a@example.com'] })).toMatchObject({ errors: [{ code: 'INVALID_INPUT', field: ['input', 'escalateAfterMinutes'] }] });
    expect(await refused({ escalateAfterMinutes: 10_081, escalateTo: ['a@example.com'] })).toMatchObject({ errors: [{ code: 'INVALID_INPUT', field: ['input', 'escalateAfterMinutes'] }] });
    expect(await refused({ escalateAfterMinutes: 5 })).toMatchObject({ errors: [{ code: 'INVALID_INPUT', field: ['input', 'escalateTo'] }] });
    expect(await refused({ escalateTo: ['a@example.com'] })).toMatchObject({ errors: [{ code: 'INVALID_INPUT', field: ['input', 'escalateAfterMinutes'] }] });
    expect(await refused({ escalateAfterMinutes: 5, escalateTo: ['a@example.com', 'not an address@'] })).toMatchObject({
      errors: [{ code: 'INVALID_INPUT', field: ['input', 'escalateTo', '1'] }],
    });
    const unknown = await refused({ escalateAfterMinutes: 5, escalateTo: ['a@example.com', 'dana', 'zed'] });
    expect(unknown).toMatchObject({ errors: [{ code: 'INVALID_INPUT', field: ['input', 'escalateTo', '2'] }] });
    expect(unknown.errors[0].message).toContain('"zed"');
    expect(await t.app.db.safetyRule.count({ where: { actionType: 'send_email', kind: 'REQUIRES_APPROVAL' } })).toBe(0);
  });
});

describe('escalation by a delayed job', () => {
  it('after the configured time, mails the people of escalateTo a link each (a handle at its user\'s address), with a status update and an approval.escalated audit entry; a link decides', async () => {
    const action = await createPending();
    const title = `Plan ${n}`;
    // At creation only the user is asked; the request records when and to whom it escalates.
    expect((await mailsAbout(title)).map((m) => m.to)).toEqual(['erin@example.com']);
    const requested = (await auditEvents(action.id)).find((e) => e.event === 'approval.requested')!;
    expect(requested.data).toMatchObject({ escalation: { afterMinutes: AFTER_MINUTES, to: ['boss@example.com', 'dana', 'nomail', 'erin@example.com'] } });

    const update = await waitFor(
      'the escalation',
      () => t.app.db.statusUpdate.findFirst({ where: { actionId: action.id, message: { startsWith: 'Asked' } } }),
      ESCALATES_AFTER_MS + 5000,
    );
    expect(update.createdAt.getTime() - action.createdAt).toBeGreaterThanOrEqual(ESCALATES_AFTER_MS);
    expect(update).toMatchObject({ status: 'PENDING', message: ESCALATED_MESSAGE });
    const escalated = (await auditEvents(action.id)).filter((e) => e.event === 'approval.escalated');
    expect(escalated).toEqual([
      expect.objectContaining({ actor: 'system', data: { afterMinutes: AFTER_MINUTES, to: ['boss@example.com', 'dana@example.com'], skipped: ['nomail'] } }),
    ]);

    // erin (the user, asked already) is not mailed again.
    const mails = await waitFor('the escalation mails', async () => {
      const all = await mailsAbout(title);
      return all.length === 3 ? all : null;
    }, 3000);
    expect(mails.map((m) => m.to).sort()).toEqual(['boss@example.com', 'dana@example.com', 'erin@example.com']);
    const boss = mails.find((m) => m.to === 'boss@example.com')!;
    expect(boss.text).toContain(`nobody has decided on this request in ${AFTER_MINUTES} minutes`);
    const tokens = await t.app.db.approvalToken.findMany({ where: { actionId: action.id }, select: { recipient: true } });
    expect(tokens.map((r) => r.recipient).sort()).toEqual(['boss@example.com', 'dana@example.com', 'erin@example.com']);

    // The boss's own link decides.
    const res = await fetch(`${t.url}/approvals/${approvalToken(boss)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'decision=approve',
    });
    expect(res.status).toBe(200);
    const decided = await t.app.db.action.findUniqueOrThrow({ where: { id: action.id } });
    expect(decided.status).not.toBe('PENDING');
    expect(decided.decidedBy).toMatch(/^email-link:/);
    const used = await t.app.db.approvalToken.findFirstOrThrow({ where: { id: decided.decidedBy!.slice('email-link:'.length) } });
    expect(used.recipient).toBe('boss@example.com');
  });

  it('asks nobody when the action is decided in time: the job fires and does nothing', async () => {
    const action = await createPending();
    const title = `Plan ${n}`;
    const approved = await graphqlData(t.url, approver, `mutation($id: ID!) { approveAction(id: $id) { action { status } errors { code } } }`, { id: action.id });
    expect(approved.approveAction.errors).toEqual([]);
    const job = await t.app.engine.approvalJobs!.queue.getJob(approvalJobId('escalate', action.id));
    expect(job).toBeDefined();
    await waitFor('the escalation job to run', async () => (await job!.getState()) === 'completed', ESCALATES_AFTER_MS + 5000);
    expect((await auditEvents(action.id)).map((e) => e.event)).not.toContain('approval.escalated');
    expect(await t.app.db.statusUpdate.count({ where: { actionId: action.id, message: { startsWith: 'Asked' } } })).toBe(0);
    expect((await mailsAbout(title)).map((m) => m.to)).toEqual(['erin@example.com']);
  });

  it('a repeated escalation does nothing twice: two runs at once, then the delayed job itself, make one escalation and one mail per person', async () => {
    const action = await createPending();
    const title = `Plan ${n}`;
    const data = { kind: 'escalate' as const, actionId: action.id, spaceId: (await t.app.db.action.findUniqueOrThrow({ where: { id: action.id } })).spaceId, afterMinutes: AFTER_MINUTES, to: ['boss@example.com', 'dana'] };
    const runs = await Promise.all([escalateAction(t.app.engine, data), escalateAction(t.app.engine, data)]);
    expect(runs.sort()).toEqual([false, true]);
    const job = await t.app.engine.approvalJobs!.queue.getJob(approvalJobId('escalate', action.id));
    await waitFor('the escalation job to run', async () => (await job!.getState()) === 'completed', ESCALATES_AFTER_MS + 5000);
    expect(await escalateAction(t.app.engine, data)).toBe(false);
    expect((await auditEvents(action.id)).filter((e) => e.event === 'approval.escalated')).toHaveLength(1);
    expect(await t.app.db.statusUpdate.count({ where: { actionId: action.id, message: { startsWith: 'Asked' } } })).toBe(1);
    expect(await t.app.db.approvalToken.count({ where: { actionId: action.id } })).toBe(3);
    expect((await mailsAbout(title)).map((m) => m.to).sort()).toEqual(['boss@example.com', 'dana@example.com', 'erin@example.com']);
  });

  it('jobs lost with Redis are re-created by the reconciler, and the escalation still happens', async () => {
    const action = await createPending();
    const queue = t.app.engine.approvalJobs!.queue;
    for (const kind of ['escalate', 'expire'] as const) await (await queue.getJob(approvalJobId(kind, action.id)))!.remove();
    expect(await queue.getJob(approvalJobId('escalate', action.id))).toBeUndefined();
    expect(await t.worker!.reconcileApprovals()).toBe(2);
    expect(await (await queue.getJob(approvalJobId('expire', action.id)))!.getState()).toBe('delayed');
    await waitFor('the escalation', () => t.app.db.statusUpdate.findFirst({ where: { actionId: action.id, message: ESCALATED_MESSAGE } }), ESCALATES_AFTER_MS + 5000);
    // Nothing is missing any more.
    expect(await t.worker!.reconcileApprovals()).toBe(0);
  });
});

describe('expiry by a delayed job', () => {
  it('an action past its approval window goes EXPIRED through its job, without the sweep, not before its deadline; its links are void', async () => {
    const action = await createPending();
    const row = await t.app.db.action.findUniqueOrThrow({ where: { id: action.id } });
    const deadline = row.approvalExpiresAt!.getTime();
    expect(deadline - action.createdAt).toBe(TTL_MS);
    await sleep(Math.max(0, deadline - Date.now() - 500));
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id: action.id } })).status).toBe('PENDING');
    const expired = await waitFor('the expiry', async () => {
      const r = await t.app.db.action.findUniqueOrThrow({ where: { id: action.id } });
      return r.status === 'EXPIRED' ? r : null;
    }, 5000);
    expect(expired.updatedAt.getTime()).toBeGreaterThanOrEqual(deadline);
    const last = await t.app.db.statusUpdate.findFirstOrThrow({ where: { actionId: action.id }, orderBy: { seq: 'desc' } });
    expect(last).toMatchObject({ status: 'EXPIRED', message: 'The approval window closed without a decision' });
    expect((await auditEvents(action.id)).filter((e) => e.event === 'action.expired')).toEqual([
      expect.objectContaining({ actor: 'system', data: { expiresAt: new Date(deadline).toISOString() } }),
    ]);
    expect(await t.app.db.approvalToken.count({ where: { actionId: action.id, voidedAt: null } })).toBe(0);
  });
});
