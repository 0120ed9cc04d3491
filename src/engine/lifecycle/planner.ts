import type { ActionStatus, SafetyRuleKind } from '../../generated/prisma/enums.js';
import type { CreateExtras, NewAction } from './committer.js';
import type { AuditInput } from '../audit.js';
import type { Actor } from '../deps.js';
import type { ConditionResult } from '../safety.js';
import { assertTransition } from '../statuses.js';
import { escalationMessage, type EscalationPlan } from '../escalation.js';
import type { ActionRef, Claim, ExecutionRef, FromStatuses, NewApprovalToken, NewExecution, NewReceipt, NewRollback, SettledResult, Step } from './steps.js';

/** Columns of the action a step may set besides its status. */
export interface ActionColumns {
  attempts?: number;
  result?: Record<string, unknown> | null;
  error?: string | null;
  completedAt?: Date | null;
  decidedAt?: Date | null;
  decidedBy?: string | null;
  approvalExpiresAt?: Date | null;
  scheduledFor?: Date | null;
  payload?: unknown;
  payloadHash?: string;
  revision?: number;
  approvalsRequired?: number;
  runner?: string | null;
}

/** A row besides the action's that a step writes, only when the move itself happens. */
export type Write =
  | { kind: 'execution.insert'; execution: NewExecution; status: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'WAITING'; finishedAt: Date | null; outcome: ExecutionOutcome }
  | { kind: 'execution.update'; id: string; status: 'SUCCEEDED' | 'FAILED' | 'WAITING'; finishedAt: Date | null; outcome: ExecutionOutcome }
  | { kind: 'executions.interrupt'; ids: readonly string[]; error: string; at: Date }
  | { kind: 'receipt.insert'; receipt: NewReceipt; executionId: string; provider: string; handler: string; externalRef: string | null; data: Record<string, unknown>; at: Date }
  | { kind: 'task.open'; id: string; executionId: string; instructions: string }
  | { kind: 'task.complete'; id: string; outcome: Record<string, unknown>; completedById: string; at: Date }
  | { kind: 'tokens.void'; at: Date }
  /** Open manual tasks of an action that ends without them (failed, or settled by a callback). */
  | { kind: 'tasks.cancel'; at: Date }
  | { kind: 'token.insert'; token: NewApprovalToken; at: Date }
  | { kind: 'decision.insert'; approver: string; decision: 'approve' | 'reject'; comment: string | null; revision: number; at: Date }
  | { kind: 'revision.insert'; revision: number; payload: unknown; payloadHash: string; author: string; diff: unknown[] | null; at: Date }
  | { kind: 'token.use'; id: string; at: Date }
  | { kind: 'rollback.insert'; rollback: NewRollback; requestedById: string; at: Date };

export interface ExecutionOutcome {
  /** While WAITING: what settles it (see settleWaiting). */
  waitKey?: string | null;
  error?: string | null;
  permanent?: boolean;
  externalRef?: string | null;
  rollbackData?: Record<string, unknown> | null;
}

/** A condition the move needs besides the status, checked in the same statement. */
export type Guard =
  /** Not before its scheduled time (50 ms of clock slack). */
  | { kind: 'due'; now: Date }
  | { kind: 'taskOpen'; id: string }
  | { kind: 'tokenUsable'; id: string }
  /** A decision on the revision the decider saw: an edit since then (a new revision, maybe a larger quorum) voids it. */
  | { kind: 'revisionIs'; revision: number };

/** Everything one step writes and asks of the world, planned from the action and the step alone. */
export interface Plan {
  actionId: string;
  spaceId: string;
  step: Step['kind'];
  /** The statuses the move may start from (checked by the committer under the row lock); null: any. */
  from: FromStatuses;
  /** The new status; null: the status stays. */
  to: ActionStatus | null;
  set: ActionColumns;
  guards: Guard[];
  /** Status updates written before the move (e.g. "no integration configured, trying …"): they carry the status the action had. */
  notes: string[];
  /** Status updates of the step itself, after the notes (each bumps statusSeq): they carry the new status (or the current one). */
  messages: string[];
  /** A status passed through on the way to `to` (approved and claimed at once): the first `messages` of {@link messages} carry it. */
  via: { status: ActionStatus; messages: number } | null;
  audit: AuditInput[];
  writes: Write[];
  /** After commit: queue the action (it became APPROVED). */
  enqueue: boolean;
  /** After commit: take its job off the queue when it was APPROVED before (cancelled). */
  dequeueIfWasApproved: boolean;
  /** When the step happened (status updates, audit entries, updatedAt). */
  at: Date;
}

/**
 * The pure planner: turns an action and a step into the status move (checked against the
 * transition table), the columns, the status updates, the audit entries, the other rows and the
 * after-commit effects. It reads nothing and writes nothing.
 *
 * @throws InvalidTransitionError when a move of the step is not in the transition table.
 */
export function planStep(action: ActionRef, step: Step, at: Date): Plan {
  const plan: Plan = {
    actionId: action.id,
    spaceId: action.spaceId,
    step: step.kind,
    from: null,
    to: null,
    set: {},
    guards: [],
    notes: [],
    messages: [],
    via: null,
    audit: [],
    writes: [],
    enqueue: false,
    dequeueIfWasApproved: false,
    at,
  };
  const move = (from: readonly ActionStatus[], to: ActionStatus) => {
    for (const f of from) assertTransition(f, to);
    plan.from = from;
    plan.to = to;
  };
  const audit = (entry: AuditContent, actor: Actor | 'system' = 'system') => {
    const who = actor === 'system' ? { actor: 'system', ip: null, userAgent: null } : { actor: actor.id, ip: actor.ip ?? null, userAgent: actor.userAgent ?? null };
    plan.audit.push({ ...entry, ...who, spaceId: action.spaceId, actionId: action.id } as AuditInput);
  };

  switch (step.kind) {
    case 'decide': {
      const approve = step.decision === 'approve';
      const revision = step.revision ?? 1;
      if (step.edit) {
        const e = step.edit;
        plan.set.payload = e.payload;
        plan.set.payloadHash = e.payloadHash;
        plan.set.revision = revision;
        if (e.original) plan.writes.push({ kind: 'revision.insert', revision: 1, payload: e.original.payload, payloadHash: e.original.payloadHash, author: e.original.author, diff: null, at });
        plan.writes.push({ kind: 'revision.insert', revision, payload: e.payload, payloadHash: e.payloadHash, author: step.actor.id, diff: e.diff, at });
        plan.messages.push(`Edited before approval (revision ${revision}): ${e.summary}`);
        audit({ event: 'action.revised', data: { revision, payloadHash: e.payloadHash, diff: e.diff, ...(step.quorumRaised && step.quorum ? { approvalsRequired: step.quorum.required } : {}) } }, step.actor);
        if (step.quorumRaised && step.quorum) {
          plan.set.approvalsRequired = step.quorum.required;
          plan.messages.push(`The safety rules ask ${step.quorum.required} approvals of the edited payload`);
        }
      }
      plan.writes.push({ kind: 'decision.insert', approver: step.actor.id, decision: step.decision, comment: step.text, revision, at });
      if (approve && step.quorum && step.quorum.approvals < step.quorum.required) {
        // A quorum not reached yet: the approval is recorded, the action stays PENDING.
        const { approvals, required } = step.quorum;
        plan.from = ['PENDING'];
        const more = required - approvals;
        plan.messages.push(`Approval ${approvals} of ${required} recorded for revision ${revision}; waiting for ${more} more approver${more === 1 ? '' : 's'}`);
        audit({ event: 'approval.recorded', data: { comment: step.text, revision, approvals, required } }, step.actor);
        if (step.edit) plan.writes.push({ kind: 'tokens.void', at });
        if (step.reask) plan.writes.push({ kind: 'token.insert', token: step.reask, at });
        break;
      }
      move(['PENDING'], approve ? 'APPROVED' : 'REJECTED');
      // An approval is of one revision: moved on since (an approver's edit), it does not count.
      if (approve && !step.edit && step.revision !== undefined) plan.guards.push({ kind: 'revisionIs', revision: step.revision });
      plan.set = { ...plan.set, decidedAt: at, decidedBy: step.actor.id, approvalExpiresAt: null };
      plan.messages.push(approve ? 'Approved' : `Rejected${step.text ? `: ${step.text}` : ''}`);
      if (step.via) {
        plan.guards.push({ kind: 'tokenUsable', id: step.via.tokenId });
        plan.writes.push({ kind: 'token.use', id: step.via.tokenId, at });
      }
      plan.writes.push({ kind: 'tokens.void', at });
      if (approve) {
        audit({ event: 'action.approved', data: { comment: step.text, ...(step.quorum ? { approvals: step.quorum.approvals, required: step.quorum.required } : {}), ...(step.revision && step.revision > 1 ? { revision } : {}) } }, step.actor);
        if (step.graceUntil) {
          plan.set.scheduledFor = step.graceUntil;
          plan.messages.push(graceMessage(step.graceUntil));
        }
        audit(queuedEntry(step.graceUntil ? { ...action, scheduledFor: step.graceUntil } : action));
        if (step.claim && !step.graceUntil) {
          // Approved and claimed in one move (APPROVED → EXECUTING as the claim below would).
          assertTransition('APPROVED', 'EXECUTING');
          plan.via = { status: 'APPROVED', messages: plan.messages.length };
          plan.to = 'EXECUTING';
          plan.set.attempts = step.claim.attempt;
          plan.set.runner = step.claim.runner;
          plan.messages.push(EXECUTING_MESSAGE);
          audit(startedEntry(step.claim));
        } else plan.enqueue = true;
      } else {
        audit({ event: 'action.rejected', data: { reason: step.text ?? '' } }, step.actor);
      }
      break;
    }
    case 'cancel':
      move(['PENDING', 'APPROVED'], 'CANCELLED');
      plan.set = { decidedAt: at, decidedBy: step.actor.id, approvalExpiresAt: null };
      plan.messages.push(`Cancelled${step.reason ? `: ${step.reason}` : ''}`);
      plan.writes.push({ kind: 'tokens.void', at });
      audit({ event: 'action.cancelled', data: { reason: step.reason } }, step.actor);
      plan.dequeueIfWasApproved = true;
      break;
    case 'expire':
      move(['PENDING'], 'EXPIRED');
      plan.set = { approvalExpiresAt: null };
      plan.messages.push('The approval window closed without a decision');
      plan.writes.push({ kind: 'tokens.void', at });
      audit({ event: 'action.expired', data: { expiresAt: step.expiresAt.toISOString() } });
      break;
    case 'refuse': {
      move(['APPROVED'], 'FAILED');
      const reason = `Refused before execution: ${step.reason}; nothing was executed`;
      plan.set = { error: reason };
      plan.messages.push(reason);
      audit({ event: 'execution.refused', data: { reason } });
      break;
    }
    case 'claim':
      move(['APPROVED'], 'EXECUTING');
      plan.guards.push({ kind: 'due', now: at });
      plan.set = { attempts: step.attempt, runner: step.runner ?? null };
      plan.messages.push(EXECUTING_MESSAGE);
      audit(startedEntry(step));
      break;
    case 'resume':
      plan.from = ['EXECUTING'];
      // A queue job runs it from here on.
      plan.set = { attempts: step.attempt, runner: null };
      if (step.interrupted.length) {
        plan.writes.push({
          kind: 'executions.interrupt',
          ids: step.interrupted,
          error: 'the worker stopped or lost its database or Redis during this attempt; the job was recovered',
          at,
        });
        plan.messages.push('Resuming after a worker stopped mid-attempt');
      }
      break;
    case 'start':
      plan.from = ['EXECUTING'];
      plan.notes.push(...step.notes);
      plan.writes.push({ kind: 'execution.insert', execution: step.execution, status: 'RUNNING', finishedAt: null, outcome: {} });
      break;
    case 'attemptFailed': {
      plan.from = ['EXECUTING'];
      plan.notes.push(...step.notes);
      writeExecution(plan, step.execution, 'FAILED', at, { error: step.error, permanent: step.permanent });
      audit({
        event: 'execution.attempt_failed',
        data: { attempt: step.attempt, handler: step.execution.handler, error: step.error, permanent: step.permanent },
      });
      if (step.final) {
        plan.writes.push({ kind: 'tasks.cancel', at });
        const text = step.permanent ? `Failed: ${step.error}` : `Failed after ${step.attempt} attempts: ${step.error}`;
        move(['EXECUTING'], 'FAILED');
        plan.set = { error: text, attempts: step.attempt };
        plan.messages.push(text);
        audit({ event: 'execution.failed', data: { attempts: step.attempt, error: text } });
      } else {
        plan.messages.push(
          step.permanent
            ? `${step.execution.handler} cannot do this: ${step.error}${step.next ? `; trying ${step.next}…` : ''}`
            : `Attempt ${step.attempt} of ${step.maxAttempts} failed: ${step.error}; retrying`,
        );
      }
      break;
    }
    case 'fail': {
      move(['EXECUTING'], 'FAILED');
      plan.writes.push({ kind: 'tasks.cancel', at });
      const text = `Failed: ${step.error}`;
      plan.set = { error: text, attempts: step.attempts };
      plan.notes.push(...step.notes);
      plan.messages.push(text);
      audit({ event: 'execution.failed', data: { attempts: step.attempts, error: text } });
      break;
    }
    case 'wait':
      plan.from = ['EXECUTING'];
      plan.notes.push(...step.notes);
      plan.messages.push(step.message);
      writeExecution(plan, step.execution, 'WAITING', null, { waitKey: step.key });
      if (step.task) plan.writes.push({ kind: 'task.open', id: step.task.id, executionId: step.execution.id, instructions: step.task.instructions });
      break;
    case 'settle': {
      move(['EXECUTING'], 'COMPLETED');
      const { result, receipt } = step;
      plan.set = { result: result.data, completedAt: at, error: null, attempts: step.attempt };
      plan.notes.push(...step.notes);
      plan.messages.push(
        step.task ? `Completed by an operator (receipt ${receipt.receiptNumber})` : `Completed by ${step.handler} (receipt ${receipt.receiptNumber})`,
      );
      writeExecution(plan, step.execution, 'SUCCEEDED', at, { externalRef: result.externalRef, rollbackData: result.rollbackData });
      plan.writes.push({
        kind: 'receipt.insert',
        receipt,
        executionId: step.execution.id,
        provider: result.provider,
        handler: step.handler,
        externalRef: result.externalRef,
        data: result.data,
        at,
      });
      audit(
        {
          event: 'execution.completed',
          data: { attempt: step.attempt, handler: step.handler, receiptNumber: receipt.receiptNumber, externalRef: result.externalRef },
        },
        step.actor,
      );
      if (step.task) {
        plan.guards.push({ kind: 'taskOpen', id: step.task.id });
        plan.writes.push({ kind: 'task.complete', id: step.task.id, outcome: step.task.outcome, completedById: step.task.completedById, at });
        audit({ event: 'manual_task.completed', data: { taskId: step.task.id } }, step.actor);
      } else if (!step.execution.insert) {
        // Settled another way (a provider's callback): a task opened for the same wait is moot.
        plan.writes.push({ kind: 'tasks.cancel', at });
      }
      break;
    }
    case 'rolledBack': {
      const { rollback } = step;
      plan.writes.push({ kind: 'rollback.insert', rollback, requestedById: step.actor.id, at });
      if (rollback.ok) {
        move(['COMPLETED'], 'ROLLED_BACK');
        plan.messages.push(`Rolled back: ${rollback.reason}`);
        audit({ event: 'rollback.succeeded', data: { rollbackId: rollback.id, handler: rollback.handler, reason: rollback.reason } }, step.actor);
      } else {
        // Every attempt is recorded (spec §7), even one that lost a race with a rollback that worked.
        audit(
          { event: 'rollback.failed', data: { rollbackId: rollback.id, handler: rollback.handler, reason: rollback.reason, error: rollback.error ?? 'unknown error' } },
          step.actor,
        );
      }
      break;
    }
    case 'note':
      plan.messages.push(step.message);
      break;
    case 'escalate':
      plan.from = ['PENDING'];
      plan.messages.push(escalationMessage(step));
      audit({ event: 'approval.escalated', data: { afterMinutes: step.afterMinutes, to: [...step.to], skipped: [...step.skipped] } });
      break;
    case 'codeRejected':
      audit({ event: 'approval.code_rejected', data: { attemptsLeft: step.attemptsLeft } }, step.actor);
      if (step.attemptsLeft === 0) audit({ event: 'approval.locked', data: { attempts: step.attempts } }, step.actor);
      break;
    default:
      return assertNever(step);
  }
  return plan;
}

/** The audit entry of an approved action going onto the queue. */
/** What the status stream says while an approved action waits out its grace period. */
export function graceMessage(until: Date): string {
  return `Grace period: runs at ${until.toISOString()} unless cancelled before then`;
}

/** The status update of a claim (APPROVED → EXECUTING), alone or in the statement that approved the action. */
const EXECUTING_MESSAGE = 'Executing';

/** The audit entry of a claim: the attempt it starts and the handler chain it will try. */
function startedEntry(claim: { attempt: number; chain: readonly string[] }): AuditContent {
  return { event: 'execution.started', data: { attempt: claim.attempt, chain: [...claim.chain] } };
}

export function queuedEntry(action: ActionRef): AuditContent {
  return {
    event: 'action.queued',
    data: { priority: action.priority ?? 5, scheduledFor: action.scheduledFor?.toISOString() ?? null },
  };
}

function writeExecution(plan: Plan, ref: ExecutionRef, status: 'SUCCEEDED' | 'FAILED' | 'WAITING', finishedAt: Date | null, outcome: ExecutionOutcome) {
  if (ref.insert) plan.writes.push({ kind: 'execution.insert', execution: ref.insert, status, finishedAt, outcome });
  else plan.writes.push({ kind: 'execution.update', id: ref.id, status, finishedAt, outcome });
}

function assertNever(value: never): never {
  throw new Error(`unknown step ${JSON.stringify(value)}`);
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** An audit entry's event and data; the planner adds who, the space and the action. */
type AuditContent = DistributiveOmit<AuditInput, 'spaceId' | 'actionId' | 'actor' | 'ip' | 'userAgent'>;

export type { ActionRef, ExecutionRef, NewExecution, NewReceipt, NewRollback, SettledResult, Step };

/** The step that records a new action (see createAction): the row, and what the safety rules decided. */
export interface CreateStep {
  action: NewAction;
  actor: Actor;
  /** The rule that refused it (the action is recorded BLOCKED), or null. */
  refusal: { rule: string; kind: SafetyRuleKind; reason: string; text: string } | null;
  /** Whether rate limits applied (said in the first status update). */
  rateLimited: boolean;
  /** How the conditions of the rules in force came out (in the audit; a failed one is also said in the status). */
  conditions?: ConditionResult[];
  /** The standing approval that approved it at creation, in place of a person. */
  grant?: { id: string; createdById: string } | null;
  /** Set when an approved action waits out a grace period (its scheduledFor is then this). */
  graceUntil?: Date | null;
  /** For a PENDING action: where the approval request goes (null: nobody to mail) and its token. */
  approval: { recipient: string | null; expiresAt: Date; token: CreateExtras['token']; escalation?: EscalationPlan | null } | null;
  idempotency: CreateExtras['idempotency'];
  /**
   * A slot of this process's worker for an action approved at creation: it is claimed in the same
   * statement (recorded EXECUTING, as a claim right after would) and runs here. Only for an
   * action that is due and needs no check at dispatch; ignored with a grace period.
   */
  claim?: Claim | null;
}

/** Everything the creating statement writes, and its after-commit effects. */
export interface CreatePlan {
  /** The row as written: EXECUTING when claimed at creation. */
  action: NewAction;
  messages: string[];
  /** Claimed at creation: the first `messages` of {@link messages} carry APPROVED, the last EXECUTING. */
  via: { status: 'APPROVED'; messages: number } | null;
  audit: AuditInput[];
  extras: CreateExtras;
  enqueue: boolean;
}

/** The pure planner of a new action: its first status updates, its first audit entries, its token and idempotency record. */
export function planCreate(step: CreateStep): CreatePlan {
  const { action, actor, refusal, approval } = step;
  const common = { actor: actor.id, ip: actor.ip ?? null, userAgent: actor.userAgent ?? null, spaceId: action.spaceId, actionId: action.id };
  const messages: string[] = [];
  const audit: AuditInput[] = [
    {
      ...common,
      event: 'action.created',
      data: {
        type: action.type,
        status: action.status,
        priority: action.priority,
        requestedBy: action.requestedById,
        payloadHash: action.payloadHash,
        ...(step.conditions?.length ? { conditions: step.conditions } : {}),
      },
    },
  ];
  for (const failed of step.conditions?.filter((c) => c.error) ?? []) {
    messages.push(`The condition of rule ${failed.rule} could not be evaluated (${failed.error}); the rule applies`);
  }
  if (refusal) {
    messages.push(`Refused: ${refusal.text}`);
    audit.push({ ...common, event: 'action.blocked', data: { rule: refusal.rule, kind: refusal.kind, reason: refusal.reason } });
  } else if (action.status === 'PENDING') {
    messages.push("Waiting for the user's approval");
  } else if (step.grant) {
    messages.push(`Approved in advance by standing approval ${step.grant.id}`);
    audit.push({ ...common, actor: step.grant.createdById, ip: null, userAgent: null, event: 'action.approved', data: { comment: null, standingApproval: step.grant.id } });
  } else {
    messages.push(step.rateLimited ? 'Approved by the safety rules (within rate limits)' : 'Approved by the safety rules');
  }
  if (action.status === 'APPROVED' && step.graceUntil) messages.push(graceMessage(step.graceUntil));
  const system = { actor: 'system', ip: null, userAgent: null, spaceId: action.spaceId, actionId: action.id };
  if (action.status === 'APPROVED') audit.push({ ...system, ...queuedEntry(action) } as AuditInput);
  // Never one a standing approval approved: the queue's job checks the grant again before it runs.
  const claim = action.status === 'APPROVED' && !step.graceUntil && !step.grant ? (step.claim ?? null) : null;
  let via: CreatePlan['via'] = null;
  if (claim) {
    // Approved and claimed in one move (APPROVED → EXECUTING as the claim step would).
    assertTransition('APPROVED', 'EXECUTING');
    via = { status: 'APPROVED', messages: messages.length };
    messages.push(EXECUTING_MESSAGE);
    audit.push({ ...system, ...startedEntry(claim) } as AuditInput);
  }
  if (action.status === 'PENDING' && approval) {
    if (!approval.recipient) messages.push('No email address is known for this user: approve or reject through the API');
    const escalation = approval.escalation
      ? { escalation: { rule: approval.escalation.rule, at: approval.escalation.at.toISOString(), afterMinutes: approval.escalation.afterMinutes, to: approval.escalation.to } }
      : {};
    audit.push({ ...system, event: 'approval.requested', data: { expiresAt: approval.expiresAt.toISOString(), recipient: approval.recipient, ...escalation } });
  }
  return {
    action: claim ? { ...action, status: 'EXECUTING', attempts: claim.attempt, runner: claim.runner } : action,
    messages,
    via,
    audit,
    extras: { idempotency: step.idempotency, token: action.status === 'PENDING' ? (approval?.token ?? null) : null },
    enqueue: action.status === 'APPROVED' && !claim,
  };
}
