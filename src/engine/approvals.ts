import type { Principal } from '../context.js';
import type { Action, Prisma } from '../generated/prisma/client.js';
import { describeAction, renderApprovalEmail, renderOneTimeCodeEmail } from '../mail/approval-email.js';
import { randomUUID } from 'node:crypto';
import {
  MAX_CODE_ATTEMPTS,
  payloadHash,
  hashApprovalToken,
  isWellFormedToken,
  newApprovalToken,
  newOneTimeCode,
  normalizeOneTimeCode,
  tokenState,
  verifyCode,
  type TokenState,
} from './approval-tokens.js';
import { inTransaction, type Actor, type EngineDeps } from './deps.js';
import type { TxEffects } from './status-event.js';
import { applyStep, asApproved, commitStep, notMovedError, readActionScope, type ActionScopeRow } from './lifecycle/index.js';
import { ForbiddenError, InvalidTransitionError, NotFoundError } from './errors.js';
import { assertReadable, canCancel, canDecide } from './policy.js';
import { describeDiff, payloadDiff } from './payload-diff.js';
import type { PayloadEdit } from './lifecycle/steps.js';
import { graceUntil } from './safety.js';
import { evaluateRulesOn, refusalError } from './rule-inputs.js';

/** An approval email to send once the creating statement has committed. */
export interface PendingApprovalMail {
  action: Action;
  to: string;
  token: string;
  code: string | null;
  expiresAt: Date;
  requestedBy: { name: string; role: string };
  userHandle: string;
  /** For a new revision: what the edit changed, in words; and the approvals already recorded. */
  revisionChange?: string | null;
  approvalsRecorded?: number;
}

/** What a new PENDING action's approval request writes (its token) and mails after commit. */
export interface ApprovalRequest {
  token: { id: string; tokenHash: string; codeHash: string | null; recipient: string; expiresAt: Date } | null;
  /** The mail to send once the action is recorded (its `action` is set then); null when the user has no email address. */
  mail: Omit<PendingApprovalMail, 'action'> | null;
}

/**
 * Before the creating statement: when the user has an email address, a single-use token (only
 * its hash is stored) bound to the payload, and a one-time code for types that need one. With no
 * address there is nobody to mail (the creation says so in a status update).
 */
export async function prepareApprovalRequest(
  deps: EngineDeps,
  action: Pick<Action, 'type' | 'requestedById'>,
  user: { email: string | null; handle: string },
  expiresAt: Date,
): Promise<ApprovalRequest> {
  if (!user.email) return { token: null, mail: null };
  const { token, tokenHash } = newApprovalToken();
  // A button alone must not decide a payment or purchase: its type asks for a one-time code too.
  const second = deps.types.get(action.type).approvalNeedsCode ? newOneTimeCode() : null;
  const requester = await deps.db.principal.findUniqueOrThrow({ where: { id: action.requestedById }, select: { name: true, role: true } });
  return {
    token: { id: randomUUID(), tokenHash, codeHash: second?.codeHash ?? null, recipient: user.email, expiresAt },
    mail: {
      to: user.email,
      token,
      code: second?.code ?? null,
      expiresAt,
      requestedBy: { name: requester.name, role: requester.role.toLowerCase() },
      userHandle: user.handle,
    },
  };
}

/** After commit: mails the approval request (and the one-time code separately). Failures are logged and shown as a status update, never thrown. */
export async function sendApprovalRequest(deps: EngineDeps, mail: PendingApprovalMail): Promise<void> {
  const approveUrl = `${deps.config.baseUrl}/approvals/${mail.token}`;
  try {
    const message = renderApprovalEmail({
      action: mail.action,
      requestedBy: mail.requestedBy,
      userHandle: mail.userHandle,
      expiresAt: mail.expiresAt,
      approveUrl,
      needsCode: mail.code !== null,
      types: deps.types,
      revisionChange: mail.revisionChange ?? null,
      approvalsRecorded: mail.approvalsRecorded ?? 0,
    });
    await deps.mailer.send({ to: mail.to, ...message });
    if (mail.code) {
      const codeMail = renderOneTimeCodeEmail({
        actionSummary: describeAction(mail.action.type, mail.action.payload, { types: deps.types }).headline,
        code: mail.code,
        expiresAt: mail.expiresAt,
      });
      await deps.mailer.send({ to: mail.to, ...codeMail });
    }
    if (deps.mailer.mode === 'outbox') {
      // No SMTP server: spec §2 wants the link logged so nothing is silently dropped.
      deps.logger.info({ actionId: mail.action.id, approveUrl }, 'approval link (no SMTP_URL set; the mail is in the outbox)');
    }
  } catch (error) {
    deps.logger.error({ err: error, actionId: mail.action.id }, 'approval email could not be sent');
    await commitStep(deps, mail.action, { kind: 'note', message: 'The approval email could not be sent: approve or reject through the API' });
  }
}

export type Decision = 'approve' | 'reject';

const MAX_TEXT = 1000;

function cleanText(text: string | null | undefined): string | null {
  const t = text?.trim();
  return t ? t.slice(0, MAX_TEXT) : null;
}

/**
 * approveAction / rejectAction by API (spec §5). An approver may edit the payload while approving
 * (`payload`): it is validated like a new one and becomes the next revision. With a quorum
 * (`approvalsRequired` > 1) each approver's approval of the current revision is recorded and the
 * action moves on with the last one needed; one rejection rejects; the same approver counts once.
 */
export async function decideAction(
  deps: EngineDeps,
  principal: Principal,
  actor: Actor,
  id: string,
  decision: Decision,
  text: string | null | undefined,
  payload?: unknown,
  /** The revision the approver reviewed (approveAction's `revision`): moved on since, the approval is refused. */
  reviewed?: number | null,
): Promise<Action> {
  // The one approval needed of an unedited payload is one statement that checks the status and
  // the revision itself: what this process remembers of the action will do for it.
  const known = decision === 'approve' && (payload === undefined || payload === null) ? deps.pendingScopes?.get(id) : null;
  if (known && known.approvalsRequired <= 1 && (reviewed ?? known.revision) === known.revision) {
    const decided = await decideInOneStatement(deps, principal, actor, known, decision, cleanText(text), known.revision, false);
    // Moved on meanwhile (another process decided it, an approver edited it): from a fresh read,
    // the same request gets the same answer as if nothing had been remembered.
    if (decided) return decided;
  }
  const action = assertReadable(principal, await readActionScope(deps, id), id);
  if (!canDecide(principal, action)) {
    throw new ForbiddenError(
      principal.id === action.requestedById
        ? 'the principal that requested an action cannot decide it'
        : "only an approver acting for this action's user can decide it",
    );
  }
  const comment = cleanText(text);
  const revision = decision === 'approve' ? (reviewed ?? action.revision) : action.revision;
  if (decision === 'approve' && reviewed !== undefined && reviewed !== null && reviewed !== action.revision) throw movedOn(action.revision, reviewed);
  // An edit is checked before anything is locked: a wrong payload names the field and changes
  // nothing; so does one the rules in force refuse (a changed one only). Its quorum comes from the rules too.
  const edited = payload === undefined || payload === null ? null : validatedEdit(deps, action.type, payload);
  if (edited && action.status !== 'PENDING') throw new InvalidTransitionError(`cannot approve: the action is ${action.status}, not PENDING`);
  const changed = edited !== null && edited.payloadHash !== action.payloadHash;
  const editQuorum = changed ? await approvalsRequiredForEdit(deps, action, edited.payload) : 1;
  if (decision === 'reject' || (action.approvalsRequired <= 1 && !edited)) {
    return (await decideInOneStatement(deps, principal, actor, action, decision, comment, revision, true))!;
  }
  let reaskMail: PendingApprovalMail | null = null;
  const decided = await inTransaction(deps, async (tx, effects) => {
    // The row lock first; the statements after it see every decision committed before it.
    const [current] = await tx.$queryRaw<Array<{ status: string; revision: number; approvalsRequired: number; payload: unknown; payloadHash: string; userId: string }>>`
      SELECT "status", "revision", "approvalsRequired", "payload", "payloadHash", "userId" FROM "Action" WHERE "id" = ${id}::uuid FOR UPDATE`;
    if (!current) throw new NotFoundError(`no action with id ${id}`, ['id']);
    if (current.status !== 'PENDING') throw new InvalidTransitionError(`cannot approve: the action is ${current.status}, not PENDING`);
    // Edited by another approver since this request read it (or since the approver reviewed it): this decision is about an old revision.
    if (current.revision !== revision) throw movedOn(current.revision, revision);
    let edit: PayloadEdit | undefined;
    let next = current.revision;
    if (edited && edited.payloadHash !== current.payloadHash) {
      next += 1;
      const diff = payloadDiff(current.payload, edited.payload);
      const earlier = await tx.actionRevision.count({ where: { actionId: id } });
      edit = {
        payload: edited.payload,
        payloadHash: edited.payloadHash,
        diff,
        summary: describeDiff(diff),
        original: earlier === 0 ? { payload: current.payload, payloadHash: current.payloadHash, author: action.requestedById } : null,
      };
    }
    // Approvals of this revision by others (an edit starts the count again: the old revision's do not cover the new one).
    const others = edit
      ? 0
      : await tx.approvalDecision.count({ where: { actionId: id, revision, decision: 'approve', NOT: { approver: actor.id } } });
    const already = edit ? 0 : await tx.approvalDecision.count({ where: { actionId: id, revision, decision: 'approve', approver: actor.id } });
    if (already) {
      // The same approver twice counts once: nothing new is recorded.
      return tx.action.findUniqueOrThrow({ where: { id } });
    }
    // An edit may raise the quorum (a rule's condition on the new payload asks more), never lower it.
    const quorumRaised = Boolean(edit) && editQuorum > current.approvalsRequired;
    const quorum = { approvals: others + 1, required: quorumRaised ? editQuorum : current.approvalsRequired };
    const done = quorum.approvals >= quorum.required;
    const graceUntil = done ? await graceUntilFor(deps, action) : null;
    // An edit voids the old links; while more approvals are needed, the user is asked again for this revision.
    let reask: { request: ApprovalRequest; expiresAt: Date } | null = null;
    if (edit && !done) {
      const user = await tx.user.findUniqueOrThrow({ where: { id: current.userId }, select: { email: true, handle: true } });
      const expiresAt = new Date(deps.clock().getTime() + deps.config.approvalTtlSeconds * 1000);
      reask = { request: await prepareApprovalRequest(deps, { type: action.type, requestedById: action.requestedById }, user, expiresAt), expiresAt };
    }
    const result = await commitStep(
      deps,
      action,
      { kind: 'decide', decision, text: comment, actor, graceUntil, revision: next, edit, quorum, quorumRaised, reask: reask?.request.token ?? null },
      { tx: { client: tx, effects } },
    );
    if (!result.action) throw new InvalidTransitionError(`cannot approve: the action is ${result.previous ?? 'gone'}, not PENDING`);
    if (reask?.request.mail) reaskMail = { ...reask.request.mail, action: result.action, revisionChange: edit?.summary ?? null, approvalsRecorded: quorum.approvals };
    return result.action;
  });
  if (reaskMail) await sendApprovalRequest(deps, reaskMail);
  return decided;
}

/**
 * A rejection, or the one approval needed of the revision reviewed, in one statement (it checks
 * the action is still PENDING and, for an approval, still at that revision: an edit meanwhile
 * voids the approval). `final`: the scope was just read, so a move that did not happen is the
 * answer (InvalidTransitionError); otherwise (a remembered scope) null, to be tried again from a
 * fresh read. Who may decide never changes, so a remembered scope refuses a principal that may
 * not read the action (NotFoundError) as a fresh one would.
 */
async function decideInOneStatement(
  deps: EngineDeps,
  principal: Principal,
  actor: Actor,
  action: ActionScopeRow,
  decision: Decision,
  comment: string | null,
  revision: number,
  final: boolean,
): Promise<Action | null> {
  if (!final && !canDecide(principal, assertReadable(principal, action, action.id))) return null;
  const graceUntil = decision === 'approve' ? await graceUntilFor(deps, action) : null;
  // With a slot free in this process's worker, the approval claims it too: it starts at once here.
  // (A slot that cannot be had, e.g. the rules unreadable, leaves the action to the queue.)
  const slot = decision === 'approve' && !graceUntil ? await deps.queue.reserveHere(action).catch(() => null) : null;
  const step = { kind: 'decide', decision, text: comment, actor, graceUntil, revision, ...(slot ? { claim: slot.claim } : {}) } as const;
  let result: Awaited<ReturnType<typeof commitStep>>;
  try {
    result = await commitStep(deps, action, step);
  } catch (error) {
    slot?.release();
    throw error;
  }
  // The answer is the action as the approval left it, as without the claim; its EXECUTING event
  // follows at once.
  if (slot?.committed(result.action)) return asApproved(result.action);
  if (result.action) return result.action;
  if (final) throw notMovedError(result.plan, result.previous);
  return null;
}

/**
 * The rules in force on an approver's edited payload, as on a new request (spec §5: "validated
 * like a new one"): conditions see the new payload, so an edit cannot slip past a rule. A payload
 * they would block (or refuse for KYC) is refused with that code, naming `payload`, and nothing
 * changes; otherwise the approvals they ask of it (1 when none).
 */
async function approvalsRequiredForEdit(deps: EngineDeps, action: { spaceId: string; userId: string; type: string }, payload: Record<string, unknown>): Promise<number> {
  const { verdict } = await evaluateRulesOn(deps, { ...action, payload });
  if (verdict.refusal) throw refusalError(verdict.refusal, (reason) => `the edited payload is refused: ${reason}; nothing was changed`, ['payload']);
  return verdict.requiresApproval ? verdict.approvalsRequired : 1;
}

/** An approval of `reviewed` while the action is at `current` (an approver's edit meanwhile). */
function movedOn(current: number, reviewed: number): InvalidTransitionError {
  return new InvalidTransitionError(
    `cannot approve revision ${reviewed}: an approver edited the action meanwhile and it is at revision ${current} now; review revision ${current} and decide again`,
  );
}

/** A payload an approver sends with approveAction: validated like a new one, errors under `payload`. */
function validatedEdit(deps: EngineDeps, type: string, payload: unknown): { payload: Record<string, unknown>; payloadHash: string } {
  const parsed = deps.types.validate(type, payload);
  return { payload: parsed, payloadHash: payloadHash(parsed) };
}

/**
 * When an action approved now may run, if its type cannot be undone and a grace period applies
 * (GRACE_SECONDS, or a rule's graceSeconds); null: as scheduled. A later scheduledFor stands.
 */
export async function graceUntilFor(deps: EngineDeps, action: { spaceId: string; type: string; scheduledFor: Date | null }): Promise<Date | null> {
  const definition = deps.types.find(action.type);
  if (!definition?.gracePeriod) return null;
  return graceUntil(await deps.configCache.safetyRules(action.spaceId, action.type), {
    type: action.type,
    spaceId: action.spaceId,
    gracePeriod: definition.gracePeriod,
    defaultSeconds: deps.config.graceSeconds,
    now: deps.clock(),
    scheduledFor: action.scheduledFor,
  });
}

/** cancelAction: PENDING or APPROVED → CANCELLED. */
export async function cancelAction(deps: EngineDeps, principal: Principal, actor: Actor, id: string, reason: string | null | undefined): Promise<Action> {
  const action = assertReadable(principal, await readActionScope(deps, id), id);
  if (!canCancel(principal, action)) throw new ForbiddenError('only the requesting agent, the user\'s approvers or an admin can cancel an action');
  return applyStep(deps, action, { kind: 'cancel', reason: cleanText(reason), actor });
}

/** What an approval link leads to. `too_many_attempts`: locked after the wrong codes. */
export type LinkState = TokenState | 'already_decided' | 'too_many_attempts';

/** Looks up an approval link for the confirmation page. Reads only. */
export async function inspectApprovalLink(deps: EngineDeps, token: string) {
  if (!isWellFormedToken(token)) return { state: 'unknown' as LinkState, row: null };
  const row = await deps.db.approvalToken.findUnique({
    where: { tokenHash: hashApprovalToken(token) },
    include: {
      action: {
        include: { requestedBy: { select: { name: true, role: true } }, user: { select: { handle: true } } },
      },
    },
  });
  let state: LinkState = tokenState(row, row?.action.payloadHash ?? '', deps.clock());
  if (state === 'valid' && row!.action.status !== 'PENDING') state = 'already_decided';
  if (state === 'voided' && row!.codeAttempts >= MAX_CODE_ATTEMPTS) state = 'too_many_attempts';
  return { state, row };
}

export type LinkDecisionOutcome =
  | { ok: true; action: Action; decision: Decision }
  | { ok: false; state: Exclude<LinkState, 'valid'> }
  /** `attemptsLeft`: wrong codes still allowed before the link locks; `missing`: no code was sent (not counted). */
  | { ok: false; state: 'wrong_code'; attemptsLeft: number; missing: boolean };

/**
 * POST /approvals/:token — the only route by which an email link decides. The token is used
 * up in the same transaction as the decision; a payment or purchase also needs the one-time
 * code from the second email. Each code sent is a guess, counted before it is compared (see
 * {@link countCodeGuess}): at most MAX_CODE_ATTEMPTS guesses are ever compared, under any
 * concurrency, and the last wrong one locks the link.
 */
export async function decideByLink(
  deps: EngineDeps,
  token: string,
  form: { decision: Decision; reason: string | null; code: string | null },
  client: { ip: string | null; userAgent: string | null },
): Promise<LinkDecisionOutcome> {
  const { state, row } = await inspectApprovalLink(deps, token);
  if (state !== 'valid' || !row) return { ok: false, state: state === 'valid' ? 'unknown' : state };
  const actor: Actor = { id: `email-link:${row.id}`, ip: client.ip, userAgent: client.userAgent };
  const code = form.code ? normalizeOneTimeCode(form.code) : null;
  const needsCode = form.decision === 'approve' && row.codeHash !== null;
  // No code at all is not a guess: nothing is compared, nothing counted.
  if (needsCode && !code) return { ok: false, state: 'wrong_code', attemptsLeft: Math.max(0, MAX_CODE_ATTEMPTS - row.codeAttempts), missing: true };
  try {
    // One transaction from the guess to the decision: the token row stays locked throughout, so
    // no concurrent guess can lock the link between a right code and its decision.
    return await inTransaction(deps, async (tx, effects): Promise<LinkDecisionOutcome> => {
      // Locks in the order every path takes: the action's row, then its tokens (decide, cancel and
      // expire void tokens in the statement that locks the action), so a guess racing a decision
      // waits instead of deadlocking.
      await tx.$queryRaw`SELECT 1 FROM "Action" WHERE "id" = ${row.actionId}::uuid FOR UPDATE`;
      if (needsCode) {
        const guess = await countCodeGuess(deps, { client: tx, effects }, { id: row.id, codeHash: row.codeHash!, action: row.action }, code!, actor);
        if (guess !== 'right') return guess;
      }
      // The token is used in the decision's own statement, which needs it still usable.
      // With a quorum the link counts as its one recipient's approval of this revision.
      let quorum: { approvals: number; required: number } | undefined;
      if (form.decision === 'approve' && row.action.approvalsRequired > 1) {
        const others = await tx.approvalDecision.count({
          where: { actionId: row.actionId, revision: row.action.revision, decision: 'approve', NOT: { approver: actor.id } },
        });
        quorum = { approvals: others + 1, required: row.action.approvalsRequired };
      }
      const graceUntil = form.decision === 'approve' && (!quorum || quorum.approvals >= quorum.required) ? await graceUntilFor(deps, row.action) : null;
      const decided = await commitStep(
        deps,
        row.action,
        { kind: 'decide', decision: form.decision, text: cleanText(form.reason), actor, via: { tokenId: row.id }, graceUntil, revision: row.action.revision, quorum },
        { tx: { client: tx, effects } },
      );
      if (decided.action) return { ok: true, action: decided.action, decision: form.decision };
      if (decided.previous !== 'PENDING') throw new InvalidTransitionError(`the action is ${decided.previous}`);
      throw new LinkUsedError();
    });
  } catch (error) {
    if (error instanceof LinkUsedError) return { ok: false, state: 'used' };
    if (error instanceof InvalidTransitionError) return { ok: false, state: 'already_decided' };
    throw error;
  }
}

class LinkUsedError extends Error {}

/**
 * Inside the caller's transaction: counts one code guess on a link, then compares it. The count is a
 * conditional UPDATE (`codeAttempts < MAX AND usedAt IS NULL AND voidedAt IS NULL`): PostgreSQL
 * re-checks the condition after waiting for the row lock, so of any number of concurrent
 * guesses at most MAX_CODE_ATTEMPTS ever get counted, and only a counted guess is compared. The
 * row stays locked until the caller's commit, so the count read back is this guess's own. A wrong guess is
 * audited (`approval.code_rejected`); the last one voids the link and audits `approval.locked`.
 */
async function countCodeGuess(
  deps: EngineDeps,
  within: { client: Prisma.TransactionClient; effects: TxEffects },
  token: { id: string; codeHash: string; action: Pick<Action, 'id' | 'spaceId'> },
  code: string,
  actor: Actor,
): Promise<'right' | Extract<LinkDecisionOutcome, { ok: false }>> {
  const tx = within.client;
  const [now] = await tx.approvalToken.updateManyAndReturn({
    where: { id: token.id, codeAttempts: { lt: MAX_CODE_ATTEMPTS }, usedAt: null, voidedAt: null },
    data: { codeAttempts: { increment: 1 } },
    select: { codeAttempts: true },
  });
  if (!now) {
    // Not counted: say why (read only on this path).
    const current = await tx.approvalToken.findUniqueOrThrow({ where: { id: token.id }, select: { codeAttempts: true, usedAt: true } });
    if (current.usedAt) return { ok: false as const, state: 'used' as const };
    if (current.codeAttempts >= MAX_CODE_ATTEMPTS) return { ok: false as const, state: 'too_many_attempts' as const };
    return { ok: false as const, state: 'voided' as const };
  }
  if (verifyCode(code, token.codeHash)) return 'right' as const;
  const attemptsLeft = MAX_CODE_ATTEMPTS - now.codeAttempts;
  if (attemptsLeft === 0) await tx.approvalToken.update({ where: { id: token.id }, data: { voidedAt: deps.clock() } });
  // Audited on the action's chain (approval.code_rejected, and approval.locked for the last one).
  await commitStep(deps, token.action, { kind: 'codeRejected', attemptsLeft, attempts: now.codeAttempts, actor }, { tx: within });
  if (attemptsLeft > 0) return { ok: false as const, state: 'wrong_code' as const, attemptsLeft, missing: false };
  return { ok: false as const, state: 'too_many_attempts' as const };
}

/**
 * Moves PENDING actions whose approval window has closed to EXPIRED (spec §5: "without anyone
 * calling anything"). Safe to run from several processes at once: each move is conditional.
 */
export async function expireOverdueApprovals(deps: EngineDeps, batch = 100): Promise<number> {
  const now = deps.clock();
  const overdue = await deps.db.action.findMany({
    where: { status: 'PENDING', approvalExpiresAt: { lte: now } },
    select: { id: true, spaceId: true, approvalExpiresAt: true },
    orderBy: { approvalExpiresAt: 'asc' },
    take: batch,
  });
  let expired = 0;
  for (const action of overdue) {
    // Decided in the meantime by someone else: nothing to expire (the move does not happen).
    const result = await commitStep(deps, action, { kind: 'expire', expiresAt: action.approvalExpiresAt! });
    if (result.action) expired += 1;
  }
  return expired;
}
