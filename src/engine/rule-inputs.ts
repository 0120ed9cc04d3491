import type { EngineDeps } from './deps.js';
import { BlockedError, KycRequiredError, NotFoundError, SafetyUnavailableError } from './errors.js';
import { evaluateSafety, type SafetyRefusal, type SafetyVerdict } from './safety.js';

/**
 * What the safety rules are evaluated with, for a new request (createAction) and for an
 * approver's edit (approveAction with a payload): the rules in force and the user. Both fail
 * closed: when they cannot be read nothing proceeds unchecked (SAFETY_UNAVAILABLE).
 */

/** The safety rules of `type` that apply in the space (its own and the global ones, cached). Fails closed: SAFETY_UNAVAILABLE when they cannot be read. */
export async function loadSafetyRules(deps: EngineDeps, spaceId: string, type: string) {
  try {
    // Cached per process; every admin change is announced on Redis and drops it everywhere.
    return await deps.configCache.safetyRules(spaceId, type);
  } catch (error) {
    deps.logger.error({ err: error }, 'safety rules could not be read');
    throw new SafetyUnavailableError('the safety rules cannot be read right now; nothing was recorded, try again shortly');
  }
}

/** What the rules need of the user an action is for (KYC status; email and handle for an approval request), read fresh. Fails closed. */
export async function loadUser(deps: Pick<EngineDeps, 'db' | 'logger'>, spaceId: string, userId: string) {
  let user;
  try {
    // Read fresh, not cached: only KYC-ruled types and approval requests need it (not the hot path),
    // and an email or KYC change must apply to the very next action whoever made it.
    user = await deps.db.user.findFirst({ where: { id: userId, spaceId }, select: { id: true, email: true, handle: true, kycStatus: true } });
  } catch (error) {
    deps.logger.error({ err: error }, 'the user could not be read');
    throw new SafetyUnavailableError('the safety rules cannot be checked right now; nothing was recorded, try again shortly');
  }
  if (!user) throw new NotFoundError(`no user with id ${userId} in this space`, ['userId']);
  return user;
}

/**
 * The rules in force for `type` in the space, evaluated on `payload` for the user: the user is
 * read only when a rule needs them (KYC, or a condition, which may look at `user`). The same
 * verdict for a new request (createAction) and an approver's edit (approveAction).
 */
export async function evaluateRulesOn(
  deps: EngineDeps,
  subject: { spaceId: string; userId: string; type: string; payload: Record<string, unknown> },
): Promise<{ rules: Awaited<ReturnType<typeof loadSafetyRules>>; user: Awaited<ReturnType<typeof loadUser>> | null; verdict: SafetyVerdict }> {
  const rules = await loadSafetyRules(deps, subject.spaceId, subject.type);
  const kycRuled = rules.some((rule) => rule.enabled && rule.kind === 'REQUIRES_KYC');
  const conditional = rules.some((rule) => rule.enabled && rule.condition);
  const user = kycRuled || conditional ? await loadUser(deps, subject.spaceId, subject.userId) : null;
  const verdict = evaluateSafety(rules, {
    type: subject.type,
    spaceId: subject.spaceId,
    kycStatus: user?.kycStatus ?? 'NONE',
    conditionSubject: conditional ? { payload: subject.payload, type: subject.type, user, now: deps.clock() } : undefined,
  });
  return { rules, user, verdict };
}

/** The error a refusal answers with (BLOCKED or KYC_REQUIRED), its reason worded by `say`. */
export function refusalError(refusal: SafetyRefusal, say: (reason: string) => string = (reason) => reason, field?: string[]): BlockedError | KycRequiredError {
  return refusal.code === 'BLOCKED' ? new BlockedError(say(refusal.reason), field) : new KycRequiredError(say(refusal.reason), field);
}
