import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { inspectApprovalLink } from '../../src/engine/approvals.js';
import { approvalToken, readOutbox } from '../helpers/outbox.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData, postGraphql } from '../helpers/http.js';
import { waitForActionStatus } from '../helpers/wait.js';

let t: TestServer;
let admin: string;
let agent: string;
const approvers: string[] = [];

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' }, worker: true });
  admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'edits' })).key;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'edits', user: 'ed', email: 'ed@example.com' })).key;
  for (let i = 0; i < 5; i++) approvers.push((await createApiKey(t.app.db, { role: 'APPROVER', space: 'edits', user: 'ed' })).key);
  const rule = `mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { errors { code message } } }`;
  expect((await graphqlData(t.url, admin, rule, { input: { actionType: 'send_email', kind: 'REQUIRES_APPROVAL' } })).upsertSafetyRule.errors).toEqual([]);
  expect((await graphqlData(t.url, admin, rule, { input: { actionType: 'order', kind: 'REQUIRES_APPROVAL', approvalsRequired: 3 } })).upsertSafetyRule.errors).toEqual([]);
});
afterAll(async () => {
  await t?.close();
});
const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status approvalsRequired } errors { code message } } }`;
const APPROVE = `mutation($id: ID!, $payload: JSON, $comment: String) { approveAction(id: $id, payload: $payload, comment: $comment) {
  action { id status revision payload } errors { code message field } } }`;
const REJECT = `mutation($id: ID!) { rejectAction(id: $id, reason: "no") { action { status } errors { code } } }`;

describe('approve with edits', () => {
  it('an approver edits the subject: revision 2 runs, revision 1 is kept, the audit has the diff, the agent sees the edit, the old link is void', async () => {
    const email = { to: ['bob@example.com'], subject: 'Hi', body: 'See you' };
    const created = (await graphqlData(t.url, agent, CREATE, { input: { type: 'send_email', payload: email } })).createAction;
    expect(created.action.status).toBe('PENDING');
    const link = approvalToken((await readOutbox(t.app.config.outboxDir)).find((m) => m.text.includes(created.action.id))!);
    expect((await inspectApprovalLink(t.app.engine, link)).state).toBe('valid');

    // A wrong edit names the field and changes nothing.
    const wrong = (await graphqlData(t.url, approvers[0]!, APPROVE, { id: created.action.id, payload: { ...email, to: ['not an address'] } })).approveAction;
    expect(wrong.action).toBeNull();
    expect(wrong.errors[0]).toMatchObject({ code: 'INVALID_PAYLOAD', field: ['payload', 'to', '0'] });
    expect(await t.app.db.action.findUniqueOrThrow({ where: { id: created.action.id } })).toMatchObject({ status: 'PENDING', revision: 1, payload: email });

    const approved = (await graphqlData(t.url, approvers[0]!, APPROVE, { id: created.action.id, payload: { ...email, subject: 'Hello' }, comment: 'friendlier' })).approveAction;
    expect(approved.errors).toEqual([]);
    expect(approved.action).toMatchObject({ status: 'APPROVED', revision: 2, payload: { ...email, subject: 'Hello' } });

    const done = await waitForActionStatus(t.app.db, created.action.id, ['COMPLETED', 'FAILED']);
    expect(done.status).toBe('COMPLETED');
    const sent = (await readOutbox(t.app.config.outboxDir)).filter((m) => m.to.includes('bob@example.com'));
    expect(sent.map((m) => m.subject)).toEqual(['Hello']);

    const view = (await graphqlData(
      t.url,
      agent,
      `query($id: ID!) { action(id: $id) { revision revisions { revision payload author diff } decisions { decision revision }
      statusUpdates { status message } } }`,
      { id: created.action.id },
    )).action;
    expect(view.revisions.map((r: any) => [r.revision, r.payload.subject])).toEqual([[1, 'Hi'], [2, 'Hello']]);
    expect(view.revisions[1].diff).toEqual([{ path: 'subject', from: 'Hi', to: 'Hello' }]);
    expect(view.decisions).toEqual([{ decision: 'approve', revision: 2 }]);
    expect(view.statusUpdates.map((u: any) => u.message)).toContain('Edited before approval (revision 2): subject: "Hi" → "Hello"');

    const revised = await t.app.db.auditEntry.findFirstOrThrow({ where: { actionId: created.action.id, event: 'action.revised' } });
    expect((revised.data as any).diff).toEqual([{ path: 'subject', from: 'Hi', to: 'Hello' }]);
    expect((await inspectApprovalLink(t.app.engine, link)).state).not.toBe('valid');
  });
});

describe('quorum', () => {
  async function order() {
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'order', payload: { provider: 'cafe', items: [{ name: 'tea', price: 2, quantity: 1 }] } } })).createAction;
    expect(out.errors).toEqual([]);
    expect(out.action).toMatchObject({ status: 'PENDING', approvalsRequired: 3 });
    return out.action.id as string;
  }

  it('needs 3 distinct approvers; the same approver twice counts once; the third approval runs it', async () => {
    const id = await order();
    expect((await graphqlData(t.url, approvers[0]!, APPROVE, { id })).approveAction.action.status).toBe('PENDING');
    expect((await graphqlData(t.url, approvers[0]!, APPROVE, { id })).approveAction.action.status).toBe('PENDING');
    expect((await graphqlData(t.url, approvers[1]!, APPROVE, { id })).approveAction.action.status).toBe('PENDING');
    expect(await t.app.db.approvalDecision.count({ where: { actionId: id } })).toBe(2);
    expect((await graphqlData(t.url, approvers[2]!, APPROVE, { id })).approveAction.action.status).toBe('APPROVED');
    const messages = (await t.app.db.statusUpdate.findMany({ where: { actionId: id }, orderBy: { seq: 'asc' } })).map((u) => u.message);
    expect(messages).toContain('Approval 1 of 3 recorded for revision 1; waiting for 2 more approvers');
    expect(messages).toContain('Approval 2 of 3 recorded for revision 1; waiting for 1 more approver');

    // No integration for the café: an operator (here the admin) completes it; the signed receipt binds all three approvals.
    let task = null;
    for (const until = Date.now() + 10_000; !task && Date.now() < until; await sleep(50)) task = await t.app.db.manualTask.findFirst({ where: { actionId: id, status: 'OPEN' } });
    const done = await graphqlData(t.url, admin, `mutation($id: ID!) { completeManualTask(id: $id, outcome: { reference: "Q-1" }) { errors { code message } } }`, { id: task!.id });
    expect(done.completeManualTask.errors).toEqual([]);
    const receipt = await t.app.db.receipt.findFirstOrThrow({ where: { actionId: id } });
    const bound = (JSON.parse(receipt.statement!) as { approvals: Array<{ decidedBy: string }> }).approvals;
    const decided = await t.app.db.approvalDecision.findMany({ where: { actionId: id }, orderBy: { createdAt: 'asc' } });
    expect(bound.map((a) => a.decidedBy)).toEqual(decided.map((d) => d.approver));
    expect(bound).toHaveLength(3);
  });

  it('an edit while approvals are still needed starts the count again and asks the user again, the mail and page showing the revision, the change and the count', async () => {
    const id = await order();
    const before = (await readOutbox(t.app.config.outboxDir)).filter((m) => m.text.includes(id));
    const firstLink = approvalToken(before[0]!);
    const page1 = await (await fetch(`${t.url}/approvals/${firstLink}`)).text();
    expect(page1).toContain('3 different approvers needed; 0 so far for this revision');
    await graphqlData(t.url, approvers[0]!, APPROVE, { id });

    const edited = (await graphqlData(t.url, approvers[1]!, APPROVE, { id, payload: { provider: 'cafe', items: [{ name: 'coffee', price: 2, quantity: 1 }] } })).approveAction;
    expect(edited.errors).toEqual([]);
    expect(edited.action).toMatchObject({ status: 'PENDING', revision: 2 });
    // Only the editor's approval counts for revision 2.
    expect(await t.app.db.approvalDecision.count({ where: { actionId: id, revision: 2 } })).toBe(1);
    const after = (await readOutbox(t.app.config.outboxDir)).filter((m) => m.text.includes(id));
    expect(after.length).toBe(before.length + 1);
    const mail = after.at(-1)!;
    // (The test's outbox reader decodes quoted-printable bytes one by one, so the arrow is not compared.)
    expect(mail.text).toMatch(/Revision: 2, edited by an approver: items\.0\.name: "tea" \S+ "coffee"/);
    expect(mail.text).toContain('3 different approvers needed; 1 so far for this revision');
    expect((await inspectApprovalLink(t.app.engine, firstLink)).state).not.toBe('valid');
    const page2 = await (await fetch(`${t.url}/approvals/${approvalToken(mail)}`)).text();
    expect(page2).toContain('items.0.name: &quot;tea&quot; → &quot;coffee&quot;');
  });

  it('one rejection rejects', async () => {
    const id = await order();
    await graphqlData(t.url, approvers[0]!, APPROVE, { id });
    expect((await graphqlData(t.url, approvers[1]!, REJECT, { id })).rejectAction).toEqual({ action: { status: 'REJECTED' }, errors: [] });
  });

  it('50 racing decisions end in one consistent outcome', async () => {
    const id = await order();
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => postGraphql(t.url, approvers[i % 5]!, APPROVE, { id }).then((r) => r.body)));
    expect(results.every((r) => r.errors === undefined)).toBe(true);
    const row = await t.app.db.action.findUniqueOrThrow({ where: { id } });
    expect(row.status).not.toBe('PENDING');
    const decisions = await t.app.db.approvalDecision.findMany({ where: { actionId: id } });
    expect(new Set(decisions.map((d) => d.approver)).size).toBe(decisions.length);
    expect(decisions.length).toBe(3);
    expect(await t.app.db.auditEntry.count({ where: { actionId: id, event: 'action.approved' } })).toBe(1);
    expect(await t.app.db.auditEntry.count({ where: { actionId: id, event: 'approval.recorded' } })).toBe(2);
    const winners = results.filter((r) => r.data?.approveAction?.action?.status === 'APPROVED' || r.data?.approveAction?.action?.status === 'EXECUTING');
    expect(winners.length).toBeGreaterThanOrEqual(1);
    const refusals = results.flatMap((r) => r.data?.approveAction?.errors ?? []);
    expect(refusals.every((e: any) => e.code === 'INVALID_TRANSITION')).toBe(true);
  });
});
