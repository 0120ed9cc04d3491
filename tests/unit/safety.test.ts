import { describe, expect, it } from 'vitest';
import { effectiveRules, evaluateSafety, ruleKey, type SafetyRuleInput } from '../../src/engine/safety.js';

const rule = (r: Partial<SafetyRuleInput> & Pick<SafetyRuleInput, 'actionType' | 'kind'>): SafetyRuleInput => ({
  spaceId: null,
  limit: null,
  windowSeconds: null,
  enabled: true,
  ...r,
});

const defaults: SafetyRuleInput[] = [
  rule({ actionType: 'send_email', kind: 'RATE_LIMIT', limit: 500, windowSeconds: 86400 }),
  rule({ actionType: 'send_email', kind: 'RATE_LIMIT', limit: 50, windowSeconds: 3600 }),
  rule({ actionType: 'move_file', kind: 'REQUIRES_APPROVAL' }),
  rule({ actionType: 'make_payment', kind: 'BLOCKED' }),
  rule({ actionType: 'make_purchase', kind: 'REQUIRES_KYC' }),
  rule({ actionType: 'make_purchase', kind: 'REQUIRES_APPROVAL' }),
];
const space = '11111111-1111-1111-1111-111111111111';

describe('the safety verdict', () => {
  it('collects every rate window of a type, shortest first', () => {
    const v = evaluateSafety(defaults, { type: 'send_email', spaceId: space, kycStatus: 'NONE' });
    expect(v).toEqual({
      refusal: null,
      requiresApproval: false,
      approvalsRequired: 1,
      rateWindows: [
        { limit: 50, windowSeconds: 3600 },
        { limit: 500, windowSeconds: 86400 },
      ],
      conditions: [],
    });
  });

  it('blocks payments, naming the rule', () => {
    const v = evaluateSafety(defaults, { type: 'make_payment', spaceId: space, kycStatus: 'VERIFIED' });
    expect(v.refusal).toMatchObject({ code: 'BLOCKED', rule: '*:make_payment:BLOCKED', kind: 'BLOCKED' });
  });

  it('refuses purchases without a verified KYC status, and lets them through to approval with one', () => {
    expect(evaluateSafety(defaults, { type: 'make_purchase', spaceId: space, kycStatus: 'PENDING' }).refusal).toMatchObject({
      code: 'KYC_REQUIRED',
    });
    const ok = evaluateSafety(defaults, { type: 'make_purchase', spaceId: space, kycStatus: 'VERIFIED' });
    expect(ok.refusal).toBeNull();
    expect(ok.requiresApproval).toBe(true);
  });

  it("lets a space's own rule replace a default in the same slot, including switching it off", () => {
    const rules = [
      ...defaults,
      rule({ spaceId: space, actionType: 'send_email', kind: 'RATE_LIMIT', limit: 5, windowSeconds: 3600 }),
      rule({ spaceId: space, actionType: 'move_file', kind: 'REQUIRES_APPROVAL', enabled: false }),
    ];
    expect(evaluateSafety(rules, { type: 'send_email', spaceId: space, kycStatus: 'NONE' }).rateWindows).toEqual([
      { limit: 5, windowSeconds: 3600 },
      { limit: 500, windowSeconds: 86400 },
    ]);
    expect(evaluateSafety(rules, { type: 'move_file', spaceId: space, kycStatus: 'NONE' }).requiresApproval).toBe(false);
    // Another space still has the defaults.
    expect(evaluateSafety(rules, { type: 'move_file', spaceId: '22222222-2222-2222-2222-222222222222', kycStatus: 'NONE' }).requiresApproval).toBe(true);
  });

  it('fails closed on a rate rule without numbers', () => {
    const v = evaluateSafety([rule({ actionType: 'x', kind: 'RATE_LIMIT' })], { type: 'x', spaceId: space, kycStatus: 'NONE' });
    expect(v.refusal?.code).toBe('BLOCKED');
  });

  it('keys rules by space, type, kind and window', () => {
    expect(ruleKey(rule({ actionType: 'send_email', kind: 'RATE_LIMIT', windowSeconds: 3600 }))).toBe('*:send_email:RATE_LIMIT:3600');
    expect(ruleKey(rule({ spaceId: space, actionType: 'order', kind: 'REQUIRES_APPROVAL' }))).toBe(`${space}:order:REQUIRES_APPROVAL`);
    expect(effectiveRules(defaults, 'order', space)).toEqual([]);
  });
});
