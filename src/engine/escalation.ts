import type { SafetyRuleKind } from '../generated/prisma/enums.js';
import { InvalidInputError } from './errors.js';
import { effectiveRules, ruleKey, type ConditionResult, type SafetyRuleInput } from './safety.js';

/** Longest escalation delay a rule may name: one week. */
export const MAX_ESCALATE_AFTER_MINUTES = 10_080;
/** Most people a rule may escalate to. */
export const MAX_ESCALATE_TO = 10;

const EMAIL = /^[^\s@<>()",;:]+@[^\s@<>()",;:]+\.[^\s@<>()",;:]+$/;
/** A user handle as `keys create --user` accepts it. */
const HANDLE = /^[a-z0-9][a-z0-9._-]{0,62}$/i;

/** One entry of a rule's `escalateTo`: an email address, or the handle of a user of the action's space (mailed at the user's address). */
export type EscalationTarget = { kind: 'email'; address: string } | { kind: 'handle'; handle: string };

/** What an entry of `escalateTo` names; null when it is neither an email address nor a handle. */
export function parseEscalationTarget(entry: string): EscalationTarget | null {
  const value = entry.trim();
  if (value.includes('@')) return value.length <= 254 && EMAIL.test(value) ? { kind: 'email', address: value } : null;
  return HANDLE.test(value) ? { kind: 'handle', handle: value } : null;
}

/** A rule's escalation as saved. */
export interface RuleEscalation {
  escalateAfterMinutes: number | null;
  escalateTo: string[];
}

/**
 * Checks the escalation fields of a rule being saved and returns them as stored (entries trimmed,
 * repeats dropped). Both or neither: a delay with nobody to ask, or people with no delay, is
 * refused; so is either on a rule that does not make actions wait for approval.
 *
 * @throws InvalidInputError naming the field (`['input', 'escalateAfterMinutes' | 'escalateTo', i?]`).
 */
export function checkRuleEscalation(input: { kind: SafetyRuleKind; escalateAfterMinutes?: number | null; escalateTo?: readonly string[] | null }): RuleEscalation {
  const minutes = input.escalateAfterMinutes ?? null;
  const to = input.escalateTo ?? [];
  if (minutes === null && to.length === 0) return { escalateAfterMinutes: null, escalateTo: [] };
  if (input.kind !== 'REQUIRES_APPROVAL') {
    throw new InvalidInputError(
      `escalateAfterMinutes and escalateTo apply to REQUIRES_APPROVAL rules only (nothing waits for a decision under a ${input.kind} rule)`,
      ['input', minutes !== null ? 'escalateAfterMinutes' : 'escalateTo'],
    );
  }
  if (minutes === null) throw new InvalidInputError('escalateTo needs escalateAfterMinutes: after how many minutes without a decision they are asked', ['input', 'escalateAfterMinutes']);
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > MAX_ESCALATE_AFTER_MINUTES) {
    throw new InvalidInputError(`escalateAfterMinutes must be a whole number from 1 to ${MAX_ESCALATE_AFTER_MINUTES.toLocaleString('en-US')} (one week), not ${minutes}`, ['input', 'escalateAfterMinutes']);
  }
  if (to.length === 0) throw new InvalidInputError('escalateAfterMinutes needs escalateTo: the email addresses or user handles to ask', ['input', 'escalateTo']);
  if (to.length > MAX_ESCALATE_TO) throw new InvalidInputError(`escalateTo names at most ${MAX_ESCALATE_TO} people, not ${to.length}`, ['input', 'escalateTo']);
  const seen = new Set<string>();
  const kept: string[] = [];
  to.forEach((entry, i) => {
    const target = parseEscalationTarget(entry);
    if (!target) {
      throw new InvalidInputError(`escalateTo[${i}] is neither an email address nor a user handle (letters, digits, . _ -): "${entry.slice(0, 80)}"`, ['input', 'escalateTo', String(i)]);
    }
    const value = target.kind === 'email' ? target.address : target.handle;
    if (seen.has(value.toLowerCase())) return;
    seen.add(value.toLowerCase());
    kept.push(value);
  });
  return { escalateAfterMinutes: minutes, escalateTo: kept };
}

/** When and to whom a new PENDING action escalates. */
export interface EscalationPlan {
  /** The REQUIRES_APPROVAL rule that names it (its ruleKey). */
  rule: string;
  afterMinutes: number;
  /** The rule's `escalateTo`, as saved (handles are looked up when it fires). */
  to: string[];
  at: Date;
}

/**
 * The escalation of a new PENDING action: from the REQUIRES_APPROVAL rule in force for its type
 * in its space when that rule applied to it (no condition, or one that held or failed) and names
 * an escalation. Null when there is none, or when it would fire at or after the approval
 * deadline (nobody could decide by then). Pure.
 */
export function escalationFor(
  rules: readonly SafetyRuleInput[],
  conditions: readonly ConditionResult[],
  subject: { type: string; spaceId: string; createdAt: Date; approvalExpiresAt: Date; minuteMs: number },
): EscalationPlan | null {
  const rule = effectiveRules(rules, subject.type, subject.spaceId).find((r) => r.kind === 'REQUIRES_APPROVAL');
  if (!rule?.escalateAfterMinutes || !rule.escalateTo?.length) return null;
  const key = ruleKey(rule);
  if (rule.condition && conditions.find((c) => c.rule === key)?.applies === false) return null;
  const at = new Date(subject.createdAt.getTime() + rule.escalateAfterMinutes * subject.minuteMs);
  if (at.getTime() >= subject.approvalExpiresAt.getTime()) return null;
  return { rule: key, afterMinutes: rule.escalateAfterMinutes, to: [...rule.escalateTo], at };
}

/** "a", "a and b", "a, b and c". */
export function listInWords(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

/** The status update of an escalation ("Asked X and Y as well: no decision after N minutes"). */
export function escalationMessage(step: { to: readonly string[]; skipped: readonly string[]; afterMinutes: number }): string {
  const after = `no decision after ${step.afterMinutes} minute${step.afterMinutes === 1 ? '' : 's'}`;
  const skipped = step.skipped.length ? ` (${listInWords(step.skipped)}: no email address known)` : '';
  if (!step.to.length) return `Nobody could be asked as well (${after})${skipped}`;
  return `Asked ${listInWords(step.to)} as well: ${after}${skipped}`;
}
