import type { Principal } from '../context.js';
import type { StandingApproval } from '../generated/prisma/client.js';
import { appendAuditEntry } from './audit.js';
import { compileCondition, ConditionError, evaluateCondition, type ConditionSubject } from './conditions.js';
import type { Actor, EngineDeps } from './deps.js';
import { ForbiddenError, InvalidConditionError, InvalidInputError, NotFoundError } from './errors.js';

/**
 * Standing approvals (spec §5): a user's approver (for that user) or an admin of the space (for
 * one user, or every user when `userId` is null) approves in advance the actions of one type,
 * optionally only those matching a CEL condition, until an end time. An action the rules would
 * send for approval is then APPROVED at creation, its audit naming the grant. Never for a type
 * that needs a person's approval each time (payments).
 */

/** Longest a standing approval may last. */
export const MAX_STANDING_DAYS = 366;

export interface StandingApprovalInput {
  type: string;
  userId?: string | null;
  condition?: string | null;
  expiresAt: Date;
}

/** Who may grant or revoke for `userId` (null: every user of the space, admins only). */
function mayGrant(p: Principal, userId: string | null): boolean {
  if (p.role === 'ADMIN') return true;
  return p.role === 'APPROVER' && userId !== null && p.userId === userId;
}

/** Creates a grant after checking who asks, the type, the user, the condition and the end time; audited in the space's admin chain. */
export async function createStandingApproval(deps: EngineDeps, p: Principal, actor: Actor, input: StandingApprovalInput): Promise<StandingApproval> {
  const definition = deps.types.get(input.type);
  if (definition.humanApproval) {
    throw new InvalidInputError(`${input.type} needs a person's approval every time; it cannot be approved in advance`, ['input', 'type']);
  }
  // An approver without a userId grants for the user it acts for.
  const userId = input.userId ?? (p.role === 'APPROVER' ? (p.userId ?? null) : null);
  if (!mayGrant(p, userId)) throw new ForbiddenError("only the user's approvers and the space's admins can approve in advance");
  if (userId !== null) {
    const user = await deps.db.user.findFirst({ where: { id: userId, spaceId: p.spaceId }, select: { id: true } });
    if (!user) throw new NotFoundError(`no user with id ${userId} in this space`, ['input', 'userId']);
  }
  const condition = input.condition?.trim() ? input.condition : null;
  if (condition !== null) {
    try {
      compileCondition(condition);
    } catch (error) {
      if (!(error instanceof ConditionError)) throw error;
      throw new InvalidConditionError(`condition: ${error.message}`, ['input', 'condition']);
    }
  }
  const now = deps.clock();
  if (input.expiresAt.getTime() <= now.getTime()) throw new InvalidInputError('expiresAt must be in the future', ['input', 'expiresAt']);
  if (input.expiresAt.getTime() > now.getTime() + MAX_STANDING_DAYS * 86_400_000) {
    throw new InvalidInputError(`expiresAt must be within ${MAX_STANDING_DAYS} days`, ['input', 'expiresAt']);
  }
  return deps.db.$transaction(async (tx) => {
    const grant = await tx.standingApproval.create({
      data: { spaceId: p.spaceId, userId, actionType: input.type, condition, expiresAt: input.expiresAt, createdById: p.id },
    });
    await appendAuditEntry(tx, {
      event: 'standing_approval.created',
      actor: p.id,
      ip: actor.ip ?? null,
      userAgent: actor.userAgent ?? null,
      spaceId: p.spaceId,
      data: { standingApprovalId: grant.id, actionType: grant.actionType, userId, condition, expiresAt: grant.expiresAt.toISOString() },
    });
    return grant;
  });
}

/** Revokes a grant (the same people who may create it); revoking twice is harmless and changes nothing. */
export async function revokeStandingApproval(deps: EngineDeps, p: Principal, actor: Actor, id: string): Promise<StandingApproval> {
  return deps.db.$transaction(async (tx) => {
    const [grant] = await tx.$queryRaw<StandingApproval[]>`SELECT * FROM "StandingApproval" WHERE "id" = ${id}::uuid AND "spaceId" = ${p.spaceId}::uuid FOR UPDATE`;
    if (!grant || !(p.role === 'ADMIN' || grant.userId === null || p.userId === grant.userId)) {
      throw new NotFoundError(`no standing approval with id ${id}`, ['id']);
    }
    if (!mayGrant(p, grant.userId)) throw new ForbiddenError("only the user's approvers and the space's admins can revoke it");
    if (grant.revokedAt) return grant;
    const revoked = await tx.standingApproval.update({ where: { id }, data: { revokedAt: deps.clock(), revokedById: p.id } });
    await appendAuditEntry(tx, {
      event: 'standing_approval.revoked',
      actor: p.id,
      ip: actor.ip ?? null,
      userAgent: actor.userAgent ?? null,
      spaceId: p.spaceId,
      data: { standingApprovalId: id, actionType: grant.actionType, userId: grant.userId },
    });
    return revoked;
  });
}

/** The grants a principal may see: an admin (and analyst) every one of the space, an approver or agent those of its user and the space-wide ones. */
export async function listStandingApprovals(deps: Pick<EngineDeps, 'db'>, p: Principal, options: { activeOnly: boolean; now: Date }): Promise<StandingApproval[]> {
  const everyone = p.role === 'ADMIN' || p.role === 'ANALYST' || p.role === 'OPERATOR';
  return deps.db.standingApproval.findMany({
    where: {
      spaceId: p.spaceId,
      ...(everyone ? {} : { OR: [{ userId: null }, { userId: p.userId ?? '00000000-0000-0000-0000-000000000000' }] }),
      ...(options.activeOnly ? { revokedAt: null, expiresAt: { gt: options.now } } : {}),
    },
    orderBy: { createdAt: 'desc' },
    take: 500,
  });
}

/**
 * The grant in force that covers a new action, if any: same space and type, for its user or
 * every user, not revoked, not expired, its condition true (a condition that fails does not
 * grant: unlike a rule, a grant errs on the side of asking). Never for a type that needs a person.
 */
export async function findStandingApproval(
  deps: Pick<EngineDeps, 'db' | 'types'>,
  subject: { spaceId: string; userId: string } & ConditionSubject,
): Promise<{ id: string; createdById: string } | null> {
  if (deps.types.find(subject.type)?.humanApproval) return null;
  const grants = await deps.db.standingApproval.findMany({
    where: {
      spaceId: subject.spaceId,
      actionType: subject.type,
      revokedAt: null,
      expiresAt: { gt: subject.now },
      OR: [{ userId: null }, { userId: subject.userId }],
    },
    select: { id: true, createdById: true, condition: true },
    orderBy: { createdAt: 'asc' },
  });
  for (const grant of grants) {
    if (!grant.condition) return grant;
    const outcome = evaluateCondition(grant.condition, subject);
    if (outcome.applies && outcome.error === null) return grant;
  }
  return null;
}
