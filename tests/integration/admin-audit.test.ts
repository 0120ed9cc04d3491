import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { runCli } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData } from '../helpers/http.js';

/** The user-agent the audit entries are expected to record. */
const asTest = { headers: { 'user-agent': 'admin-audit-test' } };

let t: TestServer;
let admin: string;
let adminPrincipal: string;
let analyst: string;

beforeAll(async () => {
  t = await startTestServer();
  const a = await createApiKey(t.app.db, { role: 'ADMIN', space: 'audited' });
  admin = a.key;
  adminPrincipal = a.principalId;
  analyst = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'audited' })).key;
});
afterAll(async () => {
  await t?.close();
});

/** Admin entries of the space, read back as an analyst would through `auditLog`. */
async function entries(event: string) {
  const data = await graphqlData(
    t.url,
    analyst,
    `query($filter: AuditFilter) { auditLog(filter: $filter, first: 100) { edges { node { event actor userAgent data } } } }`,
    { filter: { event: [event] } },
    asTest,
  );
  return data.auditLog.edges.map((e: any) => e.node) as Array<{ event: string; actor: string; userAgent: string | null; data: any }>;
}

const UPSERT_RULE = `mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { rule { ruleKey enabled limit } errors { code message } } }`;

describe('admin changes are audited with before and after', () => {
  it('upsertSafetyRule: before is null for a new rule, then the rule as it was', async () => {
    const input = { actionType: 'send_email', kind: 'RATE_LIMIT', limit: 10, windowSeconds: 60, description: 'ten a minute' };
    expect((await graphqlData(t.url, admin, UPSERT_RULE, { input }, asTest)).upsertSafetyRule.errors).toEqual([]);
    expect((await graphqlData(t.url, admin, UPSERT_RULE, { input: { ...input, limit: 3, enabled: false } }, asTest)).upsertSafetyRule.errors).toEqual([]);

    const [created, changed] = await entries('safety_rule.upserted');
    expect(created).toMatchObject({ actor: adminPrincipal, userAgent: 'admin-audit-test' });
    expect(created!.data.before).toBeNull();
    expect(created!.data.after).toEqual({ limit: 10, windowSeconds: 60, enabled: true, description: 'ten a minute', condition: null, graceSeconds: null, approvalsRequired: null, escalateAfterMinutes: null, escalateTo: [] });
    expect(changed!.data.before).toEqual({ limit: 10, windowSeconds: 60, enabled: true, description: 'ten a minute', condition: null, graceSeconds: null, approvalsRequired: null, escalateAfterMinutes: null, escalateTo: [] });
    expect(changed!.data.after).toEqual({ limit: 3, windowSeconds: 60, enabled: false, description: 'ten a minute', condition: null, graceSeconds: null, approvalsRequired: null, escalateAfterMinutes: null, escalateTo: [] });
  });

  it('setKycStatus: the status before and after', async () => {
    const { userId } = await createApiKey(t.app.db, { role: 'AGENT', space: 'audited', user: 'kim' });
    const set = `mutation($id: ID!, $s: KycStatus!) { setKycStatus(userId: $id, status: $s) { user { kycStatus } errors { code } } }`;
    await graphqlData(t.url, admin, set, { id: userId, s: 'PENDING' }, asTest);
    await graphqlData(t.url, admin, set, { id: userId, s: 'VERIFIED' }, asTest);
    const kyc = (await entries('user.kyc_changed')).map((e) => e.data);
    expect(kyc).toEqual([
      expect.objectContaining({ userId, before: 'NONE', after: 'PENDING' }),
      expect.objectContaining({ userId, before: 'PENDING', after: 'VERIFIED' }),
    ]);
  });

  it("createApiKey replacing a user's approval email, by mutation and by `keys create`, records user.email_changed", async () => {
    const create = `mutation($input: ApiKeyInput!) { createApiKey(input: $input) { userId errors { code message } } }`;
    const first = (await graphqlData(t.url, admin, create, { input: { role: 'APPROVER', userHandle: 'lee', email: 'lee@example.com' } }, asTest)).createApiKey;
    expect(first.errors).toEqual([]);
    // Same address again: nothing changes, nothing to audit.
    await graphqlData(t.url, admin, create, { input: { role: 'AGENT', userHandle: 'lee', email: 'lee@example.com' } }, asTest);
    expect(await entries('user.email_changed')).toEqual([]);

    await graphqlData(t.url, admin, create, { input: { role: 'AGENT', userHandle: 'lee', email: 'attacker@evil.test' } }, asTest);
    const cli = await runCli(['keys', 'create', '--role', 'agent', '--space', 'audited', '--user', 'lee', '--email', 'lee@new.example.com'], {
      DATA_DIR: t.app.config.dataDir,
      DATABASE_URL: t.app.config.databaseUrl!,
      REDIS_URL: t.app.config.redisUrl,
      REDIS_PREFIX: t.app.config.redisPrefix,
      REDIS_AUTOSTART: 'false',
      LOG_LEVEL: 'silent',
    });
    expect(cli.code, cli.stderr).toBe(0);

    const changes = await entries('user.email_changed');
    expect(changes).toEqual([
      { event: 'user.email_changed', actor: adminPrincipal, userAgent: 'admin-audit-test', data: { userId: first.userId, before: 'lee@example.com', after: 'attacker@evil.test' } },
      { event: 'user.email_changed', actor: 'system:cli', userAgent: null, data: { userId: first.userId, before: 'attacker@evil.test', after: 'lee@new.example.com' } },
    ]);
    // The key creations themselves carry who made them and from where.
    const created = (await entries('api_key.created')).filter((e) => e.actor === adminPrincipal);
    expect(created.length).toBeGreaterThanOrEqual(3);
    for (const entry of created) expect(entry.userAgent).toBe('admin-audit-test');
  });
});
