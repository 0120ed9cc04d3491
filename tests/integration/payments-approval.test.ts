import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { makePayment } from '../../src/engine/action-types/make-payment.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { approvalToken, readOutbox } from '../helpers/outbox.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData, postGraphql } from '../helpers/http.js';
import { waitForActionStatus } from '../helpers/wait.js';

// A payment integration of the test's own, first in make_payment's chain: it counts what it pays.
const paid: string[] = [];
const paymentProbe = defineHandler({
  name: 'payment.test',
  kind: 'api',
  types: [makePayment],
  repeat: 'provider',
  async execute(ctx) {
    paid.push(ctx.action.id);
    return { status: 'completed', provider: 'test-bank', data: { paid: true } };
  },
});

let t: TestServer;
let admin: string;
let adminId: string;
let agent: string;
let approver: string;

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' }, app: { extraHandlers: [paymentProbe] }, worker: true });
  const a = await createApiKey(t.app.db, { role: 'ADMIN', space: 'pay' });
  admin = a.key;
  adminId = a.principalId;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'pay', user: 'pat', email: 'pat@example.com' })).key;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'pay', user: 'pat' })).key;
});
afterAll(async () => {
  await t?.close();
});

async function createPayment(amount: number) {
  const out = (
    await graphqlData(
      t.url,
      agent,
      `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } requiresApproval errors { code message } } }`,
      { input: { type: 'make_payment', payload: { amount, currency: 'EUR', recipient: 'ACME Ltd' } } },
    )
  ).createAction;
  expect(out.errors).toEqual([]);
  return out as { action: { id: string; status: string }; requiresApproval: boolean };
}

describe('payments never run without a person', () => {
  it('with the default block switched off and no approval rule, make_payment waits PENDING and runs only after an approver approves', async () => {
    const off = await graphqlData(
      t.url,
      admin,
      `mutation { upsertSafetyRule(input: { actionType: "make_payment", kind: BLOCKED, enabled: false }) { rule { enabled } errors { code } } }`,
      {},
    );
    expect(off.upsertSafetyRule).toEqual({ rule: { enabled: false }, errors: [] });
    const rules = await graphqlData(t.url, admin, `{ safetyRules(type: "make_payment") { kind enabled spaceId } }`, {});
    // The space's override switches the default block off, and no rule asks for approval.
    expect(rules.safetyRules).toContainEqual({ kind: 'BLOCKED', enabled: false, spaceId: expect.any(String) });
    expect(rules.safetyRules.filter((r: any) => r.kind === 'REQUIRES_APPROVAL')).toEqual([]);

    const created = await createPayment(25);
    expect(created).toMatchObject({ action: { status: 'PENDING' }, requiresApproval: true });
    const id = created.action.id;

    // Given time, the worker does nothing with it.
    await sleep(1000);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('PENDING');
    expect(paid).not.toContain(id);
    expect(await t.app.db.execution.count({ where: { actionId: id } })).toBe(0);

    const approved = await graphqlData(t.url, approver, `mutation($id: ID!) { approveAction(id: $id) { action { status } errors { code } } }`, { id });
    expect(approved.approveAction.errors).toEqual([]);
    await waitForActionStatus(t.app.db, id, ['COMPLETED'], 10_000);
    expect(paid.filter((p) => p === id)).toHaveLength(1);
  });

  it('runs after the user approves through the email link with its one-time code', async () => {
    const outbox = t.app.config.outboxDir;
    const before = (await readOutbox(outbox)).length;
    const id = (await createPayment(12)).action.id;
    const mails = (await readOutbox(outbox)).slice(before);
    const token = approvalToken(mails.find((m) => /\/approvals\//.test(m.text))!);
    const code = /^[ \t]+(\d{4} \d{4})[ \t]*\r?$/m.exec(mails.find((m) => !/\/approvals\//.test(m.text))!.text)![1]!.replace(/\D/g, '');
    const res = await fetch(`${t.url}/approvals/${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `decision=approve&code=${code}`,
    });
    expect(res.status).toBe(200);
    await waitForActionStatus(t.app.db, id, ['COMPLETED'], 10_000);
    expect(paid.filter((p) => p === id)).toHaveLength(1);
  });

  it('an APPROVED payment without a recorded approval by a person fails at dispatch with the reason, nothing executed', async () => {
    for (const decidedBy of ['system', adminId]) {
      const { action } = await createPayment(40);
      // As if something other than a person (a rule, a bug, a hand-edited row) had approved it.
      const forged = await t.app.db.action.update({ where: { id: action.id }, data: { status: 'APPROVED', decidedBy, decidedAt: new Date() } });
      await t.app.engine.queue.enqueue(forged);

      const failed = await waitForActionStatus(t.app.db, action.id, ['FAILED', 'COMPLETED', 'EXECUTING'], 10_000);
      expect(failed.status).toBe('FAILED');
      expect(failed.error).toMatch(/^Refused before execution: make_payment runs only after a person approves it.*nothing was executed$/);
      expect(paid).not.toContain(action.id);
      expect(await t.app.db.execution.count({ where: { actionId: action.id } })).toBe(0);
      const refused = await t.app.db.auditEntry.findMany({ where: { actionId: action.id, event: 'execution.refused' } });
      expect(refused).toHaveLength(1);
      expect(refused[0]!.data).toEqual({ reason: failed.error });
    }
  });
});

describe('payments and the approval-request limit', () => {
  it('with the block switched off, each payment request counts against APPROVAL_REQUESTS_PER_HOUR: the third of 2 is RATE_LIMITED and not recorded', async () => {
    const s = await startTestServer({ env: { APPROVAL_REQUESTS_PER_HOUR: '2' } });
    try {
      const adminKey = (await createApiKey(s.app.db, { role: 'ADMIN', space: 'pay-limit' })).key;
      const agentKey = (await createApiKey(s.app.db, { role: 'AGENT', space: 'pay-limit', user: 'quinn' })).key;
      const off = (await postGraphql(s.url, adminKey, `mutation { upsertSafetyRule(input: { actionType: "make_payment", kind: BLOCKED, enabled: false }) { errors { code } } }`, {})).body.data;
      expect(off.upsertSafetyRule.errors).toEqual([]);
      const results = [];
      for (let i = 0; i < 3; i += 1) {
        const out = (
          await postGraphql(
            s.url,
            agentKey,
            `mutation($input: CreateActionInput!) { createAction(input: $input) { action { status } errors { code retryAfterSeconds } } }`,
            { input: { type: 'make_payment', payload: { amount: 10 + i, currency: 'EUR', recipient: 'ACME Ltd' } } },
          )
        ).body.data;
        results.push(out.createAction);
      }
      expect(results.slice(0, 2).map((r) => r.action?.status)).toEqual(['PENDING', 'PENDING']);
      expect(results[2]).toMatchObject({ action: null, errors: [{ code: 'RATE_LIMITED', retryAfterSeconds: expect.any(Number) }] });
      expect(await s.app.db.action.count({ where: { type: 'make_payment' } })).toBe(2);
    } finally {
      await s.close();
    }
  });
});
