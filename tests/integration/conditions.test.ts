import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineActionType } from '../../src/engine/action-types.js';
import { createApiKey } from '../../src/engine/api-keys.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData } from '../helpers/http.js';

// A spending type of the test's own (no default rules), so a rule's condition alone decides.
const spend = defineActionType({
  type: 'test_spend',
  description: 'test',
  payload: z.strictObject({ amount: z.number(), currency: z.string(), note: z.string().optional() }),
  reversible: false,
});
const spendHandler = defineHandler({
  name: 'test_spend.api',
  kind: 'api',
  types: [spend],
  repeat: 'provider',
  async execute() {
    return { status: 'completed', provider: 'test', data: {} };
  },
});

let t: TestServer;
let admin: string;
let agent: string;

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' }, app: { extraActionTypes: [spend], extraHandlers: [spendHandler] } });
  admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'cond' })).key;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'cond', user: 'cleo', email: 'cleo@example.com' })).key;
});
afterAll(async () => {
  await t?.close();
});

const UPSERT = `mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { rule { ruleKey condition enabled } errors { code message field } } }`;
const CREATE = `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status statusUpdates { message } } requiresApproval errors { code message } } }`;

async function create(payload: Record<string, unknown>) {
  const out = (await graphqlData(t.url, agent, CREATE, { input: { type: 'test_spend', payload } })).createAction;
  expect(out.errors).toEqual([]);
  return out as { action: { id: string; status: string; statusUpdates: Array<{ message: string }> }; requiresApproval: boolean };
}

describe('conditional safety rules (CEL)', () => {
  it('a rule with payload.amount > 100 requires approval for 150 and not for 50, and the audit keeps each outcome', async () => {
    const saved = (await graphqlData(t.url, admin, UPSERT, { input: { actionType: 'test_spend', kind: 'REQUIRES_APPROVAL', condition: 'payload.amount > 100' } })).upsertSafetyRule;
    expect(saved.errors).toEqual([]);
    expect(saved.rule.condition).toBe('payload.amount > 100');

    const big = await create({ amount: 150, currency: 'EUR' });
    expect(big.requiresApproval).toBe(true);
    expect(big.action.status).toBe('PENDING');
    const small = await create({ amount: 50, currency: 'EUR' });
    expect(small.requiresApproval).toBe(false);
    expect(small.action.status).toBe('APPROVED');

    const created = await t.app.db.auditEntry.findFirstOrThrow({ where: { actionId: big.action.id, event: 'action.created' } });
    expect((created.data as any).conditions).toEqual([{ rule: saved.rule.ruleKey, applies: true, error: null }]);
    const createdSmall = await t.app.db.auditEntry.findFirstOrThrow({ where: { actionId: small.action.id, event: 'action.created' } });
    expect((createdSmall.data as any).conditions).toEqual([{ rule: saved.rule.ruleKey, applies: false, error: null }]);
  });

  it('conditions see the user: a recipient outside the user\'s own domain needs approval', async () => {
    const saved = (
      await graphqlData(t.url, admin, UPSERT, { input: { actionType: 'test_spend', kind: 'REQUIRES_APPROVAL', condition: 'has(payload.note) && !payload.note.endsWith("@" + user.domain)' } })
    ).upsertSafetyRule;
    expect(saved.errors).toEqual([]);
    expect((await create({ amount: 1, currency: 'EUR', note: 'bob@example.com' })).action.status).toBe('APPROVED');
    expect((await create({ amount: 1, currency: 'EUR', note: 'eve@elsewhere.org' })).action.status).toBe('PENDING');
    expect((await create({ amount: 1, currency: 'EUR' })).action.status).toBe('APPROVED');
  });

  it('a condition that fails at run time applies the rule and the status says why', async () => {
    const saved = (await graphqlData(t.url, admin, UPSERT, { input: { actionType: 'test_spend', kind: 'REQUIRES_APPROVAL', condition: 'payload.limit > 10' } })).upsertSafetyRule;
    expect(saved.errors).toEqual([]);
    const out = await create({ amount: 5, currency: 'EUR' });
    expect(out.action.status).toBe('PENDING');
    expect(out.action.statusUpdates.map((u) => u.message).join('\n')).toMatch(/condition of rule .* could not be evaluated \(.*limit.*\); the rule applies/);
  });

  it('a condition that does not compile is refused with INVALID_CONDITION and its position, and nothing changes', async () => {
    const before = await t.app.db.safetyRule.findMany({ orderBy: { ruleKey: 'asc' } });
    const audits = await t.app.db.auditEntry.count();
    for (const [condition, where] of [
      ['payload.amount >', /line 1, column 16/],
      ['payload.amount > 100 &&\n  payload.currency = "EUR"', /line 2, column 20/],
      ['amout > 100', /unknown variable "amout"/],
    ] as const) {
      const out = (await graphqlData(t.url, admin, UPSERT, { input: { actionType: 'test_spend', kind: 'BLOCKED', condition } })).upsertSafetyRule;
      expect(out.rule).toBeNull();
      expect(out.errors).toHaveLength(1);
      expect(out.errors[0].code).toBe('INVALID_CONDITION');
      expect(out.errors[0].field).toEqual(['input', 'condition']);
      expect(out.errors[0].message).toMatch(where);
    }
    expect(await t.app.db.safetyRule.findMany({ orderBy: { ruleKey: 'asc' } })).toEqual(before);
    expect(await t.app.db.auditEntry.count()).toBe(audits);
  });

  it('a BLOCKED rule with a condition blocks only what matches', async () => {
    const saved = (await graphqlData(t.url, admin, UPSERT, { input: { actionType: 'test_spend', kind: 'BLOCKED', condition: 'payload.currency == "XAU"' } })).upsertSafetyRule;
    expect(saved.errors).toEqual([]);
    await graphqlData(t.url, admin, UPSERT, { input: { actionType: 'test_spend', kind: 'REQUIRES_APPROVAL', enabled: false } });
    const gold = (await graphqlData(t.url, agent, CREATE, { input: { type: 'test_spend', payload: { amount: 1, currency: 'XAU' } } })).createAction;
    expect(gold.errors[0].code).toBe('BLOCKED');
    expect((await create({ amount: 1, currency: 'EUR' })).action.status).toBe('APPROVED');
  });
});
