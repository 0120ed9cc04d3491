import type { Action, Prisma } from '../../generated/prisma/client.js';
import { applyEffects, type EngineDeps } from '../deps.js';
import { InvalidTransitionError, NotFoundError } from '../errors.js';
import { statusEvent, TxEffects, type StatusEvent } from '../status-event.js';
import { buildCreateSql, commitPlan, prismaRunner, type CommitResult } from './committer.js';
import { planCreate, planStep, type CreateStep, type Guard, type Plan } from './planner.js';
import type { ActionRef, Step } from './steps.js';
import { scopeOf } from '../pending-scopes.js';

export type { ActionRef, Step } from './steps.js';
export type { CreateStep } from './planner.js';
export type { NewAction } from './committer.js';

/** What the lifecycle writer runs on. */
export type LifecycleDeps = Pick<EngineDeps, 'db' | 'statusPublisher' | 'queue' | 'logger' | 'clock' | 'webhooks' | 'pendingScopes'>;

export interface CommitOptions {
  /**
   * `false`: do not wait for the status events to reach Redis (the worker's bookkeeping steps;
   * they are still published, in order). Default: wait, so an API answer follows its events.
   */
  awaitPublish?: boolean;
  /**
   * Commit inside the caller's transaction; its effects go to `effects` and happen when that
   * transaction commits (see inTransaction).
   */
  tx?: { client: Prisma.TransactionClient; effects: TxEffects };
}

/**
 * The one writer of an action's state after creation: plans the step (pure), writes it in one
 * statement (committer.ts), then publishes its status events and queues or dequeues its job.
 * Returns the result whether or not the move happened (a claim that lost a race, a step
 * whose status moved on); {@link applyStep} throws instead. The moved row comes back whole for
 * decisions, cancellation, expiry, claim, resume and rollback; for the worker's other steps
 * (start, attempt failed, fail, wait, settle, note, code guess, refusal) without its `payload`
 * and `result` (null), which those callers do not read.
 *
 * @throws NotFoundError when there is no such action.
 */
export async function commitStep(deps: LifecycleDeps, action: ActionRef, step: Step, options: CommitOptions = {}): Promise<CommitResult & { plan: Plan }> {
  const plan = planStep(action, step, deps.clock());
  const result = await commitPlan(prismaRunner(options.tx?.client ?? deps.db), plan);
  if (!result) throw new NotFoundError(`no action with id ${action.id}`, ['id']);
  // What this process remembers of a PENDING action follows its moves (see PendingScopes).
  if (result.action?.status === 'PENDING') deps.pendingScopes?.remember(scopeOf(result.action));
  else deps.pendingScopes?.forget(action.id);
  if (result.action) {
    const effects = options.tx?.effects ?? new TxEffects();
    collectEffects(plan, result, effects);
    if (!options.tx) await applyEffects(deps, effects, { awaitPublish: options.awaitPublish });
  }
  return { ...result, plan };
}

/** {@link commitStep}, and the moved action; throws InvalidTransitionError naming both statuses when the move did not happen. */
export async function applyStep(deps: LifecycleDeps, action: ActionRef, step: Step, options: CommitOptions = {}): Promise<Action> {
  const result = await commitStep(deps, action, step, options);
  if (result.action) return result.action;
  throw notMovedError(result.plan, result.previous);
}

/** Why a planned move did not happen, naming the status found and the one(s) it needed. */
export function notMovedError(plan: Plan, previous: Action['status']): InvalidTransitionError {
  const target = plan.to ? `move the action to ${plan.to}` : `record ${plan.step} for the action`;
  if (plan.from && !plan.from.includes(previous)) {
    return new InvalidTransitionError(`cannot ${target}: it is ${previous} now, not ${plan.from.join(' or ')}`);
  }
  const guard = plan.guards[0];
  return new InvalidTransitionError(`cannot ${target}: ${guard ? GUARD_TEXT[guard.kind] : 'it changed meanwhile'}`);
}

const GUARD_TEXT: Record<Guard['kind'], string> = {
  due: 'it is scheduled for later',
  taskOpen: 'the manual task is no longer OPEN',
  tokenUsable: 'the approval link was used or voided meanwhile',
  revisionIs: 'an approver edited it meanwhile (a new revision); review the new revision and decide again',
};

/** The status events, queue and dequeue requests of a committed plan. */
export function collectEffects(plan: Plan, result: CommitResult, effects: TxEffects): void {
  const action = result.action!;
  const first = action.statusSeq - plan.notes.length - plan.messages.length;
  plan.notes.forEach((note, i) => effects.push(statusEventOf({ ...action, status: result.previous }, first + i + 1, note, plan.at)));
  plan.messages.forEach((message, i) =>
    effects.push(statusEventOf(plan.via && i < plan.via.messages ? { ...action, status: plan.via.status } : action, first + plan.notes.length + i + 1, message, plan.at)),
  );
  if (plan.enqueue) effects.enqueue.push(action);
  if (plan.dequeueIfWasApproved && result.previous === 'APPROVED') effects.dequeue.push(action.id);
  if (result.webhooks) effects.webhooks.push(...result.webhooks);
}

/** The status event of a committed update (`seq`) of the moved action. */
export function statusEventOf(action: Pick<Action, 'id' | 'spaceId' | 'userId' | 'type' | 'status'>, seq: number, message: string | null, at: Date): StatusEvent {
  return statusEvent(action, { seq, status: action.status, message, createdAt: at });
}

/**
 * Records a new action in one statement (the row, its status updates, its first audit entries,
 * its idempotency record and approval token), then publishes and queues it. With a claim (see
 * CreateStep.claim) an approved action is recorded EXECUTING and not queued: the caller starts it.
 * A repeated idempotency key makes the statement fail as a whole (see isUniqueViolation).
 */
export async function commitCreate(deps: LifecycleDeps, step: CreateStep): Promise<Action> {
  const plan = planCreate(step);
  const { text, values } = buildCreateSql(plan.action, plan.messages, plan.audit, plan.extras, plan.via);
  const [row] = await prismaRunner(deps.db).query<Action & { _webhooks: string[] | null }>(text, values);
  const { _webhooks: webhooks, ...action } = row!;
  // Its approver's decision need not read it again (in this process).
  if (action.status === 'PENDING') deps.pendingScopes?.remember(scopeOf(action));
  const effects = new TxEffects();
  if (webhooks) effects.webhooks.push(...webhooks);
  plan.messages.forEach((message, i) =>
    effects.push(statusEventOf(plan.via && i < plan.via.messages ? { ...action, status: plan.via.status } : action, i + 1, message, plan.action.createdAt)),
  );
  if (plan.enqueue) effects.enqueue.push(action);
  await applyEffects(deps, effects);
  return action;
}

/**
 * An action claimed in the statement that approved it (a create or a decision with a claim) as
 * that approval left it: APPROVED, without the claim's status update. The caller answers with
 * this, as it would without the claim; the EXECUTING event follows at once.
 */
export function asApproved(claimed: Action): Action {
  return { ...claimed, status: 'APPROVED', statusSeq: claimed.statusSeq - 1, attempts: 0, runner: null };
}

/** Whether a raw statement failed on a unique constraint (PostgreSQL 23505), e.g. a repeated idempotency key. */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; meta?: { code?: string; driverAdapterError?: { cause?: { originalCode?: string; kind?: string } } }; cause?: unknown };
  if (e?.code === 'P2002' || e?.code === '23505') return true;
  if (e?.meta?.code === '23505') return true;
  const cause = e?.meta?.driverAdapterError?.cause;
  return cause?.originalCode === '23505' || cause?.kind === 'UniqueConstraintViolation';
}

/** What deciding or cancelling an action needs to know of it first (who may, and what the queued entry records). */
export interface ActionScopeRow {
  id: string;
  spaceId: string;
  userId: string;
  requestedById: string;
  type: string;
  priority: number;
  scheduledFor: Date | null;
  revision: number;
  approvalsRequired: number;
  status: Action['status'];
  payloadHash: string;
}

/** Reads an action's scope in one short statement (the pool directly where there is one); null when there is none. */
export async function readActionScope(deps: Pick<LifecycleDeps, 'db'>, id: string): Promise<ActionScopeRow | null> {
  const [row] = await prismaRunner(deps.db).query<ActionScopeRow>(
    'SELECT "id", "spaceId", "userId", "requestedById", "type", "priority", "scheduledFor", "revision", "approvalsRequired", "status", "payloadHash" FROM "Action" WHERE "id" = $1::uuid',
    [id],
  );
  return row ?? null;
}
