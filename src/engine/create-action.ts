import { createHash, randomUUID } from 'node:crypto';
import type { Principal } from '../context.js';
import type { Action } from '../generated/prisma/client.js';
import { prepareApprovalRequest, sendApprovalRequest, type ApprovalRequest } from './approvals.js';
import { asApproved, commitCreate, isUniqueViolation, type NewAction } from './lifecycle/index.js';
import { payloadHash } from './approval-tokens.js';
import { canonicalJson } from './canonical-json.js';
import type { Actor, EngineDeps } from './deps.js';
import {
  BlockedError,
  EngineError,
  ForbiddenError,
  IdempotencyConflictError,
  InvalidInputError,
  KycRequiredError,
  SafetyUnavailableError,
} from './errors.js';
import { graceUntil as graceUntilOf, type SafetyVerdict } from './safety.js';
import { findStandingApproval } from './standing-approvals.js';
import { evaluateRulesOn, loadUser, refusalError } from './rule-inputs.js';
import { GRANT_DECIDER_PREFIX } from './queue.js';
import { initialStatus } from './statuses.js';
import { approvalRequestQuota, rateUnitId } from './quota.js';
import type { RateLimitSubject } from './rate-limiter.js';
import { briefError } from './infra-errors.js';
import { approvalJobsFor, scheduleApprovalJobs } from './approval-jobs.js';
import { escalationFor, type EscalationPlan } from './escalation.js';

export interface CreateActionInput {
  type: string;
  payload: unknown;
  userId?: string | null;
  priority?: number | null;
  scheduledFor?: Date | null;
  idempotencyKey?: string | null;
}

export interface CreateActionResult {
  action: Action | null;
  requiresApproval: boolean;
  /** Expected refusals (BLOCKED and KYC_REQUIRED come with the recorded action). */
  errors: EngineError[];
}

/**
 * createAction (spec §3–§5): validate, replay an idempotent repeat, apply the safety rules
 * (failing closed), consume rate-limit units atomically, then record the action, its first
 * status update and its audit entries in one transaction. Approval mail goes out after commit.
 */
export async function createAction(deps: EngineDeps, principal: Principal, actor: Actor, input: CreateActionInput): Promise<CreateActionResult> {
  if (principal.role !== 'AGENT') throw new ForbiddenError('only agents create actions');
  const userId = input.userId ?? principal.userId;
  if (!userId || userId !== principal.userId) {
    throw new ForbiddenError('an agent creates actions only for the user it acts for', ['userId']);
  }
  const priority = input.priority ?? 5;
  if (!Number.isInteger(priority) || priority < 1 || priority > 10) {
    throw new InvalidInputError('priority must be a whole number from 1 (highest) to 10 (lowest)', ['priority']);
  }
  const idempotencyKey = input.idempotencyKey ?? null;
  if (idempotencyKey !== null && (idempotencyKey.length < 1 || idempotencyKey.length > 200)) {
    throw new InvalidInputError('idempotencyKey must be 1 to 200 characters', ['idempotencyKey']);
  }

  // Invalid payloads are refused before any limit is touched.
  const payload = deps.types.validate(input.type, input.payload);
  // Only an idempotent request is compared with an earlier one.
  const requestHash = idempotencyKey === null ? '' : createHash('sha256')
    .update(canonicalJson({ type: input.type, payload, userId, priority, scheduledFor: input.scheduledFor?.toISOString() ?? null }))
    .digest('hex');

  if (idempotencyKey) {
    const replay = await findIdempotentResult(deps, principal, idempotencyKey, requestHash);
    if (replay) return replay;
  }

  // The user is read only when a rule needs it, or later an approval request to mail.
  const evaluated = await evaluateRulesOn(deps, { spaceId: principal.spaceId, userId, type: input.type, payload });
  const { rules, verdict } = evaluated;
  let user = evaluated.user;

  const actionId = randomUUID();
  const refusal = verdict.refusal ? refusalError(verdict.refusal) : null;
  // Payments wait for a person whatever the rules say (spec §6): no rule can switch this off. Set
  // before the quota, so such a request also counts against the approval-request limit.
  if (!refusal && deps.types.get(input.type).humanApproval) verdict.requiresApproval = true;
  // A standing approval in force approves it now, in place of a person (never a payment).
  let grant: { id: string; createdById: string } | null = null;
  if (!refusal && verdict.requiresApproval) {
    user ??= await loadUser(deps, principal.spaceId, userId);
    grant = await findGrant(deps, { spaceId: principal.spaceId, userId, payload, type: input.type, user, now: deps.clock() });
    if (grant) verdict.requiresApproval = false;
  }
  const status = initialStatus({ blocked: refusal !== null, requiresApproval: verdict.requiresApproval });
  const now = deps.clock();
  // A type that cannot be undone may wait out a grace period once approved, cancellable.
  const graceUntil =
    status === 'APPROVED'
      ? graceUntilOf(rules, {
          type: input.type,
          spaceId: principal.spaceId,
          gracePeriod: deps.types.get(input.type).gracePeriod,
          defaultSeconds: deps.config.graceSeconds,
          now,
          scheduledFor: input.scheduledFor ?? null,
        })
      : null;
  const hash = payloadHash(payload);
  const expiresAt = status === 'PENDING' ? new Date(now.getTime() + deps.config.approvalTtlSeconds * 1000) : null;
  const newAction: NewAction = {
    id: actionId,
    spaceId: principal.spaceId,
    userId,
    requestedById: principal.id,
    type: input.type,
    payload,
    payloadHash: hash,
    priority,
    scheduledFor: graceUntil ?? input.scheduledFor ?? null,
    idempotencyKey,
    status,
    requiresApproval: verdict.requiresApproval,
    error: refusal ? `${refusal.code}: ${refusal.message}` : null,
    approvalExpiresAt: expiresAt,
    createdAt: now,
    approvalsRequired: status === 'PENDING' ? verdict.approvalsRequired : 1,
    decidedBy: grant ? `${GRANT_DECIDER_PREFIX}${grant.id}` : null,
  };
  let request: ApprovalRequest | null = null;
  let escalation: EscalationPlan | null = null;
  if (status === 'PENDING') {
    user ??= await loadUser(deps, principal.spaceId, userId);
    request = await prepareApprovalRequest(deps, newAction, user, expiresAt!);
    escalation = escalationFor(rules, verdict.conditions, { type: input.type, spaceId: principal.spaceId, createdAt: now, approvalExpiresAt: expiresAt!, minuteMs: deps.config.escalationMinuteMs });
  }
  // Counted only for actions that would run; a refused request consumes nothing, and a unit is
  // given back when nothing gets recorded (see consumeQuota and releaseQuota).
  const quota = refusal ? null : await consumeQuota(deps, principal, userId, input.type, verdict, rateUnitId({ id: actionId, requestedById: principal.id, idempotencyKey }));
  // Approved now, with a slot free in this process's worker: claimed in the same statement, it
  // starts here at once (as an approval does; see approvals.ts). One approved by a standing
  // approval goes through the queue, whose job checks the grant again before it runs.
  // (A slot that cannot be had, e.g. the rules unreadable, leaves the action to the queue.)
  const slot = status === 'APPROVED' && !graceUntil && !grant ? await deps.queue.reserveHere(newAction).catch(() => null) : null;
  let action: Action;
  try {
    action = await commitCreate(deps, {
      action: newAction,
      actor,
      refusal: verdict.refusal && refusal ? { rule: verdict.refusal.rule, kind: verdict.refusal.kind, reason: verdict.refusal.reason, text: refusal.message } : null,
      rateLimited: verdict.rateWindows.length > 0,
      conditions: verdict.conditions,
      grant,
      graceUntil,
      approval: request ? { recipient: request.mail?.to ?? null, expiresAt: expiresAt!, token: request.token, escalation } : null,
      idempotency: idempotencyKey ? { principalId: principal.id, key: idempotencyKey, requestHash } : null,
      claim: slot?.claim ?? null,
    });
  } catch (error) {
    slot?.release();
    // Two requests with one idempotency key raced: the loser answers with the winner's result.
    if (idempotencyKey && isUniqueViolation(error)) {
      // A different input under the key throws IDEMPOTENCY_CONFLICT here; the unit is the winner's then.
      const replay = await findIdempotentResult(deps, principal, idempotencyKey, requestHash);
      if (replay) return replay;
    }
    if (quota) await releaseQuota(deps, principal, idempotencyKey, quota);
    throw error;
  }
  // The answer is the action as created, as without the claim; its EXECUTING event follows.
  if (slot?.committed(action)) return resultFor(asApproved(action));
  // Its expiry and escalation run as delayed jobs (a lost enqueue is repaired by the reconciler);
  // queued side by side with the mail, so Redis being away costs at most one timeout. Neither throws.
  await Promise.all([
    action.status === 'PENDING' ? scheduleApprovalJobs(deps, approvalJobsFor(action, escalation)) : null,
    request?.mail ? sendApprovalRequest(deps, { ...request.mail, action }) : null,
  ]);
  return resultFor(action);
}

/** The units one request consumed: the subjects whose counters it counted the unit in. */
interface ConsumedQuota {
  unitId: string;
  owned: RateLimitSubject[];
}

/**
 * Consumes the request's unit in every limit that applies: the type's rate windows, and the
 * user's approval-request limit when the action would wait for approval (spec §4). All or none:
 * when a later limit refuses, the units counted before are given back.
 */
async function consumeQuota(
  deps: EngineDeps,
  principal: Principal,
  userId: string,
  type: string,
  verdict: SafetyVerdict,
  unitId: string,
): Promise<ConsumedQuota> {
  const quota: ConsumedQuota = { unitId, owned: [] };
  const limits = [];
  if (verdict.rateWindows.length) limits.push({ subject: { spaceId: principal.spaceId, userId, type }, windows: verdict.rateWindows });
  if (verdict.requiresApproval) limits.push(approvalRequestQuota(principal.spaceId, userId, type, deps.config.approvalRequestsPerHour));
  try {
    for (const { subject, windows } of limits) {
      const counted = await deps.rateLimiter.consume(subject, windows, unitId);
      // A duplicate of an idempotent request in flight counted it first: that one owns the unit.
      if (counted.counted) quota.owned.push(subject);
    }
  } catch (error) {
    if (error instanceof SafetyUnavailableError) {
      deps.logger.warn({ err: briefError((error as Error & { cause?: unknown }).cause ?? error) }, 'rate-limit counters unavailable; the request is refused (fail closed)');
    }
    await releaseQuota(deps, principal, null, quota);
    throw error;
  }
  return quota;
}

/**
 * Gives back the units a request counted when it recorded nothing. With an idempotency key the
 * unit is shared with the key's duplicates: it stays if one of them recorded the action.
 * Best effort: a unit that cannot be given back stays counted (the safe side).
 */
async function releaseQuota(deps: EngineDeps, principal: Principal, idempotencyKey: string | null, quota: ConsumedQuota): Promise<void> {
  if (quota.owned.length === 0) return;
  try {
    if (idempotencyKey) {
      // When the database cannot say (it is what just failed this request), the unit is given
      // back: a duplicate that recorded the action meanwhile is the rare case, and a unit counted
      // for nothing recorded is what the caller must never pay.
      const recorded = await deps.db.idempotencyRecord
        .findUnique({ where: { principalId_key: { principalId: principal.id, key: idempotencyKey } }, select: { actionId: true } })
        .catch(() => null);
      if (recorded) return;
    }
    for (const subject of quota.owned) await deps.rateLimiter.release(subject, quota.unitId);
  } catch (error) {
    deps.logger.warn({ err: error }, 'a rate-limit unit could not be given back; it stays counted until its window passes');
  }
}

function resultFor(action: Action): CreateActionResult {
  const errors: EngineError[] = [];
  if (action.status === 'BLOCKED' && action.error) {
    const [code, ...rest] = action.error.split(': ');
    const message = rest.join(': ');
    errors.push(code === 'KYC_REQUIRED' ? new KycRequiredError(message) : new BlockedError(message));
  }
  return { action, requiresApproval: action.requiresApproval, errors };
}

async function findIdempotentResult(deps: EngineDeps, principal: Principal, key: string, requestHash: string): Promise<CreateActionResult | null> {
  const record = await deps.db.idempotencyRecord.findUnique({
    where: { principalId_key: { principalId: principal.id, key } },
    select: { requestHash: true, actionId: true },
  });
  if (!record) return null;
  if (record.requestHash !== requestHash) {
    throw new IdempotencyConflictError('this idempotencyKey was used with a different input', ['idempotencyKey']);
  }
  const action = record.actionId ? await deps.db.action.findUnique({ where: { id: record.actionId } }) : null;
  if (!action) return null;
  return resultFor(action);
}

/** The standing approval that covers the new action, if any. Fails closed. */
async function findGrant(deps: EngineDeps, subject: Parameters<typeof findStandingApproval>[1]) {
  try {
    return await findStandingApproval(deps, subject);
  } catch (error) {
    deps.logger.error({ err: error }, 'standing approvals could not be read');
    throw new SafetyUnavailableError('the safety rules cannot be checked right now; nothing was recorded, try again shortly');
  }
}

