import type { Action, Prisma } from '../generated/prisma/client.js';
import { appendAuditEntries, appendAuditEntry, type AuditInput } from './audit.js';
import { InvalidTransitionError, NotFoundError } from './errors.js';
import type { StatusEvent, StatusEventSink } from './status-event.js';
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

export function statusEvent(
  action: Pick<Action, 'id' | 'spaceId' | 'userId' | 'type'>,
  update: { seq: number; status: Action['status']; message: string | null; createdAt: Date },
): StatusEvent {
  return {
    actionId: action.id,
    spaceId: action.spaceId,
    userId: action.userId,
    type: action.type,
    status: update.status,
    seq: update.seq,
    message: update.message,
    timestamp: update.createdAt.toISOString(),
  };
}

/**
 * Moves one action from one status to another inside the caller's transaction: refuses moves
 * the state machine does not allow, writes the status only if the action is still where the
 * caller saw it (so of two racing decisions exactly one wins), then the status update and the
 * audit entry. No read before the write: the conditional UPDATE … RETURNING is the check.
 */
export async function transition(tx: Prisma.TransactionClient, events: StatusEventSink, input: TransitionInput): Promise<Action> {
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
  const update = await tx.statusUpdate.create({
    data: { actionId: updated.id, seq: updated.statusSeq, status: input.to, message: input.message },
  });
  events.push(statusEvent(updated, update));
  if (input.to === 'APPROVED') {
    events.enqueue.push(updated);
    // One lock and one INSERT for both entries.
    await appendAuditEntries(tx, [input.audit, queuedAudit(updated)]);
  } else {
    await appendAuditEntry(tx, input.audit);
  }
  if (input.to === 'CANCELLED' && input.from === 'APPROVED') events.dequeue.push(updated.id);
  return updated;
}

/** The audit entry of an approved action going onto the queue. */
export function queuedAudit(action: Pick<Action, 'id' | 'spaceId' | 'priority' | 'scheduledFor'>): AuditInput {
  return {
    event: 'action.queued',
    actor: 'system',
    spaceId: action.spaceId,
    actionId: action.id,
    data: { priority: action.priority, scheduledFor: action.scheduledFor?.toISOString() ?? null },
  };
}

/** A status update that carries news without a change of status (e.g. "no email address known"). */
export async function addStatusMessage(tx: Prisma.TransactionClient, events: StatusEventSink, action: Pick<Action, 'id'>, message: string) {
  const updated = await tx.action.update({
    where: { id: action.id },
    data: { statusSeq: { increment: 1 } },
    select: { id: true, spaceId: true, userId: true, type: true, statusSeq: true, status: true },
  });
  const update = await tx.statusUpdate.create({ data: { actionId: action.id, seq: updated.statusSeq, status: updated.status, message } });
  events.push(statusEvent(updated, update));
}
