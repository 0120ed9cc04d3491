import type { Principal } from '../context.js';
import type { ManualTask, Prisma } from '../generated/prisma/client.js';
import type { Actor, EngineDeps } from './deps.js';
import { ForbiddenError, InvalidTransitionError, NotFoundError } from './errors.js';
import { providerOf } from './config-cache.js';
import { lateManualExecution, settleExecution } from './settle.js';

/**
 * completeManualTask: an operator (or admin) reports the work done, and the action settles through
 * the one settle path (settle.ts) in the lifecycle writer's one statement: the task closes (if
 * still OPEN), its execution succeeds, a signed receipt carries the outcome, the action completes.
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
  // The provider the action names (an order's), else the operator did it.
  const named = providerOf(task.action.payload);
  const provider = named === '*' ? 'operator' : named;
  const externalRef = typeof data.reference === 'string' ? data.reference : null;
  // The task's execution: the manual handler's, or an interrupted handler's whose outcome the
  // operator confirms (repeat `none`); a task opened before executions were linked to tasks gets
  // its execution row now.
  const linked = task.executionId
    ? await deps.db.execution.findUnique({ where: { id: task.executionId }, select: { id: true, handler: true, attempt: true } })
    : null;
  const execution = linked ? { id: linked.id, handler: linked.handler, insert: null } : lateManualExecution(task.action.attempts, task.createdAt);
  try {
    await settleExecution(deps, task.action, execution, linked?.attempt ?? task.action.attempts, {
      result: { provider, externalRef, data, rollbackData: null },
      actor,
      task: { id, completedById: principal.id },
    });
  } catch (error) {
    if (!(error instanceof InvalidTransitionError)) throw error;
    const now = await deps.db.manualTask.findUnique({ where: { id }, select: { status: true } });
    throw new InvalidTransitionError(`the manual task is ${now?.status ?? task.status}, not OPEN (${error.message})`);
  }
  return deps.db.manualTask.findUniqueOrThrow({ where: { id } });
}
