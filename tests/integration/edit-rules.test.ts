import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { commitStep, notMovedError, readActionScope } from '../../src/engine/lifecycle/index.js';
import { graphqlData } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// An approver's edit meets the rules in force as a new request would (spec §5: "validated like a
// new one"): conditions see the edited payload. Payments always wait for a person (quorum 1);
// here a rule asks 2 approvals above 1,000 and another blocks anything above 10,000.
let t: TestServer;
let agent: string;
let approvers: string[];

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' } });
  const admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'edit-rules' })).key;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'edit-rules', user: 'pat' })).key;
  approvers = [];
  for (let i = 0; i < 2; i++) approvers.push((await createApiKey(t.app.db, { role: 'APPROVER', space: 'edit-rules', user: 'pat' })).key);
  const rule = `mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { errors { code message } } }`;
  for (const input of [
    { actionType: 'make_payment', kind: 'BLOCKED', condition: 'payload.amount > 10000.0' },
    { actionType: 'make_payment', kind: 'REQUIRES_APPROVAL', condition: 'payload.amount > 1000.0', approvalsRequired: 2 },
    // pat's KYC status is not verified: a payment in dollars is refused for that.
    { actionType: 'make_payment', kind: 'REQUIRES_KYC', condition: 'payload.currency == "USD"' },
  ]) {
    expect((await graphqlData(t.url, admin, rule, { input })).upsertSafetyRule.errors).toEqual([]);
  }
});
afterAll(async () => {
  await t?.close();
});


const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status approvalsRequired } errors { code message } } }`;
const APPROVE = `mutation($id: ID!, $payload: JSON, $revision: Int) { approveAction(id: $id, payload: $payload, revision: $revision) {
  action { id status revision approvalsRequired payload } errors { code message field } } }`;
const payment = (amount: number) => ({ amount, currency: 'EUR', recipient: 'ACME Ltd' });

async function pendingPayment(amount: number): Promise<string> {
  const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'make_payment', payload: payment(amount) } })).createAction;
  expect(out.errors).toEqual([]);
  expect(out.action).toMatchObject({ status: 'PENDING', approvalsRequired: 1 });
  return out.action.id;
}

describe('an approver\'s edit meets the rules in force', () => {
  it('an edit the rules would block is refused with BLOCKED naming the payload, and nothing changes', async () => {
    const id = await pendingPayment(50);
    const before = await t.app.db.action.findUniqueOrThrow({ where: { id } });
    const refused = (await graphqlData(t.url, approvers[0]!, APPROVE, { id, payload: payment(20_000) })).approveAction;
    expect(refused.action).toBeNull();
    expect(refused.errors).toEqual([
      { code: 'BLOCKED', field: ['payload'], message: expect.stringMatching(/^the edited payload is refused: make_payment actions are blocked by a safety rule; nothing was changed$/) },
    ]);
    const after = await t.app.db.action.findUniqueOrThrow({ where: { id } });
    expect(after).toMatchObject({ status: 'PENDING', revision: 1, payload: payment(50), statusSeq: before.statusSeq, auditSeq: before.auditSeq });
    expect(await t.app.db.actionRevision.count({ where: { actionId: id } })).toBe(0);
    expect(await t.app.db.approvalDecision.count({ where: { actionId: id } })).toBe(0);
  });

  it('an edit that a rule asks more approvals of raises the quorum: the editor counts once, a second approver runs it', async () => {
    const id = await pendingPayment(50);
    const edited = (await graphqlData(t.url, approvers[0]!, APPROVE, { id, payload: payment(5_000) })).approveAction;
    expect(edited.errors).toEqual([]);
    expect(edited.action).toMatchObject({ status: 'PENDING', revision: 2, approvalsRequired: 2, payload: payment(5_000) });
    const messages = (await t.app.db.statusUpdate.findMany({ where: { actionId: id }, orderBy: { seq: 'asc' } })).map((u) => u.message);
    expect(messages).toContain('The safety rules ask 2 approvals of the edited payload');
    expect(messages).toContain('Approval 1 of 2 recorded for revision 2; waiting for 1 more approver');
    const revised = await t.app.db.auditEntry.findFirstOrThrow({ where: { actionId: id, event: 'action.revised' } });
    expect(revised.data).toMatchObject({ revision: 2, approvalsRequired: 2 });

    const second = (await graphqlData(t.url, approvers[1]!, APPROVE, { id })).approveAction;
    expect(second.errors).toEqual([]);
    expect(second.action).toMatchObject({ status: 'APPROVED', revision: 2, approvalsRequired: 2 });
  });

  it('an edit that needs fewer approvals than the action asks does not lower its quorum', async () => {
    const id = (await graphqlData(t.url, agent, CREATE, { input: { type: 'make_payment', payload: payment(2_000) } })).createAction.action.id;
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).approvalsRequired).toBe(2);
    const edited = (await graphqlData(t.url, approvers[0]!, APPROVE, { id, payload: payment(20) })).approveAction;
    expect(edited.errors).toEqual([]);
    expect(edited.action).toMatchObject({ status: 'PENDING', revision: 2, approvalsRequired: 2 });
  });

  it('an edit the rules refuse for KYC is refused with KYC_REQUIRED naming the payload', async () => {
    const id = await pendingPayment(50);
    const refused = (await graphqlData(t.url, approvers[0]!, APPROVE, { id, payload: { ...payment(50), currency: 'USD' } })).approveAction;
    expect(refused.action).toBeNull();
    expect(refused.errors).toEqual([{ code: 'KYC_REQUIRED', field: ['payload'], message: "the edited payload is refused: make_payment needs a verified KYC status; the user's is NONE; nothing was changed" }]);
    expect(await t.app.db.action.findUniqueOrThrow({ where: { id } })).toMatchObject({ status: 'PENDING', revision: 1 });
  });

  it('an approval of the revision reviewed is refused once another approver has edited it (and raised its quorum)', async () => {
    const id = await pendingPayment(50);
    const scope = await readActionScope(t.app.engine, id);
    expect((await graphqlData(t.url, approvers[0]!, APPROVE, { id, payload: payment(5_000) })).approveAction.errors).toEqual([]);
    // Over the API, naming the revision reviewed.
    const stale = (await graphqlData(t.url, approvers[1]!, APPROVE, { id, revision: 1 })).approveAction;
    expect(stale.action).toBeNull();
    expect(stale.errors).toEqual([
      { code: 'INVALID_TRANSITION', field: null, message: 'cannot approve revision 1: an approver edited the action meanwhile and it is at revision 2 now; review revision 2 and decide again' },
    ]);
    // The one-statement approval of a request that read the action before the edit: its statement checks the revision.
    const principal = await t.app.db.principal.findFirstOrThrow({ where: { role: 'APPROVER', space: { slug: 'edit-rules' } }, orderBy: { createdAt: 'desc' } });
    const raced = await commitStep(t.app.engine, scope!, { kind: 'decide', decision: 'approve', text: null, actor: { id: principal.id }, graceUntil: null, revision: scope!.revision });
    expect(raced.action).toBeNull();
    expect(notMovedError(raced.plan, raced.previous).message).toBe(
      'cannot move the action to APPROVED: an approver edited it meanwhile (a new revision); review the new revision and decide again',
    );
    expect(await t.app.db.action.findUniqueOrThrow({ where: { id } })).toMatchObject({ status: 'PENDING', revision: 2, approvalsRequired: 2 });
    expect(await t.app.db.approvalDecision.count({ where: { actionId: id } })).toBe(1);
    // Reviewing revision 2, the second approver's approval completes the quorum.
    const fresh = (await graphqlData(t.url, approvers[1]!, APPROVE, { id, revision: 2 })).approveAction;
    expect(fresh.errors).toEqual([]);
    expect(fresh.action).toMatchObject({ status: 'APPROVED', revision: 2 });
  });

  it('an edit of an action that is no longer PENDING answers INVALID_TRANSITION, whatever the rules say of the payload', async () => {
    const id = await pendingPayment(50);
    expect((await graphqlData(t.url, approvers[0]!, APPROVE, { id })).approveAction.action.status).toBe('APPROVED');
    const late = (await graphqlData(t.url, approvers[1]!, APPROVE, { id, payload: payment(20_000) })).approveAction;
    expect(late.errors).toEqual([{ code: 'INVALID_TRANSITION', field: null, message: 'cannot approve: the action is APPROVED, not PENDING' }]);
  });
});
