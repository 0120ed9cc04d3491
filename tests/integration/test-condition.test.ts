import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

let t: TestServer;
let admin: string;
let agent: string;
let cleoId: string;

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' } });
  admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'rules' })).key;
  const a = await createApiKey(t.app.db, { role: 'AGENT', space: 'rules', user: 'cleo', email: 'cleo@example.com' });
  agent = a.key;
  cleoId = a.userId!;
});
afterAll(async () => {
  await t?.close();
});

const TEST = `query($type: String!, $condition: String!, $payload: JSON!, $userId: ID) {
  testCondition(type: $type, condition: $condition, payload: $payload, userId: $userId) {
    matches evaluationError line column
    error { code message field }
    errors { code message field }
  }
}`;

interface ConditionTest {
  matches: boolean | null;
  evaluationError: string | null;
  line: number | null;
  column: number | null;
  error: { code: string; message: string; field: string[] | null } | null;
  errors: Array<{ code: string; message: string; field: string[] | null }>;
}

async function test(type: string, condition: string, payload: unknown, userId?: string, key = admin): Promise<ConditionTest> {
  const out = (await postGraphql(t.url, key, TEST, { type, condition, payload, ...(userId ? { userId } : {}) })).body;
  expect(out.errors, JSON.stringify(out.errors)).toBeUndefined();
  return out.data.testCondition as ConditionTest;
}

const BIG_LINE = 'payload.items.map(i, i.price * double(i.quantity)).exists(x, x > 100.0)';
const small = { provider: 'downtown-cafe', items: [{ name: 'Latte', price: 4.5, quantity: 2 }] };
const big = { provider: 'downtown-cafe', items: [{ name: 'Catering tray', price: 60, quantity: 2 }] };

describe('testCondition', () => {
  it('answers as the engine does at run time: a rule with the same condition applies to exactly the actions it says match', async () => {
    expect(await test('order', BIG_LINE, small)).toEqual({ matches: false, evaluationError: null, line: null, column: null, error: null, errors: [] });
    expect(await test('order', BIG_LINE, big)).toEqual({ matches: true, evaluationError: null, line: null, column: null, error: null, errors: [] });

    const rule = (await postGraphql(
      t.url,
      admin,
      `mutation($condition: String!) { upsertSafetyRule(input: { actionType: "order", kind: REQUIRES_APPROVAL, condition: $condition }) { errors { code } } }`,
      { condition: BIG_LINE },
    )).body;
    expect(rule.data.upsertSafetyRule.errors).toEqual([]);
    const create = async (payload: unknown) =>
      (await postGraphql(t.url, agent, `mutation($payload: JSON!) { createAction(input: { type: "order", payload: $payload }) { requiresApproval errors { code } } }`, { payload })).body.data.createAction;
    expect(await create(small)).toEqual({ requiresApproval: false, errors: [] });
    expect(await create(big)).toEqual({ requiresApproval: true, errors: [] });
  });

  it('binds the same variables as a rule at run time: the payload as validated (defaults applied), type, the user by handle or id, and now', async () => {
    // quantity defaults to 1 in the order schema: the condition sees the default.
    const noQuantity = { provider: 'downtown-cafe', items: [{ name: 'Latte', price: 4.5 }] };
    expect((await test('order', 'payload.items[0].quantity == 1.0', noQuantity)).matches).toBe(true);

    const userCondition = 'user.domain == "example.com" && user.handle == "cleo" && user.email == "cleo@example.com" && user.kycStatus == "NONE" && user.id != ""';
    expect((await test('order', userCondition, small, 'cleo')).matches).toBe(true);
    expect((await test('order', userCondition, small, cleoId)).matches).toBe(true);
    // Without a user: its fields are empty, as for a user the engine knows nothing about.
    expect((await test('order', 'user.domain == "" && user.id == "" && user.kycStatus == "NONE"', small)).matches).toBe(true);

    expect((await test('order', 'type == "order" && now > timestamp("2020-01-01T00:00:00Z") && now < timestamp("2100-01-01T00:00:00Z")', small)).matches).toBe(true);
    expect((await test('send_email', 'type == "order"', { to: ['bob@example.com'], subject: 'Hi', body: 'Hello' })).matches).toBe(false);
  });

  it('returns INVALID_CONDITION with line and column for a condition that does not compile or names an unknown variable', async () => {
    const syntax = await test('order', 'type == "order" &&\n  payload.items.size() >', small);
    expect(syntax.matches).toBeNull();
    expect(syntax.error).toMatchObject({ code: 'INVALID_CONDITION', field: ['condition'] });
    expect(syntax.error!.message).toMatch(/^condition: not a valid CEL expression: .*\(line 2, column \d+\)$/);
    expect(syntax.line).toBe(2);
    expect(syntax.column).toBeGreaterThan(1);
    expect(syntax.errors).toEqual([syntax.error]);

    const unknown = await test('order', 'request.amount > 1.0', small);
    expect(unknown.error).toMatchObject({ code: 'INVALID_CONDITION', field: ['condition'] });
    expect(unknown.error!.message).toMatch(/unknown variable "request": a condition may use payload, type, user, now \(line 1, column 1\)$/);
    expect([unknown.line, unknown.column]).toEqual([1, 1]);

    const empty = await test('order', '  ', small);
    expect(empty.error).toMatchObject({ code: 'INVALID_CONDITION', field: ['condition'], message: 'condition: the condition is empty' });
    expect([empty.line, empty.column]).toEqual([null, null]);
  });

  it('returns INVALID_PAYLOAD naming each field that does not fit the type\'s schema, together with a bad condition', async () => {
    const out = await test('order', BIG_LINE, { items: [{ name: 'Latte', price: 'cheap' }] });
    expect(out.matches).toBeNull();
    expect(out.errors.map((e) => [e.code, e.field])).toEqual(
      expect.arrayContaining([
        ['INVALID_PAYLOAD', ['payload', 'provider']],
        ['INVALID_PAYLOAD', ['payload', 'items', '0', 'price']],
      ]),
    );
    expect(out.errors.every((e) => e.code === 'INVALID_PAYLOAD')).toBe(true);
    expect(out.error).toEqual(out.errors[0]);
    expect(out.errors.find((e) => e.field?.join('.') === 'payload.items.0.price')!.message).toMatch(/^payload\.items\.0\.price: expected a number/);

    const both = await test('order', 'payload.items.size( > 1', { items: [] });
    expect(both.errors[0]!.code).toBe('INVALID_CONDITION');
    expect(both.errors.slice(1).map((e) => e.code)).toContain('INVALID_PAYLOAD');
  });

  it('returns UNKNOWN_TYPE for an unknown type, naming the known ones', async () => {
    const out = await test('teleport', 'true', {});
    expect(out.matches).toBeNull();
    expect(out.error).toMatchObject({ code: 'UNKNOWN_TYPE', field: ['type'] });
    expect(out.error!.message).toMatch(/^unknown action type "teleport"; known types: send_email, .*order/);
    expect(out.errors).toHaveLength(1);
  });

  it('says when a condition fails to evaluate on the payload: the rule would apply, and why', async () => {
    const missing = await test('order', 'payload.tip > 1.0', small);
    expect(missing.matches).toBe(true);
    expect(missing.error).toBeNull();
    expect(missing.evaluationError).toMatch(/tip/);
    const notBool = await test('order', 'payload.provider', small);
    expect(notBool.matches).toBe(true);
    expect(notBool.evaluationError).toBe('the condition gave a string, not true or false');
  });

  it('refuses a user not in the caller\'s space with NOT_FOUND naming userId', async () => {
    const other = await createApiKey(t.app.db, { role: 'AGENT', space: 'elsewhere', user: 'dora' });
    for (const userId of ['dora', other.userId!, 'no such user!']) {
      const out = await test('order', 'true', small, userId);
      expect(out.matches).toBeNull();
      expect(out.error).toMatchObject({ code: 'NOT_FOUND', field: ['userId'] });
      expect(out.errors).toHaveLength(1);
    }
  });

  it('is for admins only: agents, approvers, operators and analysts are refused with FORBIDDEN', async () => {
    const keys = [
      agent,
      (await createApiKey(t.app.db, { role: 'APPROVER', space: 'rules', user: 'cleo' })).key,
      (await createApiKey(t.app.db, { role: 'OPERATOR', space: 'rules' })).key,
      (await createApiKey(t.app.db, { role: 'ANALYST', space: 'rules' })).key,
    ];
    for (const key of keys) {
      const out = (await postGraphql(t.url, key, TEST, { type: 'order', condition: 'true', payload: small })).body;
      expect(out.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      expect(out.data).toBeNull();
    }
  });

  it('writes nothing: no action, rule, status update, audit entry or outbox message, whatever it is asked', async () => {
    const counts = () =>
      Promise.all([
        t.app.db.action.count(),
        t.app.db.safetyRule.count(),
        t.app.db.statusUpdate.count(),
        t.app.db.auditEntry.count(),
        t.app.db.outboxMessage.count(),
        t.app.db.user.count(),
      ]);
    const before = await counts();
    await test('order', BIG_LINE, big, 'cleo');
    await test('order', BIG_LINE, small);
    await test('order', 'payload.tip > 1.0', small);
    await test('order', 'nope >', { items: [] });
    await test('teleport', 'true', {});
    await test('order', 'true', small, 'nobody');
    expect(await counts()).toEqual(before);
  });
});
