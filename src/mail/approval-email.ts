import { BUILT_IN_ACTION_TYPES } from '../engine/action-types.js';
import type { ActionDetail, ActionTypeDefinition } from '../engine/action-types/define.js';
import { describePayload, formatDateTime, oneLine, truncateChars, type ActionDescription } from '../engine/action-types/describe.js';
import { MAX_CODE_ATTEMPTS, ONE_TIME_CODE_DIGITS } from '../engine/approval-tokens.js';

export type { ActionDetail } from '../engine/action-types/define.js';
export type { ActionDescription } from '../engine/action-types/describe.js';
export { formatDateTime, oneLine } from '../engine/action-types/describe.js';

/** Where descriptions come from: the app's registered types (`ActionTypeRegistry` is one). */
export interface ActionTypeLookup {
  find(type: string): ActionTypeDefinition | undefined;
}

/** The action an approval is asked for, and its context: shared by the email and the page. */
export interface ApprovalSummaryInput {
  action: {
    id: string;
    type: string;
    payload: unknown;
    priority: number;
    scheduledFor: Date | null;
    createdAt: Date;
    /** The payload's revision (an approver's edit makes the next); 1 when absent. */
    revision?: number;
    /** Distinct approvals needed (quorum); 1 when absent. */
    approvalsRequired?: number;
  };
  /** What the last edit changed, in words (shown with a revision above 1). */
  revisionChange?: string | null;
  /** Approvals of the current revision recorded so far (shown with a quorum). */
  approvalsRecorded?: number;
  requestedBy: { name: string; role: string };
  /** The user on whose behalf the action would run. */
  userHandle: string;
  /** When the approval link stops working. */
  expiresAt: Date;
  /** The registered action types, to describe the action with; default: the built-in ones. */
  types?: ActionTypeLookup;
}

/** Input of `renderApprovalEmail`. */
export interface ApprovalEmailInput extends ApprovalSummaryInput {
  /** The link to the confirmation page (`GET /approvals/:token`); opening it decides nothing. */
  approveUrl: string;
  /** True for payments and purchases: a one-time code is mailed separately. */
  needsCode: boolean;
  /** A line above the action, e.g. why this person is asked (an escalation). */
  intro?: string;
}

/** A rendered email: subject plus text and HTML bodies. */
export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

/** Longest subject line produced, in characters. */
export const MAX_SUBJECT_LENGTH = 150;

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(value: string): string {
  return String(value).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/** A subject line that cannot carry extra headers: one line, at most `max` characters. */
export function safeSubject(value: string, max = MAX_SUBJECT_LENGTH): string {
  const line = oneLine(value).replace(/\s+/g, ' ').trim();
  return truncateChars(line, max);
}

/** The built-in types, for callers that do not pass theirs. */
const BUILT_IN: ActionTypeLookup = {
  find: (() => {
    const byType = new Map<string, ActionTypeDefinition>(BUILT_IN_ACTION_TYPES.map((t) => [t.type, t]));
    return (type: string) => byType.get(type);
  })(),
};

/**
 * Describes in plain words what an action will do, with its type's `describe` (see
 * `describePayload`): the payload is parsed with the type's schema first; an unknown type, a
 * type without a description or a payload that does not fit is shown as pretty-printed JSON.
 * Fields the description does not use are appended as JSON, so the approver sees everything.
 * `maxTextLength` caps long text such as an email body (default 2,000 characters).
 */
export function describeAction(type: string, payload: unknown, options: { maxTextLength?: number; types?: ActionTypeLookup } = {}): ActionDescription {
  const types = options.types ?? BUILT_IN;
  return describePayload(types.find(type), type, payload, options.maxTextLength === undefined ? {} : { maxTextLength: options.maxTextLength });
}

/** Who asked, for whom, when it runs and when the link expires: the context of a request. */
export function describeRequest(input: ApprovalSummaryInput): ActionDetail[] {
  const { action } = input;
  return [
    { label: 'Requested by', value: `${oneLine(input.requestedBy.name)} (${oneLine(input.requestedBy.role)})` },
    { label: 'On behalf of', value: oneLine(input.userHandle) },
    { label: 'Requested at', value: formatDateTime(action.createdAt) },
    { label: 'Runs', value: action.scheduledFor ? `at ${formatDateTime(action.scheduledFor)}, if approved` : 'as soon as it is approved' },
    { label: 'Priority', value: `${action.priority} (1 highest … 10 lowest)` },
    { label: 'Link expires', value: formatDateTime(input.expiresAt) },
    ...((action.revision ?? 1) > 1
      ? [{ label: 'Revision', value: `${action.revision}, edited by an approver${input.revisionChange ? `: ${oneLine(input.revisionChange)}` : ''}; approve this revision, not the one first asked for` }]
      : []),
    ...((action.approvalsRequired ?? 1) > 1
      ? [{ label: 'Approvals', value: `${action.approvalsRequired} different approvers needed; ${input.approvalsRecorded ?? 0} so far for this revision` }]
      : []),
    { label: 'Action ID', value: oneLine(action.id) },
  ];
}

function textDetails(details: ActionDetail[]): string {
  return details
    .map((d) => {
      if (Array.isArray(d.value)) return `${d.label}:\n${d.value.map((v) => `  - ${v}`).join('\n')}`;
      // Why the indent: a multi-line value cannot then pass itself off as a line of ours.
      if (d.format === 'text' || d.format === 'json') return `${d.label}:\n${d.value.replace(/^/gm, '    ')}`;
      return `${d.label}: ${d.value}`;
    })
    .join('\n');
}

const FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif";
const MONO = "ui-monospace,Menlo,Consolas,'Liberation Mono',monospace";

function htmlDetails(details: ActionDetail[]): string {
  return details
    .map((d) => {
      const label = `<div style="font-size:13px;color:#57606a;font-weight:600;">${escapeHtml(d.label)}</div>`;
      let value: string;
      if (Array.isArray(d.value)) {
        value = `<ul style="margin:2px 0 0;padding-left:20px;">${d.value.map((v) => `<li>${escapeHtml(v)}</li>`).join('')}</ul>`;
      } else if (d.format === 'json') {
        value = `<pre style="margin:4px 0 0;padding:8px;background:#f6f8fa;border-radius:6px;white-space:pre-wrap;word-break:break-word;font-family:${MONO};font-size:13px;">${escapeHtml(d.value)}</pre>`;
      } else if (d.format === 'text') {
        value = `<div style="margin-top:2px;padding:8px;background:#f6f8fa;border-radius:6px;white-space:pre-wrap;word-break:break-word;">${escapeHtml(d.value)}</div>`;
      } else {
        value = `<div style="word-break:break-word;">${escapeHtml(d.value)}</div>`;
      }
      return `<div style="margin:0 0 12px;">${label}${value}</div>`;
    })
    .join('');
}

function htmlDocument(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title></head>
<body style="margin:0;padding:0;background:#f4f5f7;">
<div style="max-width:560px;margin:0 auto;padding:16px;font-family:${FONT};font-size:16px;line-height:1.5;color:#1f2328;">
<div style="background:#ffffff;border:1px solid #d0d7de;border-radius:8px;padding:20px;">
${body}
</div>
</div>
</body></html>
`;
}

function assertHttpUrl(url: string): void {
  if (!/^https?:\/\/[^\s"'<>]+$/i.test(url)) throw new TypeError(`approveUrl must be an http(s) URL without spaces or quotes (got "${url}")`);
}

/**
 * Renders the approval request mailed to the user: what the action will do, who asked, when
 * the link expires, and the link to the confirmation page (which decides nothing by itself).
 * For `needsCode`, says that a one-time code arrives in a separate email.
 */
export function renderApprovalEmail(input: ApprovalEmailInput): RenderedEmail {
  assertHttpUrl(input.approveUrl);
  const { headline, details } = describeAction(input.action.type, input.action.payload, input.types ? { types: input.types } : {});
  const context = describeRequest(input);
  const codeLine = `You will also need the ${ONE_TIME_CODE_DIGITS}-digit one-time code that arrives in a separate email. Enter it on the page to approve.`;
  const ignoreLine = `If you did not expect this request, do nothing: it will not run unless someone approves it before ${formatDateTime(input.expiresAt)}.`;

  const text = [
    'Approval needed',
    '',
    ...(input.intro ? [input.intro, ''] : []),
    headline,
    '',
    textDetails(details),
    '',
    textDetails(context),
    '',
    'Review it and approve or reject here (opening the link does not approve anything):',
    input.approveUrl,
    ...(input.needsCode ? ['', codeLine] : []),
    '',
    ignoreLine,
    '',
  ].join('\n');

  const html = htmlDocument(
    'Approval needed',
    `<p style="margin:0 0 4px;font-size:13px;color:#57606a;text-transform:uppercase;letter-spacing:.04em;">Approval needed</p>
${input.intro ? `<p style="margin:0 0 12px;padding:10px;background:#ddf4ff;border-radius:6px;">${escapeHtml(input.intro)}</p>\n` : ''}<h1 style="margin:0 0 16px;font-size:20px;line-height:1.3;word-break:break-word;">${escapeHtml(headline)}</h1>
${htmlDetails(details)}
<hr style="border:0;border-top:1px solid #d0d7de;margin:16px 0;">
${htmlDetails(context)}
<p style="margin:20px 0 8px;"><a href="${escapeHtml(input.approveUrl)}" style="display:inline-block;background:#1f6feb;color:#ffffff;text-decoration:none;font-weight:600;padding:12px 20px;border-radius:6px;">Review and decide</a></p>
<p style="margin:0 0 12px;font-size:13px;color:#57606a;">Opening the link does not approve anything. If the button does not work, copy this address:<br><span style="word-break:break-all;">${escapeHtml(input.approveUrl)}</span></p>
${input.needsCode ? `<p style="margin:0 0 12px;padding:10px;background:#fff8c5;border-radius:6px;">${escapeHtml(codeLine)}</p>` : ''}
<p style="margin:0;font-size:13px;color:#57606a;">${escapeHtml(ignoreLine)}</p>`,
  );

  return { subject: safeSubject(`Approval needed: ${headline}`), text, html };
}

/** Input of `renderOneTimeCodeEmail`. */
export interface OneTimeCodeEmailInput {
  /** One line saying what the code approves, e.g. the headline from `describeAction`. */
  actionSummary: string;
  code: string;
  expiresAt: Date;
}

/**
 * Renders the second email for payments and purchases, carrying only the one-time code.
 * The code is left out of the subject, which lock screens show to anyone nearby.
 */
export function renderOneTimeCodeEmail(input: OneTimeCodeEmailInput): RenderedEmail {
  const summary = oneLine(input.actionSummary);
  const shown = /^\d{8}$/.test(input.code) ? `${input.code.slice(0, 4)} ${input.code.slice(4)}` : oneLine(input.code);
  const lines = [
    `Enter it on the confirmation page opened from the approval email, to approve: ${summary}`,
    `It works once, until ${formatDateTime(input.expiresAt)}. After ${MAX_CODE_ATTEMPTS} wrong tries the link is locked.`,
    'Nobody will ever ask you to tell them this code. If you did not expect it, do nothing: the request will not run.',
  ];
  const text = ['Your one-time approval code:', '', `    ${shown}`, '', ...lines, ''].join('\n');
  const html = htmlDocument(
    'Your one-time approval code',
    `<p style="margin:0 0 8px;">Your one-time approval code:</p>
<p style="margin:0 0 16px;font-family:${MONO};font-size:32px;font-weight:700;letter-spacing:.12em;">${escapeHtml(shown)}</p>
${lines.map((line) => `<p style="margin:0 0 12px;word-break:break-word;">${escapeHtml(line)}</p>`).join('\n')}`,
  );
  return { subject: safeSubject(`One-time code to approve: ${summary}`), text, html };
}
