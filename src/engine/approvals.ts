import type { Principal } from '../context.js';
import type { Action, Prisma } from '../generated/prisma/client.js';
import { describeAction, renderApprovalEmail, renderOneTimeCodeEmail } from '../mail/approval-email.js';
import { appendAuditEntry } from './audit.js';
import {
  MAX_CODE_ATTEMPTS,
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
import type { StatusEventSink } from './status-event.js';
import { ForbiddenError, InvalidTransitionError } from './errors.js';
import { assertReadable, canCancel, canDecide } from './policy.js';
import { addStatusMessage, transition } from './transitions.js';

/** Types whose email approval needs a one-time code besides the link (spec: a button alone must not decide). */
const NEEDS_CODE: ReadonlySet<string> = new Set(['make_payment', 'make_purchase']);

/** An approval email to send once the creating transaction has committed. */
export interface PendingApprovalMail {
  action: Action;
  to: string;
  token: string;
  code: string | null;
  expiresAt: Date;
  requestedBy: { name: string; role: string };
  userHandle: string;
}

/**
 * Inside the creating transaction: records the approval request and, when the user has an
 * email address, a single-use token (hash only) bound to the payload. Returns the mail to send
 * after commit, or null when there is nobody to mail (said in a status update).
 */
export async function issueApprovalRequest(
  deps: EngineDeps,
  tx: Prisma.TransactionClient,
  events: StatusEventSink,
  action: Action,
  user: { email: string | null; handle: string },
): Promise<PendingApprovalMail | null> {
  const expiresAt = action.approvalExpiresAt ?? new Date(deps.clock().getTime() + deps.config.approvalTtlSeconds * 1000);
  const audit = { actor: 'system', spaceId: action.spaceId, actionId: action.id };
  if (!user.email) {
    await addStatusMessage(tx, events, action, 'No email address is known for this user: approve or reject through the API');
    await appendAuditEntry(tx, { ...audit, event: 'approval.requested', data: { expiresAt: expiresAt.toISOString(), recipient: null } });
    return null;
  }
  const { token, tokenHash } = newApprovalToken();
  const second = NEEDS_CODE.has(action.type) ? newOneTimeCode() : null;
  await tx.approvalToken.create({
    data: {
      actionId: action.id,
      tokenHash,
      payloadHash: action.payloadHash,
      codeHash: second?.codeHash ?? null,
      recipient: user.email,
      expiresAt,
    },
  });
  await appendAuditEntry(tx, { ...audit, event: 'approval.requested', data: { expiresAt: expiresAt.toISOString(), recipient: user.email } });
  const requester = await tx.principal.findUniqueOrThrow({ where: { id: action.requestedById }, select: { name: true, role: true } });
  return {
    action,
    to: user.email,
    token,
    code: second?.code ?? null,
    expiresAt,
    requestedBy: { name: requester.name, role: requester.role.toLowerCase() },
    userHandle: user.handle,
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
    });
    await deps.mailer.send({ to: mail.to, ...message });
    if (mail.code) {
      const codeMail = renderOneTimeCodeEmail({
        actionSummary: describeAction(mail.action.type, mail.action.payload).headline,
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
    await inTransaction(deps, (tx, events) =>
      addStatusMessage(tx, events, mail.action, 'The approval email could not be sent: approve or reject through the API'),
    );
  }
}

export type Decision = 'approve' | 'reject';

/** Inside a transaction: PENDING → APPROVED/REJECTED, voiding every open token of the action. */
async function applyDecision(
  deps: EngineDeps,
  tx: Prisma.TransactionClient,
  events: StatusEventSink,
  action: Pick<Action, 'id' | 'spaceId'>,
  decision: Decision,
  text: string | null,
  actor: Actor,
): Promise<Action> {
  const now = deps.clock();
  const common = { actor: actor.id, ip: actor.ip ?? null, userAgent: actor.userAgent ?? null, spaceId: action.spaceId, actionId: action.id };
  // Tokens first, then the action and the audit lock: the order every approval path takes
  // (see countCodeGuess), so a decision racing a code guess cannot deadlock.
  await tx.approvalToken.updateMany({ where: { actionId: action.id, usedAt: null, voidedAt: null }, data: { voidedAt: now } });
  const updated = await transition(tx, events, {
    actionId: action.id,
    from: 'PENDING',
    to: decision === 'approve' ? 'APPROVED' : 'REJECTED',
    message: decision === 'approve' ? 'Approved' : `Rejected${text ? `: ${text}` : ''}`,
    data: { decidedAt: now, decidedBy: actor.id, approvalExpiresAt: null },
    audit:
      decision === 'approve'
        ? { ...common, event: 'action.approved', data: { comment: text } }
        : { ...common, event: 'action.rejected', data: { reason: text ?? '' } },
  });
  return updated;
}

const MAX_TEXT = 1000;

function cleanText(text: string | null | undefined): string | null {
  const t = text?.trim();
  return t ? t.slice(0, MAX_TEXT) : null;
}

/** approveAction / rejectAction by API (spec §5). */
export async function decideAction(
  deps: EngineDeps,
  principal: Principal,
  actor: Actor,
  id: string,
  decision: Decision,
  text: string | null | undefined,
): Promise<Action> {
  const action = assertReadable(
    principal,
    await deps.db.action.findUnique({ where: { id }, select: { id: true, spaceId: true, userId: true, requestedById: true } }),
    id,
  );
  if (!canDecide(principal, action)) {
    throw new ForbiddenError(
      principal.id === action.requestedById
        ? 'the principal that requested an action cannot decide it'
        : "only an approver acting for this action's user can decide it",
    );
  }
  return inTransaction(deps, (tx, events) => applyDecision(deps, tx, events, action, decision, cleanText(text), actor));
}

/** cancelAction: PENDING or APPROVED → CANCELLED. */
export async function cancelAction(deps: EngineDeps, principal: Principal, actor: Actor, id: string, reason: string | null | undefined): Promise<Action> {
  const action = assertReadable(
    principal,
    await deps.db.action.findUnique({ where: { id }, select: { id: true, spaceId: true, userId: true, requestedById: true, status: true } }),
    id,
  );
  if (!canCancel(principal, action)) throw new ForbiddenError('only the requesting agent, the user\'s approvers or an admin can cancel an action');
  const why = cleanText(reason);
  const from = action.status === 'APPROVED' ? 'APPROVED' : 'PENDING';
  return inTransaction(deps, async (tx, events) => {
    await tx.approvalToken.updateMany({ where: { actionId: id, usedAt: null, voidedAt: null }, data: { voidedAt: deps.clock() } });
    const updated = await transition(tx, events, {
      actionId: id,
      from,
      to: 'CANCELLED',
      message: `Cancelled${why ? `: ${why}` : ''}`,
      data: { decidedAt: deps.clock(), decidedBy: actor.id, approvalExpiresAt: null },
      audit: {
        actor: actor.id,
        ip: actor.ip ?? null,
        userAgent: actor.userAgent ?? null,
        spaceId: action.spaceId,
        actionId: id,
        event: 'action.cancelled',
        data: { reason: why },
      },
    });
    return updated;
  });
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
    return await inTransaction(deps, async (tx, events): Promise<LinkDecisionOutcome> => {
      if (needsCode) {
        const guess = await countCodeGuess(deps, tx, { id: row.id, codeHash: row.codeHash!, spaceId: row.action.spaceId, actionId: row.actionId }, code!, actor);
        if (guess !== 'right') return guess;
      }
      const used = await tx.approvalToken.updateMany({
        where: { id: row.id, usedAt: null, voidedAt: null },
        data: { usedAt: deps.clock() },
      });
      if (used.count !== 1) throw new LinkUsedError();
      const action = await applyDecision(deps, tx, events, row.action, form.decision, cleanText(form.reason), actor);
      return { ok: true, action, decision: form.decision };
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
  tx: Prisma.TransactionClient,
  token: { id: string; codeHash: string; spaceId: string; actionId: string },
  code: string,
  actor: Actor,
): Promise<'right' | Extract<LinkDecisionOutcome, { ok: false }>> {
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
  const common = { actor: actor.id, ip: actor.ip ?? null, userAgent: actor.userAgent ?? null, spaceId: token.spaceId, actionId: token.actionId };
  const attemptsLeft = MAX_CODE_ATTEMPTS - now.codeAttempts;
  await appendAuditEntry(tx, { ...common, event: 'approval.code_rejected', data: { attemptsLeft } });
  if (attemptsLeft > 0) return { ok: false as const, state: 'wrong_code' as const, attemptsLeft, missing: false };
  await tx.approvalToken.update({ where: { id: token.id }, data: { voidedAt: deps.clock() } });
  await appendAuditEntry(tx, { ...common, event: 'approval.locked', data: { attempts: now.codeAttempts } });
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
    try {
      await inTransaction(deps, async (tx, events) => {
        await tx.approvalToken.updateMany({ where: { actionId: action.id, usedAt: null, voidedAt: null }, data: { voidedAt: now } });
        await transition(tx, events, {
          actionId: action.id,
          from: 'PENDING',
          to: 'EXPIRED',
          message: 'The approval window closed without a decision',
          data: { approvalExpiresAt: null },
          audit: {
            actor: 'system',
            spaceId: action.spaceId,
            actionId: action.id,
            event: 'action.expired',
            data: { expiresAt: action.approvalExpiresAt!.toISOString() },
          },
        });
      });
      expired += 1;
    } catch (error) {
      // Decided in the meantime by someone else: nothing to expire.
      if (!(error instanceof InvalidTransitionError)) throw error;
    }
  }
  return expired;
}
