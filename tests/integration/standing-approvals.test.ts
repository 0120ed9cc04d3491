import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData, postGraphql } from '../helpers/http.js';

let t: TestServer;
let admin: string;
let agent: string;
let approver: string;
let otherApprover: string;
let userId: string;

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' } });
  admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'grant' })).key;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'grant', user: 'gus', email: 'gus@example.com' })).key;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'grant', user: 'gus' })).key;
  otherApprover = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'grant', user: 'hal' })).key;
  userId = (await t.app.db.user.findFirstOrThrow({ where: { handle: 'gus' } })).id;
});
afterAll(async () => {
  await t?.close();
});

const GRANT = `mutation($input: StandingApprovalInput!) { createStandingApproval(input: $input) {
  standingApproval { id type userId condition expiresAt createdBy active } errors { code message field } } }`;
const REVOKE = `mutation($id: ID!) { revokeStandingApproval(id: $id) { standingApproval { id active revokedAt } errors { code message field } } }`;
const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status statusUpdates { message } } requiresApproval errors { code message } } }`;
const inAnHour = () => new Date(Date.now() + 3600_000).toISOString();

async function order(items: number) {
  const payload = { provider: 'downtown-cafe', items: Array.from({ length: items }, (_, i) => ({ name: `item ${i}`, price: 3, quantity: 1 })) };
  const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'order', payload } })).createAction;
  expect(out.errors).toEqual([]);
  return out.action as { id: string; status: string; statusUpdates: Array<{ message: string }> };
}

describe('standing approvals', () => {
  it('an approver\'s grant approves matching orders at creation, the audit naming the grant; others still wait; revoking ends it', async () => {
    expect((await order(1)).status).toBe('PENDING');
    const granted = (await graphqlData(t.url, approver, GRANT, { input: { type: 'order', condition: 'size(payload.items) <= 2', expiresAt: inAnHour() } })).createStandingApproval;
    expect(granted.errors).toEqual([]);
    expect(granted.standingApproval).toMatchObject({ type: 'order', userId, condition: 'size(payload.items) <= 2', active: true });
    const grantId = granted.standingApproval.id as string;

    const small = await order(2);
    expect(small.status).toBe('APPROVED');
    expect(small.statusUpdates.map((u) => u.message)).toContain(`Approved in advance by standing approval ${grantId}`);
    const approved = await t.app.db.auditEntry.findFirstOrThrow({ where: { actionId: small.id, event: 'action.approved' } });
    expect(approved.data).toEqual({ comment: null, standingApproval: grantId });
    expect(approved.actor).toBe(granted.standingApproval.createdBy);
    expect((await order(3)).status).toBe('PENDING');

    const listed = (await graphqlData(t.url, agent, '{ standingApprovals { id active } }', {})).standingApprovals;
    expect(listed).toEqual([{ id: grantId, active: true }]);

    const revoked = (await graphqlData(t.url, approver, REVOKE, { id: grantId })).revokeStandingApproval;
    expect(revoked.errors).toEqual([]);
    expect(revoked.standingApproval.active).toBe(false);
    expect((await order(1)).status).toBe('PENDING');
    // Revoking again changes nothing (one audit entry).
    expect((await graphqlData(t.url, approver, REVOKE, { id: grantId })).revokeStandingApproval.errors).toEqual([]);
    const events = await t.app.db.auditEntry.findMany({ where: { event: { startsWith: 'standing_approval.' } }, orderBy: { id: 'asc' } });
    expect(events.map((e) => e.event)).toEqual(['standing_approval.created', 'standing_approval.revoked']);
    expect(events.every((e) => e.actionId === null && e.chain.startsWith('admin:'))).toBe(true);
  });

  it('ends at expiresAt', async () => {
    const granted = (await graphqlData(t.url, admin, GRANT, { input: { type: 'order', expiresAt: new Date(Date.now() + 1500).toISOString() } })).createStandingApproval;
    expect(granted.errors).toEqual([]);
    expect(granted.standingApproval.userId).toBeNull();
    expect((await order(1)).status).toBe('APPROVED');
    await sleep(1700);
    expect((await order(1)).status).toBe('PENDING');
  });

  it('never for a payment: refused when granted, and a grant written behind the API\'s back is ignored', async () => {
    const refused = (await graphqlData(t.url, admin, GRANT, { input: { type: 'make_payment', expiresAt: inAnHour() } })).createStandingApproval;
    expect(refused.standingApproval).toBeNull();
    expect(refused.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', field: ['input', 'type'] })]);
    await graphqlData(t.url, admin, `mutation { upsertSafetyRule(input: { actionType: "make_payment", kind: BLOCKED, enabled: false }) { errors { code } } }`, {});
    const space = await t.app.db.space.findUniqueOrThrow({ where: { slug: 'grant' } });
    await t.app.db.standingApproval.create({ data: { spaceId: space.id, actionType: 'make_payment', expiresAt: new Date(Date.now() + 3600_000), createdById: userId } });
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'make_payment', payload: { amount: 5, currency: 'EUR', recipient: 'ACME' } } })).createAction;
    expect(out.errors).toEqual([]);
    expect(out.action.status).toBe('PENDING');
  });

  it('only the user\'s approvers and admins may grant; bad input changes nothing', async () => {
    const before = await t.app.db.standingApproval.count();
    const byAgent = (await postGraphql(t.url, agent, GRANT, { input: { type: 'order', expiresAt: inAnHour() } })).body;
    expect(byAgent.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const forAnother = (await graphqlData(t.url, otherApprover, GRANT, { input: { type: 'order', userId, expiresAt: inAnHour() } })).createStandingApproval;
    expect(forAnother.errors[0].code).toBe('FORBIDDEN');
    const past = (await graphqlData(t.url, approver, GRANT, { input: { type: 'order', expiresAt: new Date(Date.now() - 1000).toISOString() } })).createStandingApproval;
    expect(past.errors[0]).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'expiresAt'] });
    const badCondition = (await graphqlData(t.url, approver, GRANT, { input: { type: 'order', condition: 'payload.items >', expiresAt: inAnHour() } })).createStandingApproval;
    expect(badCondition.errors[0]).toMatchObject({ code: 'INVALID_CONDITION', field: ['input', 'condition'] });
    const unknownType = (await graphqlData(t.url, approver, GRANT, { input: { type: 'teleport', expiresAt: inAnHour() } })).createStandingApproval;
    expect(unknownType.errors[0].code).toBe('UNKNOWN_TYPE');
    expect(await t.app.db.standingApproval.count()).toBe(before);
    const missing = (await graphqlData(t.url, approver, REVOKE, { id: '00000000-0000-4000-8000-000000000000' })).revokeStandingApproval;
    expect(missing.errors[0].code).toBe('NOT_FOUND');
    // A malformed id is the payload's NOT_FOUND (as for every mutation with a payload), not a GraphQL error.
    const malformed = (await postGraphql(t.url, approver, REVOKE, { id: 'nope' })).body;
    expect(malformed.errors).toBeUndefined();
    expect(malformed.data?.revokeStandingApproval?.errors?.[0]).toMatchObject({ code: 'NOT_FOUND', field: ['id'] });
  });
});
