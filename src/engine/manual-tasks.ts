import type { Principal } from '../context.js';
import type { ManualTask, Prisma } from '../generated/prisma/client.js';
import { appendAuditEntry } from './audit.js';
import { inTransaction, type Actor, type EngineDeps } from './deps.js';
import { ForbiddenError, InvalidTransitionError, NotFoundError } from './errors.js';
import { newReceiptNumber } from './receipts.js';
import { transition } from './transitions.js';

/**
 * completeManualTask: an operator (or admin) reports the work done. In one transaction the task
 * closes, its execution succeeds, a receipt carries the outcome, and the action completes.
 */
export async function completeManualTask(
  deps: EngineDeps,
  principal: Principal,
  actor: Actor,
  id: string,
  outcome: unknown,
): Promise<ManualTask> {
  if (principal.role !== 'OPERATOR' && principal.role !== 'ADMIN') throw new ForbiddenError('only operators and admins complete manual tasks');
  const task = await deps.db.manualTask.findFirst({ where: { id, spaceId: principal.spaceId }, include: { action: true } });
  if (!task) throw new NotFoundError(`no manual task with id ${id}`, ['id']);
  const data = (outcome && typeof outcome === 'object' && !Array.isArray(outcome) ? outcome : { outcome: outcome ?? null }) as Prisma.InputJsonObject;
  const now = deps.clock();
  return inTransaction(deps, async (tx, effects) => {
    const closed = await tx.manualTask.updateManyAndReturn({
      where: { id, status: 'OPEN' },
      data: { status: 'COMPLETED', outcome: data, completedAt: now, completedById: principal.id },
    });
    if (closed.length !== 1) throw new InvalidTransitionError(`the manual task is ${task.status}, not OPEN`);
    if (task.executionId) {
      await tx.execution.update({ where: { id: task.executionId }, data: { status: 'SUCCEEDED', finishedAt: now } });
    }
    const provider = typeof (task.action.payload as Record<string, unknown>)?.provider === 'string' ? String((task.action.payload as Record<string, unknown>).provider) : 'operator';
    const receipt = await tx.receipt.create({
      data: {
        spaceId: task.spaceId,
        actionId: task.actionId,
        executionId: task.executionId,
        receiptNumber: newReceiptNumber(now),
        provider,
        handler: 'manual',
        externalRef: typeof data.reference === 'string' ? data.reference : null,
        data,
      },
    });
    await transition(tx, effects, {
      actionId: task.actionId,
      from: 'EXECUTING',
      to: 'COMPLETED',
      message: `Completed by an operator (receipt ${receipt.receiptNumber})`,
      data: { result: data, completedAt: now, error: null },
      audit: {
        event: 'execution.completed',
        actor: actor.id,
        ip: actor.ip ?? null,
        userAgent: actor.userAgent ?? null,
        spaceId: task.spaceId,
        actionId: task.actionId,
        data: { attempt: task.action.attempts, handler: 'manual', receiptNumber: receipt.receiptNumber, externalRef: receipt.externalRef },
      },
    });
    await appendAuditEntry(tx, {
      event: 'manual_task.completed',
      actor: actor.id,
      ip: actor.ip ?? null,
      userAgent: actor.userAgent ?? null,
      spaceId: task.spaceId,
      actionId: task.actionId,
      data: { taskId: id },
    });
    return closed[0]!;
  });
}
