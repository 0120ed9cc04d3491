import { describeDiff, type PayloadChange } from '../engine/payload-diff.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { App } from '../app.js';
import { decideByLink, inspectApprovalLink } from '../engine/approvals.js';
import { BodyTooLargeError, readBodyWithin, refuseTooLarge } from './request-body.js';
import {
  APPROVAL_PAGE_HEADERS,
  MAX_DECISION_FORM_BYTES,
  parseDecisionForm,
  renderConfirmationPage,
  renderErrorPage,
  renderResultPage,
  type ApprovalErrorState,
} from './approval-pages.js';

const PREFIX = '/approvals/';

function send(res: ServerResponse, status: number, html: string, extra: Record<string, string> = {}) {
  res.writeHead(status, { ...APPROVAL_PAGE_HEADERS, 'content-type': 'text/html; charset=utf-8', ...extra });
  res.end(html);
}

function sendError(res: ServerResponse, state: ApprovalErrorState, detail?: string) {
  const page = renderErrorPage(state, detail);
  send(res, page.status, page.html);
}

async function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  try {
    return (await readBodyWithin(req, limit)).toString('utf8');
  } catch (error) {
    if (error instanceof BodyTooLargeError) return null;
    throw error;
  }
}

/** `decodeURIComponent`, or null for a malformed encoding (`%E0%A4%A`) instead of a URIError. */
function safeDecode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** The confirmation page of a link that is still valid (with a code error after a wrong code), else the page saying why not. */
async function sendConfirmationPage(
  app: App,
  res: ServerResponse,
  token: string,
  status: number,
  codeError?: { attemptsLeft: number; missing: boolean },
): Promise<void> {
  const { state, row } = await inspectApprovalLink(app.engine, token);
  if (state !== 'valid' || !row) {
    sendError(res, state === 'valid' ? 'unknown' : state);
    return;
  }
  // What the person decides on: the revision (and what its edit changed) and the quorum so far.
  const [latest, approvalsRecorded] = await Promise.all([
    row.action.revision > 1
      ? app.db.actionRevision.findUnique({ where: { actionId_revision: { actionId: row.actionId, revision: row.action.revision } }, select: { diff: true } })
      : null,
    row.action.approvalsRequired > 1 ? app.db.approvalDecision.count({ where: { actionId: row.actionId, revision: row.action.revision, decision: 'approve' } }) : 0,
  ]);
  const revisionChange = Array.isArray(latest?.diff) ? describeDiff(latest.diff as unknown as PayloadChange[]) : null;
  send(
    res,
    status,
    renderConfirmationPage({
      action: row.action,
      requestedBy: { name: row.action.requestedBy.name, role: row.action.requestedBy.role.toLowerCase() },
      userHandle: row.action.user.handle,
      expiresAt: row.expiresAt,
      types: app.engine.types,
      revisionChange,
      approvalsRecorded,
      token,
      needsCode: row.codeHash !== null,
      ...(codeError ? { codeError } : {}),
    }),
  );
}

/**
 * `GET /approvals/:token` shows the action and the forms and changes nothing (mail scanners
 * open links); only `POST /approvals/:token` decides. Returns false for other paths.
 */
export async function handleApprovalRoute(app: App, req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
  if (!pathname.startsWith(PREFIX)) return false;
  const token = safeDecode(pathname.slice(PREFIX.length));
  if (token === null) {
    // A malformed percent-encoding cannot be a link we sent.
    sendError(res, 'unknown');
    return true;
  }
  if (req.method === 'GET' || req.method === 'HEAD') {
    await sendConfirmationPage(app, res, token, 200);
    return true;
  }
  if (req.method !== 'POST') {
    send(res, 405, renderErrorPage('bad_request', 'Use the buttons on the page.').html, { allow: 'GET, POST' });
    return true;
  }
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded')) {
    sendError(res, 'bad_request', 'The form must be sent as application/x-www-form-urlencoded.');
    return true;
  }
  const body = await readBody(req, MAX_DECISION_FORM_BYTES);
  if (body === null) {
    // Counted on the bytes read (chunked uploads too); the rest of the upload is not read.
    refuseTooLarge(req, res, renderErrorPage('bad_request', 'The form is too large.').html, 'text/html; charset=utf-8', APPROVAL_PAGE_HEADERS);
    return true;
  }
  const form = parseDecisionForm(body);
  if ('error' in form) {
    sendError(res, 'bad_request', form.error);
    return true;
  }
  const outcome = await decideByLink(app.engine, token, form, {
    ip: req.socket.remoteAddress ?? null,
    userAgent: req.headers['user-agent'] ?? null,
  });
  if (!outcome.ok && outcome.state === 'wrong_code') {
    // The form again, saying how many tries are left (unless the link changed meanwhile).
    await sendConfirmationPage(app, res, token, 403, { attemptsLeft: outcome.attemptsLeft, missing: outcome.missing });
    return true;
  }
  if (!outcome.ok) {
    sendError(res, outcome.state);
    return true;
  }
  send(
    res,
    200,
    renderResultPage(
      outcome.decision === 'approve'
        ? { status: 'approved', title: 'Approved', message: 'The action is approved and will run.' }
        : { status: 'rejected', title: 'Rejected', message: 'The action is rejected and will not run.' },
    ),
  );
  return true;
}
