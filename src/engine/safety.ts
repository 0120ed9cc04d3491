import type { KycStatus, SafetyRuleKind } from '../generated/prisma/enums.js';
import { evaluateCondition, type ConditionOutcome, type ConditionSubject } from './conditions.js';
import type { RateWindow } from './rate-limiter.js';

/** The fields of a safety rule the verdict needs. */
export interface SafetyRuleInput {
  spaceId: string | null;
  actionType: string;
  kind: SafetyRuleKind;
  limit: number | null;
  windowSeconds: number | null;
  enabled: boolean;
  /** A CEL condition (see conditions.ts): the rule applies only where it holds. Null or absent: always. */
  condition?: string | null;
  /** Grace period for a type that cannot be undone (see {@link graceSecondsFor}). */
  graceSeconds?: number | null;
  /** REQUIRES_APPROVAL: distinct approvers needed (default 1). */
  approvalsRequired?: number | null;
  /** REQUIRES_APPROVAL: ask `escalateTo` as well after this many minutes without a decision (see escalation.ts). */
  escalateAfterMinutes?: number | null;
  escalateTo?: readonly string[] | null;
}

/** How one rule's condition came out for an action (kept in its `action.created` audit entry). */
export interface ConditionResult {
  rule: string;
  applies: boolean;
  /** Why it could not be evaluated (the rule then applies). */
  error: string | null;
}

/** Why a new action is refused at creation (it is still recorded, as BLOCKED). */
export interface SafetyRefusal {
  code: 'BLOCKED' | 'KYC_REQUIRED';
  reason: string;
  /** The refusing rule's `ruleKey`. */
  rule: string;
  kind: SafetyRuleKind;
}

export interface SafetyVerdict {
  /** The first refusal: a blocking rule wins over a missing KYC status. */
  refusal: SafetyRefusal | null;
  requiresApproval: boolean;
  /** Distinct approvals needed: the largest of the REQUIRES_APPROVAL rules that apply (1 without one). */
  approvalsRequired: number;
  /** Every rate window that applies, each to be checked and consumed together. */
  rateWindows: RateWindow[];
  /** The conditions of the rules in force, each with its outcome. */
  conditions: ConditionResult[];
}

/** The identity of a rule for overriding: a space's rule replaces the global one with the same key. */
export function ruleSlot(rule: Pick<SafetyRuleInput, 'actionType' | 'kind' | 'windowSeconds'>): string {
  return rule.kind === 'RATE_LIMIT' ? `${rule.actionType}:${rule.kind}:${rule.windowSeconds}` : `${rule.actionType}:${rule.kind}`;
}

/** `ruleKey` as stored: `<space id or *>:<slot>`. */
export function ruleKey(rule: Pick<SafetyRuleInput, 'spaceId' | 'actionType' | 'kind' | 'windowSeconds'>): string {
  return `${rule.spaceId ?? '*'}:${ruleSlot(rule)}`;
}

/**
 * The rules in force for one type in one space: global rules, each replaced by the space's
 * own rule in the same slot (which may disable it).
 */
export function effectiveRules<R extends SafetyRuleInput>(rules: readonly R[], type: string, spaceId: string): R[] {
  const bySlot = new Map<string, R>();
  for (const r of rules) {
    if (r.actionType !== type || (r.spaceId !== null && r.spaceId !== spaceId)) continue;
    const slot = ruleSlot(r);
    const current = bySlot.get(slot);
    if (!current || (current.spaceId === null && r.spaceId !== null)) bySlot.set(slot, r);
  }
  return [...bySlot.values()].filter((r) => r.enabled);
}

/**
 * The safety verdict for one new action: pure, from the rules, the user's KYC status and, for
 * rules with a condition, what the condition runs on (a rule whose condition is false does not
 * apply; one whose condition fails applies).
 */
export function evaluateSafety(
  rules: readonly SafetyRuleInput[],
  subject: { type: string; spaceId: string; kycStatus: KycStatus; conditionSubject?: ConditionSubject },
): SafetyVerdict {
  const verdict: SafetyVerdict = { refusal: null, requiresApproval: false, approvalsRequired: 1, rateWindows: [], conditions: [] };
  let blocked: SafetyRefusal | null = null;
  let kyc: SafetyRefusal | null = null;
  for (const rule of effectiveRules(rules, subject.type, subject.spaceId)) {
    if (rule.condition) {
      const outcome: ConditionOutcome = subject.conditionSubject
        ? evaluateCondition(rule.condition, subject.conditionSubject)
        : { applies: true, error: 'nothing to evaluate it on' };
      verdict.conditions.push({ rule: ruleKey(rule), applies: outcome.applies, error: outcome.error });
      if (!outcome.applies) continue;
    }
    switch (rule.kind) {
      case 'BLOCKED':
        blocked = { code: 'BLOCKED', reason: `${subject.type} actions are blocked by a safety rule`, rule: ruleKey(rule), kind: rule.kind };
        break;
      case 'REQUIRES_KYC':
        if (subject.kycStatus !== 'VERIFIED') {
          kyc = {
            code: 'KYC_REQUIRED',
            reason: `${subject.type} needs a verified KYC status; the user's is ${subject.kycStatus}`,
            rule: ruleKey(rule),
            kind: rule.kind,
          };
        }
        break;
      case 'REQUIRES_APPROVAL':
        verdict.requiresApproval = true;
        verdict.approvalsRequired = Math.max(verdict.approvalsRequired, rule.approvalsRequired ?? 1);
        break;
      case 'RATE_LIMIT':
        // A rate rule without numbers cannot be enforced: refuse rather than let everything through.
        if (!rule.limit || !rule.windowSeconds) {
          blocked = { code: 'BLOCKED', reason: `a rate limit on ${subject.type} is misconfigured (no limit or window)`, rule: ruleKey(rule), kind: rule.kind };
        } else {
          verdict.rateWindows.push({ limit: rule.limit, windowSeconds: rule.windowSeconds });
        }
        break;
      default: {
        const never: never = rule.kind;
        throw new Error(`unknown safety rule kind ${String(never)}`);
      }
    }
  }
  verdict.refusal = blocked ?? kyc;
  verdict.rateWindows.sort((a, b) => a.windowSeconds - b.windowSeconds);
  return verdict;
}

/**
 * How long an approved action of a type whose effect cannot be taken back (its `gracePeriod`:
 * email, orders, payments, purchases) waits, cancellable, before it runs: the largest of
 * `GRACE_SECONDS` and the `graceSeconds` of the type's rules in force (their conditions aside, so
 * creation and a later approval agree). 0 for other types.
 */
export function graceSecondsFor(rules: readonly SafetyRuleInput[], subject: { type: string; spaceId: string; gracePeriod: boolean; defaultSeconds: number }): number {
  if (!subject.gracePeriod) return 0;
  return Math.max(subject.defaultSeconds, ...effectiveRules(rules, subject.type, subject.spaceId).map((r) => r.graceSeconds ?? 0));
}

/**
 * Until when an action approved at `now` waits out its grace period (see {@link graceSecondsFor});
 * null when none applies or a later `scheduledFor` already holds it back longer.
 */
export function graceUntil(
  rules: readonly SafetyRuleInput[],
  subject: { type: string; spaceId: string; gracePeriod: boolean; defaultSeconds: number; now: Date; scheduledFor: Date | null },
): Date | null {
  const seconds = graceSecondsFor(rules, subject);
  if (seconds <= 0) return null;
  const until = new Date(subject.now.getTime() + seconds * 1000);
  return subject.scheduledFor && subject.scheduledFor.getTime() >= until.getTime() ? null : until;
}
