import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/engine/errors.js';
import { checkRuleEscalation, escalationFor, parseEscalationTarget } from '../../src/engine/escalation.js';
import type { SafetyRuleInput } from '../../src/engine/safety.js';

const SPACE = '22222222-2222-4222-8222-222222222222';
const createdAt = new Date('2026-11-27T10:00:00.000Z');
const approvalExpiresAt = new Date('2026-11-28T10:00:00.000Z');
const subject = { type: 'order', spaceId: SPACE, createdAt, approvalExpiresAt, minuteMs: 60_000 };
const rule = (over: Partial<SafetyRuleInput> = {}): SafetyRuleInput => ({
  spaceId: null, actionType: 'order', kind: 'REQUIRES_APPROVAL', limit: null, windowSeconds: null, enabled: true, ...over,
});

function fieldOf(run: () => unknown): string[] | undefined {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return (error as InvalidInputError).field;
  }
  throw new Error('not refused');
}

describe('escalation targets and rule fields', () => {
  it('tells email addresses from handles, and refuses what is neither', () => {
    expect(parseEscalationTarget(' boss@example.com ')).toEqual({ kind: 'email', address: 'boss@example.com' });
    expect(parseEscalationTarget('dana.k')).toEqual({ kind: 'handle', handle: 'dana.k' });
    for (const bad of ['', 'two words', 'a@b', '@example.com', 'x'.repeat(64), 'Boss <boss@example.com>']) expect(parseEscalationTarget(bad), bad).toBeNull();
  });

  it('keeps both fields together on REQUIRES_APPROVAL rules only, within 1…10,080 minutes and 10 people, dropping repeats', () => {
    expect(checkRuleEscalation({ kind: 'REQUIRES_APPROVAL' })).toEqual({ escalateAfterMinutes: null, escalateTo: [] });
    expect(checkRuleEscalation({ kind: 'RATE_LIMIT', escalateTo: [] })).toEqual({ escalateAfterMinutes: null, escalateTo: [] });
    expect(checkRuleEscalation({ kind: 'REQUIRES_APPROVAL', escalateAfterMinutes: 10_080, escalateTo: ['dana', 'Boss@example.com', 'boss@example.com', 'DANA'] })).toEqual({
      escalateAfterMinutes: 10_080,
      escalateTo: ['dana', 'Boss@example.com'],
    });
    expect(fieldOf(() => checkRuleEscalation({ kind: 'BLOCKED', escalateAfterMinutes: 5, escalateTo: ['dana'] }))).toEqual(['input', 'escalateAfterMinutes']);
    expect(fieldOf(() => checkRuleEscalation({ kind: 'REQUIRES_KYC', escalateTo: ['dana'] }))).toEqual(['input', 'escalateTo']);
    expect(fieldOf(() => checkRuleEscalation({ kind: 'REQUIRES_APPROVAL', escalateAfterMinutes: 1.5, escalateTo: ['dana'] }))).toEqual(['input', 'escalateAfterMinutes']);
    expect(fieldOf(() => checkRuleEscalation({ kind: 'REQUIRES_APPROVAL', escalateAfterMinutes: 5, escalateTo: Array.from({ length: 11 }, (_, i) => `u${i}`) }))).toEqual(['input', 'escalateTo']);
    expect(fieldOf(() => checkRuleEscalation({ kind: 'REQUIRES_APPROVAL', escalateAfterMinutes: 5, escalateTo: ['dana', 'no way'] }))).toEqual(['input', 'escalateTo', '1']);
  });
});

describe('escalationFor', () => {
  it('takes the REQUIRES_APPROVAL rule in force (a space rule over the default), due createdAt + minutes', () => {
    const rules = [rule({ escalateAfterMinutes: 60, escalateTo: ['global@example.com'] }), rule({ spaceId: SPACE, escalateAfterMinutes: 30, escalateTo: ['dana'] })];
    expect(escalationFor(rules, [], subject)).toEqual({ rule: `${SPACE}:order:REQUIRES_APPROVAL`, afterMinutes: 30, to: ['dana'], at: new Date(createdAt.getTime() + 30 * 60_000) });
    expect(escalationFor(rules, [], { ...subject, spaceId: '33333333-3333-4333-8333-333333333333' })?.to).toEqual(['global@example.com']);
  });

  it('none without the fields, for a rule whose condition did not hold, for a disabled rule, or when it would come at or after the deadline', () => {
    expect(escalationFor([rule()], [], subject)).toBeNull();
    const conditional = rule({ condition: 'payload.total > 100', escalateAfterMinutes: 5, escalateTo: ['dana'] });
    expect(escalationFor([conditional], [{ rule: '*:order:REQUIRES_APPROVAL', applies: false, error: null }], subject)).toBeNull();
    expect(escalationFor([conditional], [{ rule: '*:order:REQUIRES_APPROVAL', applies: true, error: 'no such key' }], subject)).not.toBeNull();
    expect(escalationFor([rule({ enabled: false, escalateAfterMinutes: 5, escalateTo: ['dana'] })], [], subject)).toBeNull();
    expect(escalationFor([rule({ escalateAfterMinutes: 24 * 60, escalateTo: ['dana'] })], [], subject)).toBeNull();
    expect(escalationFor([rule({ escalateAfterMinutes: 24 * 60 - 1, escalateTo: ['dana'] })], [], subject)).not.toBeNull();
  });
});
