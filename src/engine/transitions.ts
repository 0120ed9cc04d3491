import type { Action, Prisma } from '../generated/prisma/client.js';
import { appendAuditEntry, type AuditInput } from './audit.js';
import { InvalidTransitionError, NotFoundError } from './errors.js';
import { assertTransition, type ActionStatus } from './statuses.js';

export interface TransitionInput {
  actionId: string;
  /** The status the caller saw; the move only happens if the action is still in it. */
  from: ActionStatus;
  to: ActionStatus;
  message: string;
  audit: AuditInput;
  /** Other columns written with the status. */
  data?: Omit<Prisma.ActionUpdateManyMutationInput, 'status' | 'statusSeq'>;
}

/**
 * Moves one action from one status to another inside the caller's transaction: refuses moves
 * the state machine does not allow, writes the status only if the action is still where the
 * caller saw it (so of two racing decisions exactly one wins), then the status update and the
 * audit entry. No read before the write: the conditional UPDATE … RETURNING is the check.
 */
export async function transition(tx: Prisma.TransactionClient, input: TransitionInput): Promise<Action> {
  assertTransition(input.from, input.to);
  const [updated] = await tx.action.updateManyAndReturn({
    where: { id: input.actionId, status: input.from },
    data: { ...input.data, status: input.to, statusSeq: { increment: 1 } },
  });
  if (!updated) {
    const current = await tx.action.findUnique({ where: { id: input.actionId }, select: { status: true } });
    if (!current) throw new NotFoundError(`no action with id ${input.actionId}`, ['id']);
    throw new InvalidTransitionError(`cannot move the action to ${input.to}: it is ${current.status} now, not ${input.from}`);
  }
  await tx.statusUpdate.create({
    data: { actionId: updated.id, seq: updated.statusSeq, status: input.to, message: input.message },
  });
  await appendAuditEntry(tx, input.audit);
  return updated;
}

/** A status update that carries news without a change of status (e.g. "no email address known"). */
export async function addStatusMessage(tx: Prisma.TransactionClient, action: Pick<Action, 'id' | 'status'>, message: string) {
  const updated = await tx.action.update({
    where: { id: action.id },
    data: { statusSeq: { increment: 1 } },
    select: { statusSeq: true, status: true },
  });
  await tx.statusUpdate.create({ data: { actionId: action.id, seq: updated.statusSeq, status: updated.status, message } });
}
