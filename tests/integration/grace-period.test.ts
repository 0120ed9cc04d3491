import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData } from '../helpers/http.js';

let t: TestServer;
let admin: string;
let agent: string;
let approver: string;

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600', GRACE_SECONDS: '1' }, worker: true });
  admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'grace' })).key;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'grace', user: 'gail', email: 'gail@example.com' })).key;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'grace', user: 'gail' })).key;
  // send_email's hourly limit, with a 2 s grace period on top of GRACE_SECONDS=1.
  const rule = await graphqlData(
    t.url,
    admin,
    `mutation { upsertSafetyRule(input: { actionType: "send_email", kind: RATE_LIMIT, limit: 50, windowSeconds: 3600, graceSeconds: 2 }) { rule { graceSeconds } errors { code } } }`,
    {},
  );
  expect(rule.upsertSafetyRule).toEqual({ rule: { graceSeconds: 2 }, errors: [] });
});
afterAll(async () => {
  await t?.close();
});
const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status scheduledFor statusUpdates { status message } } errors { code message } } }`;
const email = { to: ['bob@example.com'], subject: 'Hi', body: 'Hello' };

async function row(id: string) {
  return t.app.db.action.findUniqueOrThrow({ where: { id }, include: { executions: true } });
}

describe('grace period for types that cannot be undone', () => {
  it('an approved email waits, the status says until when, and cancelAction stops it before it is sent', async () => {
    const before = Date.now();
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'send_email', payload: email } })).createAction;
    expect(out.errors).toEqual([]);
    expect(out.action.status).toBe('APPROVED');
    const until = new Date(out.action.scheduledFor).getTime();
    expect(until - before).toBeGreaterThanOrEqual(1900);
    expect(until - before).toBeLessThan(4000);
    expect(out.action.statusUpdates.at(-1)).toEqual({ status: 'APPROVED', message: `Grace period: runs at ${new Date(until).toISOString()} unless cancelled before then` });

    const cancelled = await graphqlData(t.url, agent, `mutation($id: ID!) { cancelAction(id: $id, reason: "wrong person") { action { status } errors { code } } }`, { id: out.action.id });
    expect(cancelled.cancelAction).toEqual({ action: { status: 'CANCELLED' }, errors: [] });
    await sleep(until - Date.now() + 1000);
    const after = await row(out.action.id);
    expect(after.status).toBe('CANCELLED');
    expect(after.executions).toEqual([]);
  });

  it('left alone, it runs once the grace period is over, not before', async () => {
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'send_email', payload: email } })).createAction;
    const until = new Date(out.action.scheduledFor).getTime();
    await sleep(Math.max(0, until - Date.now() - 600));
    expect((await row(out.action.id)).status).toBe('APPROVED');
    for (const deadline = until + 8000; Date.now() < deadline; await sleep(50)) {
      const r = await row(out.action.id);
      // Claimed (EXECUTING) first; its first execution follows.
      if (r.executions.length > 0) {
        expect(r.status).not.toBe('APPROVED');
        expect(r.executions[0]!.startedAt.getTime()).toBeGreaterThanOrEqual(until);
        return;
      }
    }
    throw new Error('it never ran');
  });

  it('an approval by a person starts the grace period too (GRACE_SECONDS for a type without its own), orders included; documents do not wait', async () => {
    const kyc = `mutation($id: ID!) { setKycStatus(userId: $id, status: VERIFIED) { errors { code } } }`;
    const user = await t.app.db.user.findFirstOrThrow({ where: { handle: 'gail' } });
    await graphqlData(t.url, admin, kyc, { id: user.id });
    const purchase = { items: [{ name: 'Lamp', price: 20, quantity: 1 }], merchant: 'Lamp Shop', total: 20, currency: 'EUR' };
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'make_purchase', payload: purchase } })).createAction;
    expect(out.action.status).toBe('PENDING');
    const before = Date.now();
    const approved = await graphqlData(t.url, approver, `mutation($id: ID!) { approveAction(id: $id) { action { status scheduledFor statusUpdates { message } } errors { code } } }`, { id: out.action.id });
    expect(approved.approveAction.errors).toEqual([]);
    const until = new Date(approved.approveAction.action.scheduledFor).getTime();
    expect(until - before).toBeGreaterThanOrEqual(900);
    expect(until - before).toBeLessThan(3000);
    expect(approved.approveAction.action.statusUpdates.at(-1).message).toMatch(/^Grace period: runs at .* unless cancelled before then$/);

    const doc = (await graphqlData(t.url, agent, CREATE, { input: { type: 'create_document', payload: { title: 'Now', content: 'x' } } })).createAction;
    expect(doc.action.scheduledFor).toBeNull();

    // An order can be cancelled with the provider, but not always in time: it waits too (spec §5).
    const order = (await graphqlData(t.url, agent, CREATE, { input: { type: 'order', payload: { provider: 'cafe', items: [{ name: 'tea', price: 2, quantity: 1 }] } } })).createAction;
    expect(order.action.status).toBe('PENDING');
    const ordered = await graphqlData(t.url, approver, `mutation($id: ID!) { approveAction(id: $id) { action { status scheduledFor } errors { code } } }`, { id: order.action.id });
    expect(ordered.approveAction.action.status).toBe('APPROVED');
    expect(new Date(ordered.approveAction.action.scheduledFor).getTime()).toBeGreaterThan(Date.now());
  });
});
