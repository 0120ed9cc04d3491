import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
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
  ]) {
    expect((await gql(rule, { input }, admin)).upsertSafetyRule.errors).toEqual([]);
  }
});
afterAll(async () => {
  await t?.close();
});

async function gql(query: string, variables: Record<string, unknown>, key: string) {
  const res = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown[] };
  expect(body.errors, JSON.stringify(body.errors)).toBeUndefined();
  return body.data;
}

const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status approvalsRequired } errors { code message } } }`;
const APPROVE = `mutation($id: ID!, $payload: JSON) { approveAction(id: $id, payload: $payload) {
  action { id status revision approvalsRequired payload } errors { code message field } } }`;
const payment = (amount: number) => ({ amount, currency: 'EUR', recipient: 'ACME Ltd' });

async function pendingPayment(amount: number): Promise<string> {
  const out = (await gql(CREATE, { input: { type: 'make_payment', payload: payment(amount) } }, agent)).createAction;
  expect(out.errors).toEqual([]);
  expect(out.action).toMatchObject({ status: 'PENDING', approvalsRequired: 1 });
  return out.action.id;
}

describe('an approver\'s edit meets the rules in force', () => {
  it('an edit the rules would block is refused with BLOCKED naming the payload, and nothing changes', async () => {
    const id = await pendingPayment(50);
    const before = await t.app.db.action.findUniqueOrThrow({ where: { id } });
    const refused = (await gql(APPROVE, { id, payload: payment(20_000) }, approvers[0]!)).approveAction;
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
    const edited = (await gql(APPROVE, { id, payload: payment(5_000) }, approvers[0]!)).approveAction;
    expect(edited.errors).toEqual([]);
    expect(edited.action).toMatchObject({ status: 'PENDING', revision: 2, approvalsRequired: 2, payload: payment(5_000) });
    const messages = (await t.app.db.statusUpdate.findMany({ where: { actionId: id }, orderBy: { seq: 'asc' } })).map((u) => u.message);
    expect(messages).toContain('The safety rules ask 2 approvals of the edited payload');
    expect(messages).toContain('Approval 1 of 2 recorded for revision 2; waiting for 1 more approver');
    const revised = await t.app.db.auditEntry.findFirstOrThrow({ where: { actionId: id, event: 'action.revised' } });
    expect(revised.data).toMatchObject({ revision: 2, approvalsRequired: 2 });

    const second = (await gql(APPROVE, { id }, approvers[1]!)).approveAction;
    expect(second.errors).toEqual([]);
    expect(second.action).toMatchObject({ status: 'APPROVED', revision: 2, approvalsRequired: 2 });
  });

  it('an edit that needs fewer approvals than the action asks does not lower its quorum', async () => {
    const id = (await gql(CREATE, { input: { type: 'make_payment', payload: payment(2_000) } }, agent)).createAction.action.id;
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).approvalsRequired).toBe(2);
    const edited = (await gql(APPROVE, { id, payload: payment(20) }, approvers[0]!)).approveAction;
    expect(edited.errors).toEqual([]);
    expect(edited.action).toMatchObject({ status: 'PENDING', revision: 2, approvalsRequired: 2 });
  });
});
