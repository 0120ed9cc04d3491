import { describe, expect, it } from 'vitest';
import { compileCondition, ConditionError, evaluateCondition } from '../../src/engine/conditions.js';

const subject = (payload: unknown, email: string | null = 'ada@example.com') => ({
  payload,
  type: 'send_email',
  user: { id: 'u1', handle: 'ada', email, kycStatus: 'VERIFIED' },
  now: new Date('2026-11-27T12:00:00Z'),
});

describe('safety rule conditions (CEL)', () => {
  it('compares JSON numbers with integer literals and reads nested payload fields', () => {
    expect(evaluateCondition('payload.amount > 100', subject({ amount: 150 }))).toEqual({ applies: true, error: null });
    expect(evaluateCondition('payload.amount > 100', subject({ amount: 50 }))).toEqual({ applies: false, error: null });
    expect(evaluateCondition('payload.items.exists(i, i.price * double(i.quantity) > 20.0)', subject({ items: [{ price: 7.5, quantity: 3 }] })).applies).toBe(true);
  });

  it('binds type, user (with the email\'s domain) and now', () => {
    expect(evaluateCondition('type == "send_email"', subject({})).applies).toBe(true);
    expect(evaluateCondition('payload.to.exists(r, !r.endsWith("@" + user.domain))', subject({ to: ['bob@example.com'] })).applies).toBe(false);
    expect(evaluateCondition('payload.to.exists(r, !r.endsWith("@" + user.domain))', subject({ to: ['bob@example.com', 'x@evil.test'] })).applies).toBe(true);
    expect(evaluateCondition('user.kycStatus == "VERIFIED" && user.handle == "ada"', subject({})).applies).toBe(true);
    expect(evaluateCondition('now > timestamp("2026-11-27T11:00:00Z") && now < timestamp("2026-11-27T13:00:00Z")', subject({})).applies).toBe(true);
    expect(evaluateCondition('user.domain == ""', subject({}, null)).applies).toBe(true);
  });

  it('a run-time failure or a non-bool result applies the rule and says why', () => {
    const missing = evaluateCondition('payload.amount > 100', subject({}));
    expect(missing.applies).toBe(true);
    expect(missing.error).toMatch(/amount/);
    const notBool = evaluateCondition('payload.amount', subject({ amount: 3 }));
    expect(notBool).toEqual({ applies: true, error: 'the condition gave the number 3, not true or false' });
    expect(evaluateCondition('1 / 0 == 1', subject({})).applies).toBe(true);
  });

  it('refuses what does not compile with its line and column, and unknown variables by name', () => {
    const at = (text: string) => {
      try {
        compileCondition(text);
      } catch (error) {
        expect(error).toBeInstanceOf(ConditionError);
        return error as ConditionError;
      }
      throw new Error(`compiled: ${text}`);
    };
    expect(at('payload.amount >')).toMatchObject({ line: 1, column: 16 });
    expect(at('payload.a > 1 &&\n payload.b = 2')).toMatchObject({ line: 2, column: 12 });
    expect(at('amout > 1').message).toMatch(/unknown variable "amout".*payload, type, user, now/);
    expect(at('payload.a > 1 &&\n  amout == 2')).toMatchObject({ line: 2, column: 3 });
    // Work is bounded: nested comprehensions multiply, so only one level is allowed.
    expect(at('payload.a.all(x, payload.b.all(y, x == y))').message).toMatch(/nest 2 deep; at most 1/);
    expect(at(Array.from({ length: 120 }, () => 'payload.a == 1').join('||')).message).toMatch(/parts; at most 300/);
    expect(at('   ').message).toMatch(/empty/);
    expect(at('x'.repeat(3000)).message).toMatch(/longer than/);
    // Comprehension variables are bound, not unknown.
    expect(() => compileCondition('payload.to.all(r, r.size() > 3)')).not.toThrow();
  });
});
