import { randomUUID } from 'node:crypto';
import type { Action } from '../generated/prisma/client.js';
import type { Actor, EngineDeps } from './deps.js';
import { InvalidTransitionError, NotFoundError } from './errors.js';
import { commitStep } from './lifecycle/index.js';
import type { CommitResult } from './lifecycle/committer.js';
import type { ExecutionRef, NewReceipt, SettledResult } from './lifecycle/steps.js';
import { approvalsOf, newReceipt, type ReceiptStatementInput } from './receipts.js';

/** The outcome of something that finished outside the job. */
export interface Settlement {
  result: Omit<SettledResult, 'rollbackData'> & { rollbackData?: Record<string, unknown> | null };
  actor: Actor;
  /** When an operator finishes it through a manual task: the task, which must still be OPEN. */
  task?: { id: string; completedById: string } | null;
}

/**
 * The one settle path for work that finished outside its job. A handler that cannot finish at
 * once answers `waiting` with a key; whatever finishes the work later — an operator completing
 * the manual task today, a provider's callback or a webhook's reply next — settles it here by
 * that key: the waiting execution succeeds, a signed receipt binds the outcome, and the action
 * moves EXECUTING → COMPLETED, in the lifecycle writer's one statement.
 *
 * @throws NotFoundError when nothing waits under `key` (in `spaceId`, when given).
 */
export async function settleWaiting(deps: EngineDeps, key: string, settlement: Settlement, spaceId?: string): Promise<CommitResult> {
  const execution = await deps.db.execution.findFirst({
    where: { waitKey: key, status: 'WAITING', ...(spaceId ? { action: { spaceId } } : {}) },
    include: { action: true },
  });
  if (!execution) throw new NotFoundError(`nothing is waiting for ${key}`, ['key']);
  return settleExecution(deps, execution.action, { id: execution.id, handler: execution.handler, insert: null }, execution.attempt, settlement);
}

/**
 * The other outcome of work that finished outside its job: it failed (a provider's callback
 * rejected it). The execution waiting under `key` fails, and so does the action, with `error`,
 * in one statement; nothing is retried or handed on.
 *
 * @throws NotFoundError when nothing waits under `key`; InvalidTransitionError when the action is no longer EXECUTING.
 */
export async function failWaiting(deps: EngineDeps, key: string, error: string, spaceId?: string): Promise<CommitResult> {
  const execution = await deps.db.execution.findFirst({
    where: { waitKey: key, status: 'WAITING', ...(spaceId ? { action: { spaceId } } : {}) },
    include: { action: true },
  });
  if (!execution) throw new NotFoundError(`nothing is waiting for ${key}`, ['key']);
  const committed = await commitStep(deps, execution.action, {
    kind: 'attemptFailed',
    execution: { id: execution.id, handler: execution.handler, insert: null },
    attempt: execution.attempt,
    maxAttempts: execution.attempt,
    error,
    permanent: true,
    final: true,
    next: null,
    notes: [],
  });
  if (!committed.action) throw new InvalidTransitionError(`cannot fail the action: it is ${committed.previous} now, not EXECUTING`);
  return committed;
}

/**
 * Settles `action` through `execution` (see {@link settleWaiting}); the receipt binds the handlers
 * tried in that attempt. Throws InvalidTransitionError naming the status (or the task) when the
 * move did not happen.
 */
export async function settleExecution(deps: EngineDeps, action: Action, execution: ExecutionRef, attempt: number, settlement: Settlement): Promise<CommitResult> {
  const { result } = settlement;
  const tried = await deps.db.execution.findMany({
    where: { actionId: action.id, attempt },
    orderBy: { startedAt: 'asc' },
    select: { id: true, handler: true, status: true },
  });
  // An operator who settles another handler's execution confirms what that handler did (an
  // interrupted attempt that could not be repeated safely): the receipt says so.
  const confirmed = settlement.task && execution.handler !== 'manual';
  const handlerPath = [
    ...tried.filter((e) => e.id !== execution.id).map((e) => ({ handler: e.handler, outcome: e.status })),
    { handler: execution.handler, outcome: confirmed ? 'CONFIRMED_BY_OPERATOR' : 'SUCCEEDED' },
  ];
  const committed = await commitStep(deps, action, {
    kind: 'settle',
    execution,
    attempt,
    handler: execution.handler,
    result: { ...result, rollbackData: result.rollbackData ?? null },
    receipt: receiptFor(deps, action, handlerPath, execution.handler, result, await quorumApprovals(deps, action)),
    actor: settlement.actor,
    task: settlement.task ? { id: settlement.task.id, outcome: result.data, completedById: settlement.task.completedById } : null,
    notes: [],
  });
  if (!committed.action) {
    if (committed.previous !== 'EXECUTING') throw new InvalidTransitionError(`cannot settle the action: it is ${committed.previous} now, not EXECUTING`);
    throw new InvalidTransitionError('cannot settle the action: its manual task is no longer OPEN');
  }
  return committed;
}

/** A new signed receipt for `action`, completed by `handler` after the handlers of `handlerPath` (the last is `handler`). */
export function receiptFor(
  deps: Pick<EngineDeps, 'clock' | 'signer'>,
  action: Pick<Action, 'id' | 'type' | 'payloadHash' | 'decidedBy' | 'decidedAt'> & { revision?: number },
  handlerPath: ReadonlyArray<{ handler: string; outcome: string }>,
  handler: string,
  result: Pick<SettledResult, 'provider' | 'externalRef' | 'data'>,
  /** Every approval of a quorum (see {@link quorumApprovals}); default: the one decision on the action. */
  approvals?: ReceiptStatementInput['approvals'],
): NewReceipt {
  return newReceipt(deps, {
    action: { id: action.id, type: action.type, revision: action.revision ?? 1, payloadHash: action.payloadHash },
    approvals: approvals ?? approvalsOf(action),
    handlerPath,
    handler,
    provider: result.provider,
    externalRef: result.externalRef,
    data: result.data,
  });
}

/**
 * The approvals a receipt binds for an action that needed several (a quorum): every approver's
 * approval of the revision that ran, oldest first. Undefined for one approval (the action's own
 * decidedBy says it), so the common path reads nothing more.
 */
export async function quorumApprovals(
  deps: Pick<EngineDeps, 'db'>,
  action: Pick<Action, 'id' | 'approvalsRequired' | 'revision'>,
): Promise<ReceiptStatementInput['approvals'] | undefined> {
  if ((action.approvalsRequired ?? 1) <= 1) return undefined;
  const decisions = await deps.db.approvalDecision.findMany({
    where: { actionId: action.id, revision: action.revision, decision: 'approve' },
    orderBy: { createdAt: 'asc' },
    select: { approver: true, createdAt: true },
  });
  return decisions.map((d) => ({ decidedBy: d.approver, decidedAt: d.createdAt }));
}

/** The manual execution row of a task opened before executions were linked to tasks, written when it is settled. */
export function lateManualExecution(attempt: number, startedAt: Date): ExecutionRef {
  const id = randomUUID();
  return { id, handler: 'manual', insert: { id, attempt, handler: 'manual', kind: 'manual', startedAt } };
}
