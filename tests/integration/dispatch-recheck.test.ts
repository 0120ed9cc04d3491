import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData } from '../helpers/http.js';

let t: TestServer;
let filesRoot: string;
let admin: string;
let agent: string;
let approver: string;
let userId: string;

beforeAll(async () => {
  filesRoot = await mkdtemp(path.join(tmpdir(), 'ae-recheck-'));
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600', FILES_ROOT: filesRoot }, worker: true });
  admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'recheck' })).key;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'recheck', user: 'rita', email: 'rita@example.com' })).key;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'recheck', user: 'rita' })).key;
  userId = (await t.app.db.user.findFirstOrThrow({ where: { handle: 'rita' } })).id;
});
afterAll(async () => {
  await t?.close();
  await rm(filesRoot, { recursive: true, force: true });
});
const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message } } }`;

async function settled(id: string) {
  for (const until = Date.now() + 15_000; Date.now() < until; await sleep(50)) {
    const row = await t.app.db.action.findUniqueOrThrow({ where: { id }, include: { executions: true, receipts: true } });
    if (row.status === 'COMPLETED' || row.status === 'FAILED') return row;
  }
  throw new Error(`action ${id} did not finish`);
}

describe('recheck at dispatch', () => {
  it('a rule that blocks the type after approval, before execution, stops the action with the reason and runs nothing', async () => {
    const scheduledFor = new Date(Date.now() + 2500).toISOString();
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'create_document', payload: { title: 'Plan', content: 'x' }, scheduledFor } })).createAction;
    expect(out.errors).toEqual([]);
    expect(out.action.status).toBe('APPROVED');
    const blocked = await graphqlData(t.url, admin, `mutation { upsertSafetyRule(input: { actionType: "create_document", kind: BLOCKED }) { errors { code } } }`, {});
    expect(blocked.upsertSafetyRule.errors).toEqual([]);

    const row = await settled(out.action.id);
    expect(row.status).toBe('FAILED');
    expect(row.error).toMatch(/^Refused before execution: create_document actions are blocked by a safety rule \(checked again right before it ran\); nothing was executed$/);
    expect(row.executions).toEqual([]);
    expect(row.receipts).toEqual([]);
    expect(await readdir(filesRoot)).toEqual([]);
    expect(await t.app.db.auditEntry.count({ where: { actionId: row.id, event: 'execution.refused' } })).toBe(1);
    await graphqlData(t.url, admin, `mutation { upsertSafetyRule(input: { actionType: "create_document", kind: BLOCKED, enabled: false }) { errors { code } } }`, {});
  });

  it('a KYC status withdrawn after approval stops a purchase at dispatch', async () => {
    const kyc = `mutation($id: ID!, $s: KycStatus!) { setKycStatus(userId: $id, status: $s) { errors { code } } }`;
    await graphqlData(t.url, admin, kyc, { id: userId, s: 'VERIFIED' });
    const purchase = { items: [{ name: 'Lamp', price: 20, quantity: 1 }], merchant: 'Lamp Shop', total: 20, currency: 'EUR' };
    const scheduledFor = new Date(Date.now() + 2500).toISOString();
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'make_purchase', payload: purchase, scheduledFor } })).createAction;
    expect(out.errors).toEqual([]);
    expect(out.action.status).toBe('PENDING');
    const approved = await graphqlData(t.url, approver, `mutation($id: ID!) { approveAction(id: $id) { action { status } errors { code } } }`, { id: out.action.id });
    expect(approved.approveAction).toEqual({ action: { status: 'APPROVED' }, errors: [] });
    await graphqlData(t.url, admin, kyc, { id: userId, s: 'REJECTED' });

    const row = await settled(out.action.id);
    expect(row.status).toBe('FAILED');
    expect(row.error).toMatch(/make_purchase needs a verified KYC status; the user's is REJECTED/);
    expect(row.executions).toEqual([]);
  });

  it('an action a standing approval approved does not run once the grant is revoked before dispatch', async () => {
    await graphqlData(t.url, admin, `mutation { upsertSafetyRule(input: { actionType: "send_email", kind: REQUIRES_APPROVAL }) { errors { code } } }`, {});
    const granted = (
      await graphqlData(
        t.url,
        approver,
        `mutation($input: StandingApprovalInput!) { createStandingApproval(input: $input) { standingApproval { id } errors { code } } }`,
        { input: { type: 'send_email', expiresAt: new Date(Date.now() + 3600_000).toISOString() } },
      )
    ).createStandingApproval;
    expect(granted.errors).toEqual([]);
    const scheduledFor = new Date(Date.now() + 2500).toISOString();
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'send_email', payload: { to: ['x@example.com'], subject: 'S', body: 'B' }, scheduledFor } })).createAction;
    expect(out.action.status).toBe('APPROVED');
    await graphqlData(t.url, approver, `mutation($id: ID!) { revokeStandingApproval(id: $id) { errors { code } } }`, { id: granted.standingApproval.id });

    const row = await settled(out.action.id);
    expect(row.status).toBe('FAILED');
    expect(row.error).toBe(`Refused before execution: the standing approval ${granted.standingApproval.id} that approved it was revoked before it ran; nothing was executed`);
    expect(row.executions).toEqual([]);
  });

  it('with nothing changed, a scheduled action runs', async () => {
    const scheduledFor = new Date(Date.now() + 500).toISOString();
    const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'create_document', payload: { title: 'Fine', content: 'y' }, scheduledFor } })).createAction;
    expect((await settled(out.action.id)).status).toBe('COMPLETED');
  });
});
