import type { ActionStatus } from '../../generated/prisma/enums.js';
import type { HandlerKind } from '../../handlers/types.js';
import type { Actor } from '../deps.js';

/** A slot of this process's worker, claimed in the same statement as the approval or the creation that makes the action APPROVED (see LocalStarter.reserve). */
export interface Claim {
  attempt: number;
  chain: readonly string[];
  runner: string;
}

/**
 * Every change in an action's life after it was created, as one typed step. The planner
 * (planner.ts) turns an action and a step into everything the change writes; the committer
 * (committer.ts) writes it in one statement. Callers authorise, choose the step, commit.
 */
export type Step =
  /** `graceUntil`: an approved action of a type that cannot be undone waits until then, cancellable (its new scheduledFor). */
  | {
      kind: 'decide';
      decision: 'approve' | 'reject';
      text: string | null;
      actor: Actor;
      via?: { tokenId: string };
      graceUntil?: Date | null;
      /** The revision decided on (after `edit`, the new one); recorded with the decision. */
      revision?: number;
      /** An approver's edit of the payload before approving: it becomes revision `revision`. */
      edit?: PayloadEdit;
      /** With a quorum: the distinct approvals of this revision, this one included; below `required` the action stays PENDING. */
      quorum?: { approvals: number; required: number };
      /**
       * With `edit`: the rules in force ask more approvals of the edited payload than the action
       * asked so far; the action's `approvalsRequired` rises to `quorum.required`.
       */
      quorumRaised?: boolean;
      /** A new approval link for the user (an edit voids the old ones while approvals are still needed). */
      reask?: NewApprovalToken | null;
      /**
       * Claim it too, in the same statement, for this process to run it at once (see worker.ts):
       * an approval that makes it APPROVED makes it EXECUTING, with both status updates. Only for
       * an action that is due and needs no check at dispatch; ignored with a grace period.
       */
      claim?: Claim;
    }
  | { kind: 'cancel'; reason: string | null; actor: Actor }
  | { kind: 'expire'; expiresAt: Date }
  /** The recheck before dispatch refused it (e.g. a payment with no person's approval). */
  | { kind: 'refuse'; reason: string }
  /** A worker takes an APPROVED action that is due: APPROVED → EXECUTING. */
  /** `runner`: the process that runs it itself, without a queue job (null or absent: a queue job). */
  | { kind: 'claim'; attempt: number; chain: readonly string[]; runner?: string | null }
  /** A retry or a recovered job takes an EXECUTING action again; `interrupted` are the executions a dead worker left RUNNING. */
  | { kind: 'resume'; attempt: number; interrupted: readonly string[] }
  /** A handler starts an attempt whose repeat must be known (check, none): its RUNNING row is written first. */
  | { kind: 'start'; execution: NewExecution; notes: readonly string[] }
  /** A handler's attempt failed; `final` ends the action (retries used up). */
  | {
      kind: 'attemptFailed';
      execution: ExecutionRef;
      attempt: number;
      maxAttempts: number;
      error: string;
      permanent: boolean;
      final: boolean;
      /** What the chain does next, for the status message (e.g. "trying order.email…"). */
      next: string | null;
      notes: readonly string[];
    }
  /** No handler of the chain could carry it out. */
  | { kind: 'fail'; attempts: number; error: string; notes: readonly string[] }
  /** A handler cannot finish inside the job: the action waits for whatever settles it (an operator, a callback). */
  | { kind: 'wait'; execution: ExecutionRef; key: string; message: string; task: { id: string; instructions: string } | null; notes: readonly string[] }
  /** The outcome arrived (at once from the handler, or later from an operator or a callback): EXECUTING → COMPLETED with a receipt. */
  | {
      kind: 'settle';
      execution: ExecutionRef;
      attempt: number;
      handler: string;
      result: SettledResult;
      receipt: NewReceipt;
      actor: Actor;
      /** Set when an operator completes a manual task: it must still be OPEN. */
      task: { id: string; outcome: Record<string, unknown>; completedById: string } | null;
      notes: readonly string[];
    }
  | { kind: 'rolledBack'; rollback: NewRollback; actor: Actor }
  /** News without a change of status ("no email address is known…"). */
  | { kind: 'note'; message: string }
  /**
   * No decision came within a rule's escalateAfterMinutes: `to` were asked as well (a link each),
   * `skipped` could not be (handles with no email address). No status move; PENDING only.
   */
  | { kind: 'escalate'; to: readonly string[]; skipped: readonly string[]; afterMinutes: number }
  /** A wrong one-time code on an approval link; `locked` when it was the last allowed. */
  | { kind: 'codeRejected'; attemptsLeft: number; attempts: number; actor: Actor };

export type StepKind = Step['kind'];

/** An execution row to write: new (`insert`) or one written before (`id`). */
export type ExecutionRef = { id: string; handler: string; insert: NewExecution | null };

export interface NewExecution {
  id: string;
  attempt: number;
  handler: string;
  kind: HandlerKind;
  startedAt: Date;
}

export interface SettledResult {
  provider: string;
  externalRef: string | null;
  data: Record<string, unknown>;
  rollbackData: Record<string, unknown> | null;
}

export interface NewReceipt {
  id: string;
  receiptNumber: string;
  createdAt: Date;
  /** The canonical JSON the signature covers (receiptStatement), stored so anyone can check it. */
  statement: string;
  /** Ed25519 over the receipt's statement, and the signing key's id; null when no signer is configured. */
  signature: string | null;
  keyId: string | null;
}

export interface NewRollback {
  id: string;
  reason: string;
  handler: string | null;
  ok: boolean;
  error: string | null;
  data: Record<string, unknown> | null;
  startedAt: Date;
}

/** What the planner needs to know of the action (what the caller read, or the job carries). */
export interface ActionRef {
  id: string;
  spaceId: string;
  /** For messages and receipts. */
  type?: string;
  priority?: number;
  scheduledFor?: Date | null;
  payload?: unknown;
  attempts?: number;
}

/** A status the step may start from; `null`: any status (notes, audit-only steps). */
export type FromStatuses = readonly ActionStatus[] | null;

/** An edit of the payload by an approver (spec §5). */
export interface PayloadEdit {
  payload: unknown;
  payloadHash: string;
  /** [{ path, from, to }] against the previous revision. */
  diff: unknown[];
  /** In words, for the status stream: what changed. */
  summary: string;
  /** Revision 1 as the agent sent it, written with the first edit (null when revisions exist already). */
  original: { payload: unknown; payloadHash: string; author: string } | null;
}

/** An approval link's token, as stored (hashed). */
export interface NewApprovalToken {
  id: string;
  tokenHash: string;
  codeHash: string | null;
  recipient: string;
  expiresAt: Date;
}
