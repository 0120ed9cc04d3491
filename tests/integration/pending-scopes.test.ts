import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { graphqlData } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { watchEngineStatements, type StatementWatch } from '../helpers/statements.js';

// A process remembers the PENDING actions it recorded, so their approval is one statement (no
// read first). The memory is only a hint: when another process of the same deployment has
// decided, cancelled or edited the action meanwhile, the answer is the one a fresh read gives.
let a: TestServer;
let b: TestServer;
let agent: string;
let approvers: string[];
let approverIds: string[];

let statements: StatementWatch;

beforeAll(async () => {
  statements = watchEngineStatements();
  a = await startTestServer({ env: { RECONCILE_SECONDS: '3600', EXPIRY_SWEEP_SECONDS: '3600' } });
  // Another API process of the same deployment: same database, same Redis prefix, its own memory.
  b = await startTestServer({ database: 'from-env', env: { DATABASE_URL: a.app.config.databaseUrl!, RECONCILE_SECONDS: '3600', EXPIRY_SWEEP_SECONDS: '3600' }, redisPrefix: a.app.config.redisPrefix });
  const admin = (await createApiKey(a.app.db, { role: 'ADMIN', space: 'scopes' })).key;
  agent = (await createApiKey(a.app.db, { role: 'AGENT', space: 'scopes', user: 'sam' })).key;
  approvers = [];
  approverIds = [];
  for (let i = 0; i < 2; i++) {
    const created = await createApiKey(a.app.db, { role: 'APPROVER', space: 'scopes', user: 'sam' });
    approvers.push(created.key);
    approverIds.push(created.principalId);
  }
  const rule = `mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { errors { code message } } }`;
  // Payments always wait for a person (one approval); above 1,000 a second approver is asked;
  // blocked (by default, all of them) only above 10,000.
  for (const input of [
    { actionType: 'make_payment', kind: 'BLOCKED', condition: 'payload.amount > 10000.0' },
    { actionType: 'make_payment', kind: 'REQUIRES_APPROVAL', condition: 'payload.amount > 1000.0', approvalsRequired: 2 },
  ]) {
    expect((await graphqlData(a.url, admin, rule, { input })).upsertSafetyRule.errors).toEqual([]);
  }
});
afterAll(async () => {
  statements?.stop();
  await b?.close();
  await a?.close();
});

const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message } } }`;
const APPROVE = `mutation($id: ID!, $payload: JSON, $revision: Int) { approveAction(id: $id, payload: $payload, revision: $revision) {
  action { id status revision approvalsRequired } errors { code message field } } }`;
const CANCEL = `mutation($id: ID!) { cancelAction(id: $id) { action { id status } errors { code message } } }`;
const payment = (amount: number) => ({ amount, currency: 'EUR', recipient: 'ACME Ltd' });

/** A PENDING payment recorded through API process A (which then remembers it). */
async function pendingOnA(): Promise<string> {
  const out = (await graphqlData(a.url, agent, CREATE, { input: { type: 'make_payment', payload: payment(50) } })).createAction;
  expect(out.errors).toEqual([]);
  expect(out.action.status).toBe('PENDING');
  expect(a.app.engine.pendingScopes?.get(out.action.id)).toMatchObject({ status: 'PENDING', revision: 1 });
  return out.action.id;
}

describe('PENDING actions a process recorded', () => {
  it('are approved there in one statement, with no read first, and forgotten once decided', async () => {
    const id = await pendingOnA();
    // The approver's key and the payment's safety rules (its grace period) are read once, then
    // cached: out of the count.
    await graphqlData(a.url, approvers[0]!, '{ __typename }');
    await a.app.engine.configCache.safetyRules(a.app.engine.pendingScopes!.get(id)!.spaceId, 'make_payment');
    statements.reset();
    const out = (await graphqlData(a.url, approvers[0]!, APPROVE, { id })).approveAction;
    expect(out.errors).toEqual([]);
    expect(out.action).toMatchObject({ status: 'APPROVED', revision: 1 });
    // The decision's statement only.
    expect(statements.count).toBe(1);
    expect(a.app.engine.pendingScopes?.get(id)).toBeNull();
  });

  it('are forgotten by a step here that moves them out of PENDING (a cancellation) and kept, updated, by one that does not (an edit)', async () => {
    const cancelled = await pendingOnA();
    expect((await graphqlData(a.url, agent, CANCEL, { id: cancelled })).cancelAction.errors).toEqual([]);
    expect(a.app.engine.pendingScopes?.get(cancelled)).toBeNull();

    const edited = await pendingOnA();
    const out = (await graphqlData(a.url, approvers[0]!, APPROVE, { id: edited, payload: payment(5_000) })).approveAction;
    expect(out.errors).toEqual([]);
    expect(out.action).toMatchObject({ status: 'PENDING', revision: 2, approvalsRequired: 2 });
    expect(a.app.engine.pendingScopes?.get(edited)).toMatchObject({ status: 'PENDING', revision: 2, approvalsRequired: 2 });
  });

  it('cancelled by another process meanwhile: the approval is refused naming both statuses, as from a fresh read', async () => {
    const id = await pendingOnA();
    const cancelled = (await graphqlData(b.url, agent, CANCEL, { id })).cancelAction;
    expect(cancelled.errors).toEqual([]);
    const out = (await graphqlData(a.url, approvers[0]!, APPROVE, { id })).approveAction;
    expect(out.action).toBeNull();
    expect(out.errors).toEqual([{ code: 'INVALID_TRANSITION', field: null, message: expect.stringMatching(/CANCELLED.*PENDING|PENDING.*CANCELLED/) }]);
    const row = await a.app.db.action.findUniqueOrThrow({ where: { id } });
    expect(row.status).toBe('CANCELLED');
    expect(await a.app.db.approvalDecision.count({ where: { actionId: id } })).toBe(0);
  });

  it('edited by an approver on another process (revision 2): an approval without a revision approves revision 2', async () => {
    const id = await pendingOnA();
    // An edit that leaves it PENDING: a second approver is now needed, which A does not know.
    const raised = (await graphqlData(b.url, approvers[1]!, APPROVE, { id, payload: payment(5_000) })).approveAction;
    expect(raised.errors).toEqual([]);
    expect(raised.action).toMatchObject({ status: 'PENDING', revision: 2, approvalsRequired: 2 });
    expect(a.app.engine.pendingScopes?.get(id)).toMatchObject({ revision: 1, approvalsRequired: 1 });
    const current = (await graphqlData(a.url, approvers[0]!, APPROVE, { id })).approveAction;
    expect(current.errors).toEqual([]);
    // The second approval of revision 2 (the editor's counted first): it runs.
    expect(current.action).toMatchObject({ status: 'APPROVED', revision: 2, approvalsRequired: 2 });
    const decisions = await a.app.db.approvalDecision.findMany({ where: { actionId: id }, orderBy: { createdAt: 'asc' } });
    expect(decisions.map((d) => d.revision)).toEqual([2, 2]);
  });

  it('edited by an approver on another process (revision 2): an approval of revision 1 is refused naming both revisions', async () => {
    const id = await pendingOnA();
    const edited = (await graphqlData(b.url, approvers[1]!, APPROVE, { id, payload: payment(60) })).approveAction;
    expect(edited.errors).toEqual([]);
    expect(edited.action).toMatchObject({ status: 'APPROVED', revision: 2 });
    // Another edit, still PENDING, for the refusal to be about the revision and not the status.
    const pending = await pendingOnA();
    expect((await graphqlData(b.url, approvers[1]!, APPROVE, { id: pending, payload: payment(5_000) })).approveAction.errors).toEqual([]);
    expect(a.app.engine.pendingScopes?.get(pending)).toMatchObject({ revision: 1 });
    const stale = (await graphqlData(a.url, approvers[0]!, APPROVE, { id: pending, revision: 1 })).approveAction;
    expect(stale.action).toBeNull();
    expect(stale.errors).toEqual([{ code: 'INVALID_TRANSITION', field: null, message: expect.stringMatching(/revision 1.*revision 2/) }]);
    // The editor's approval is recorded; the refused one is not.
    expect(await a.app.db.approvalDecision.count({ where: { actionId: pending, approver: approverIds[1]! } })).toBe(1);
    expect(await a.app.db.approvalDecision.count({ where: { actionId: pending, approver: approverIds[0]! } })).toBe(0);
  });

  it('are remembered per process: an approval on another process reads the action first, and the recording process, told nothing, answers from a fresh read', async () => {
    const id = await pendingOnA();
    expect(b.app.engine.pendingScopes?.get(id)).toBeNull();
    await graphqlData(b.url, approvers[0]!, '{ __typename }');
    await b.app.engine.configCache.safetyRules(a.app.engine.pendingScopes!.get(id)!.spaceId, 'make_payment');
    statements.reset();
    const out = (await graphqlData(b.url, approvers[0]!, APPROVE, { id })).approveAction;
    // The read of the action, then the decision's statement.
    expect(statements.count).toBe(2);
    expect(out.errors).toEqual([]);
    expect(out.action.status).toBe('APPROVED');
    // A still remembers it (it cannot know): its next decision finds it moved on and answers from a fresh read.
    const again = (await graphqlData(a.url, approvers[1]!, APPROVE, { id })).approveAction;
    expect(again.errors).toEqual([{ code: 'INVALID_TRANSITION', field: null, message: expect.stringMatching(/APPROVED/) }]);
    expect(a.app.engine.pendingScopes?.get(id)).toBeNull();
  });
});

