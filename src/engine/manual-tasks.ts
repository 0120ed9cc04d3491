import type { Principal } from '../context.js';
import { randomUUID } from 'node:crypto';
import type { ManualTask, Prisma } from '../generated/prisma/client.js';
import type { Actor, EngineDeps } from './deps.js';
import { ForbiddenError, InvalidTransitionError, NotFoundError } from './errors.js';
import { commitStep } from './lifecycle/index.js';
import { approvalsOf, newReceipt } from './receipts.js';

/**
 * completeManualTask: an operator (or admin) reports the work done: the action settles through
 * the lifecycle writer's one statement: the task closes (if still OPEN), its execution succeeds, a
 * receipt carries the outcome, and the action completes.
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
  const provider = typeof (task.action.payload as Record<string, unknown>)?.provider === 'string' ? String((task.action.payload as Record<string, unknown>).provider) : 'operator';
  // A task opened before executions were linked to tasks gets its execution row now.
  const executionId = task.executionId ?? randomUUID();
  const execution = {
    id: executionId,
    handler: 'manual',
    insert: task.executionId ? null : { id: executionId, attempt: task.action.attempts, handler: 'manual', kind: 'manual' as const, startedAt: task.createdAt },
  };
  const externalRef = typeof data.reference === 'string' ? data.reference : null;
  // The receipt binds the handlers tried in the attempt that ended at this task.
  const tried = await deps.db.execution.findMany({ where: { actionId: task.actionId, attempt: task.action.attempts }, orderBy: { startedAt: 'asc' }, select: { id: true, handler: true, status: true } });
  const handlerPath = [...tried.filter((e) => e.id !== executionId).map((e) => ({ handler: e.handler, outcome: e.status })), { handler: 'manual', outcome: 'SUCCEEDED' }];
  const result = await commitStep(deps, task.action, {
    kind: 'settle',
    execution,
    attempt: task.action.attempts,
    handler: 'manual',
    result: { provider, externalRef, data, rollbackData: null },
    receipt: newReceipt(deps, {
      action: { id: task.action.id, type: task.action.type, revision: 1, payloadHash: task.action.payloadHash },
      approvals: approvalsOf(task.action),
      handlerPath,
      handler: 'manual',
      provider,
      externalRef,
      data,
    }),
    actor,
    task: { id, outcome: data, completedById: principal.id },
    notes: [],
  });
  if (!result.action) {
    const now = await deps.db.manualTask.findUnique({ where: { id }, select: { status: true } });
    throw new InvalidTransitionError(`the manual task is ${now?.status ?? task.status}, not OPEN (the action is ${result.previous})`);
  }
  return deps.db.manualTask.findUniqueOrThrow({ where: { id } });
}
