import { MAX_CODE_ATTEMPTS, ONE_TIME_CODE_DIGITS, normalizeOneTimeCode, type TokenState } from '../engine/approval-tokens.js';
import {
  describeAction,
  describeRequest,
  escapeHtml,
  type ActionDetail,
  type ApprovalSummaryInput,
} from '../mail/approval-email.js';

/**
 * Headers for every approval page response (confirmation, result and error pages).
 * The token is in the URL, so no referrer may carry it elsewhere and no cache may keep it.
 */
export const APPROVAL_PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'Content-Type': 'text/html; charset=utf-8',
  'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
});

/** Longest rejection reason accepted, in characters. */
export const MAX_REASON_LENGTH = 1000;

/** Largest decision form body worth parsing, in bytes; the router should refuse bigger ones. */
export const MAX_DECISION_FORM_BYTES = 16 * 1024;

/** Input of `renderConfirmationPage`: the same summary as the email, plus the token. */
export interface ConfirmationPageInput extends ApprovalSummaryInput {
  /** The raw token from the URL path; the forms post back to `/approvals/<token>`. */
  token: string;
  /** True for payments and purchases: approving needs the one-time code from the second email. */
  needsCode: boolean;
  /**
   * The page shown again after a wrong (or missing) code: says so above the form and how many
   * tries are left before the link locks. Nothing was approved.
   */
  codeError?: { attemptsLeft: number; missing: boolean };
}

/** Every state in which a token cannot lead to a decision, and the form errors. */
export type ApprovalErrorState =
  | Exclude<TokenState, 'valid'>
  | 'wrong_code'
  | 'too_many_attempts'
  | 'already_decided'
  | 'bad_request';

/** A parsed decision form. */
export interface DecisionForm {
  decision: 'approve' | 'reject';
  reason: string | null;
  /** The one-time code, digits only; null when none was sent. */
  code: string | null;
}

const STYLE = `
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1f2328;font:16px/1.5 -apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;-webkit-text-size-adjust:100%}
main{max-width:560px;margin:0 auto;padding:16px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:20px;margin:0 0 16px}
.eyebrow{margin:0 0 4px;font-size:13px;color:#57606a;text-transform:uppercase;letter-spacing:.04em;font-weight:600}
h1{margin:0 0 16px;font-size:21px;line-height:1.3;overflow-wrap:anywhere}
h2{margin:0 0 12px;font-size:18px}
dl{margin:0}
dt{font-size:13px;color:#57606a;font-weight:600}
dd{margin:0 0 12px;overflow-wrap:anywhere}
dd ul{margin:2px 0 0;padding-left:20px}
.block{margin-top:2px;padding:8px;background:#f6f8fa;border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere}
pre{margin:4px 0 0;padding:8px;background:#f6f8fa;border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
hr{border:0;border-top:1px solid #d0d7de;margin:16px 0}
details summary{cursor:pointer;color:#57606a;font-size:14px}
label{display:block;font-weight:600;margin:0 0 6px}
.hint{display:block;font-weight:400;font-size:14px;color:#57606a}
input[type=text],textarea{display:block;width:100%;font:inherit;font-size:18px;padding:12px;border:1px solid #8c959f;border-radius:8px;background:#fff;color:inherit}
input.code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:24px;letter-spacing:.15em;text-align:center}
textarea{min-height:96px;resize:vertical;font-size:16px}
button{display:block;width:100%;min-height:52px;margin:14px 0 0;border:0;border-radius:8px;font:inherit;font-size:18px;font-weight:700;cursor:pointer}
.approve{background:#1a7f37;color:#fff}
.reject{background:#fff;color:#cf222e;border:2px solid #cf222e}
::placeholder{color:#c4cbd3}
.status-approved h1{color:#1a7f37}
.status-rejected h1{color:#57606a}
.status-error h1{color:#cf222e}
.small{font-size:14px;color:#57606a;margin:0}
.alert{margin:0 0 12px;padding:10px 12px;border:1px solid #cf222e;border-radius:8px;background:#ffebe9;color:#82071e;font-weight:600}
`;

function page(title: string, body: string, bodyClass = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex,nofollow">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body${bodyClass ? ` class="${escapeHtml(bodyClass)}"` : ''}>
<main>
${body}
</main>
</body>
</html>
`;
}

function renderDetails(details: ActionDetail[]): string {
  const items = details.map((d) => {
    let value: string;
    if (Array.isArray(d.value)) value = `<ul>${d.value.map((v) => `<li>${escapeHtml(v)}</li>`).join('')}</ul>`;
    else if (d.format === 'json') value = `<pre>${escapeHtml(d.value)}</pre>`;
    else if (d.format === 'text') value = `<div class="block">${escapeHtml(d.value)}</div>`;
    else value = escapeHtml(d.value);
    return `<dt>${escapeHtml(d.label)}</dt><dd>${value}</dd>`;
  });
  return `<dl>${items.join('')}</dl>`;
}

function fullRequestJson(payload: unknown): string {
  try {
    return JSON.stringify(payload, null, 2) ?? String(payload);
  } catch {
    return String(payload);
  }
}

/**
 * The confirmation page behind the emailed link (`GET /approvals/:token`). It shows the action
 * and two forms posting to `/approvals/<token>`; only that POST decides, never the GET.
 *
 * No CSRF token: the approval token in the path is itself the unguessable capability. A
 * cross-site page that does not know it cannot aim a POST at it, and one that does know it
 * could post directly anyway. There is no session or cookie for a forged request to ride on.
 */
export function renderConfirmationPage(input: ConfirmationPageInput): string {
  const { headline, details, generic } = describeAction(input.action.type, input.action.payload, {
    maxTextLength: 20_000,
    ...(input.types ? { types: input.types } : {}),
  });
  const actionUrl = `/approvals/${encodeURIComponent(input.token)}`;
  // Why payments need a code and not just a button: mail security scanners (Safe Links and
  // the like) open links in headless browsers that run JavaScript and may submit forms they
  // find. A POST-only button keeps plain link-followers out, but only a code from a second
  // email, typed by a person, proves someone actually read the request before money moves.
  const codeField = input.needsCode
    ? `<label for="code">One-time code<span class="hint">Approving this needs the ${ONE_TIME_CODE_DIGITS}&#8209;digit code from the separate email we sent you. After ${MAX_CODE_ATTEMPTS} wrong tries this link is locked.</span></label>
<input type="text" id="code" name="code" class="code" required inputmode="numeric" autocomplete="one-time-code" maxlength="16" placeholder="1234 5678">`
    : '';

  const codeError = input.codeError
    ? `<p class="alert" role="alert">${escapeHtml(codeErrorMessage(input.codeError))}</p>`
    : '';

  const body = `<div class="card">
<p class="eyebrow">Approval needed</p>
<h1>${escapeHtml(headline)}</h1>
${renderDetails(details)}
${generic ? '' : `<details><summary>Full request (JSON)</summary><pre>${escapeHtml(fullRequestJson(input.action.payload))}</pre></details>`}
<hr>
${renderDetails(describeRequest(input))}
</div>
<div class="card">
<h2>Approve</h2>
<form method="post" action="${escapeHtml(actionUrl)}" enctype="application/x-www-form-urlencoded">
<input type="hidden" name="decision" value="approve">
${codeError}
${codeField}
<button type="submit" class="approve">Approve</button>
</form>
</div>
<div class="card">
<h2>Reject</h2>
<form method="post" action="${escapeHtml(actionUrl)}" enctype="application/x-www-form-urlencoded">
<input type="hidden" name="decision" value="reject">
<label for="reason">Reason <span class="hint">Optional; the requester will see it.</span></label>
<textarea id="reason" name="reason" maxlength="${MAX_REASON_LENGTH}"></textarea>
<button type="submit" class="reject">Reject</button>
</form>
</div>
<p class="small">If you do nothing, the request expires unapproved. This link works once.</p>`;
  return page(`Approve? ${headline}`, body);
}

function codeErrorMessage({ attemptsLeft, missing }: { attemptsLeft: number; missing: boolean }): string {
  const left = `${attemptsLeft} ${attemptsLeft === 1 ? 'try is' : 'tries are'} left before this link is locked.`;
  return missing
    ? `Enter the ${ONE_TIME_CODE_DIGITS}\u2011digit code from the second email to approve. Nothing was approved. ${left}`
    : `That code is not right, so nothing was approved. ${left}`;
}

/** The page shown after a decision was recorded (or could not be). */
export function renderResultPage(input: { title: string; message: string; status: 'approved' | 'rejected' | 'error' }): string {
  const body = `<div class="card">
<h1>${escapeHtml(input.title)}</h1>
<p style="margin:0;white-space:pre-wrap;overflow-wrap:anywhere">${escapeHtml(input.message)}</p>
</div>
${input.status === 'error' ? '' : '<p class="small">You can close this page.</p>'}`;
  return page(input.title, body, `status-${input.status}`);
}

const ERRORS: Record<ApprovalErrorState, { status: number; title: string; message: string }> = {
  unknown: {
    status: 404,
    title: 'This approval link is not valid',
    message: 'Check that you opened the whole link from the email; some mail apps cut long links. Nothing was approved.',
  },
  used: {
    status: 409,
    title: 'This link has already been used',
    message: 'A decision was already recorded with this link, and each link works only once.',
  },
  already_decided: {
    status: 409,
    title: 'This request has already been decided',
    message: 'It was approved, rejected or cancelled elsewhere before your answer arrived. Your answer was not recorded.',
  },
  expired: {
    status: 410,
    title: 'This approval link has expired',
    message: 'The request was not approved in time, so it will not run. If it is still wanted, it has to be requested again.',
  },
  voided: {
    status: 410,
    title: 'This approval link has been withdrawn',
    message: 'The request was decided or cancelled another way, so this link no longer works.',
  },
  payload_changed: {
    status: 410,
    title: 'The request changed after this link was sent',
    message: 'For your safety this link no longer works: what you would approve is not what you were shown. A new approval request is needed.',
  },
  wrong_code: {
    status: 403,
    title: 'That code is not right',
    message: `Nothing was approved. Open the link from the approval email again and enter the ${ONE_TIME_CODE_DIGITS}\u2011digit code from the second email. After ${MAX_CODE_ATTEMPTS} wrong tries the link is locked.`,
  },
  too_many_attempts: {
    status: 429,
    title: 'This link is locked',
    message: `${MAX_CODE_ATTEMPTS} wrong codes were entered, so this link is locked for good and the request was not approved. It can no longer be decided by email: an approver can still approve or reject it another way (through the API), or it expires unapproved.`,
  },
  bad_request: {
    status: 400,
    title: 'The form could not be read',
    message: 'Nothing was decided. Open the link from the approval email again and use the buttons on that page.',
  },
};

/** The page and HTTP status for a token or form that cannot lead to a decision. */
export function renderErrorPage(state: ApprovalErrorState, detail?: string): { status: number; html: string } {
  const error = ERRORS[state];
  const message = detail ? `${error.message}\n\n${detail}` : error.message;
  return { status: error.status, html: renderResultPage({ title: error.title, message, status: 'error' }) };
}

const FORM_FIELDS = new Set(['decision', 'reason', 'code']);

/**
 * Parses an `application/x-www-form-urlencoded` decision form strictly: `decision` must be
 * `approve` or `reject`, no field may repeat, no other field is allowed, `reason` is at most
 * 1000 characters (blank means none) and `code`, when given, is 8 digits (spaces and dashes
 * ignored). Errors name the field.
 */
export function parseDecisionForm(body: string): DecisionForm | { error: string } {
  if (typeof body !== 'string') return { error: 'the form body is missing' };
  if (Buffer.byteLength(body, 'utf8') > MAX_DECISION_FORM_BYTES) return { error: 'the form is too large' };
  const params = new URLSearchParams(body);
  const seen = new Set<string>();
  for (const key of params.keys()) {
    if (!FORM_FIELDS.has(key)) return { error: `unexpected field "${key.slice(0, 40)}"` };
    if (seen.has(key)) return { error: `field "${key}" was sent more than once` };
    seen.add(key);
  }

  const decision = params.get('decision');
  if (decision === null) return { error: 'field "decision" is required: approve or reject' };
  if (decision !== 'approve' && decision !== 'reject') return { error: 'field "decision" must be "approve" or "reject"' };

  let reason: string | null = null;
  const rawReason = params.get('reason');
  if (rawReason !== null) {
    const cleaned = rawReason.replace(/\r\n?/g, '\n').replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '').trim();
    if (Array.from(cleaned).length > MAX_REASON_LENGTH) return { error: `field "reason" must be at most ${MAX_REASON_LENGTH} characters` };
    reason = cleaned === '' ? null : cleaned;
  }

  let code: string | null = null;
  const rawCode = params.get('code');
  if (rawCode !== null && rawCode.trim() !== '') {
    code = normalizeOneTimeCode(rawCode);
    if (code === null) return { error: `field "code" must be the ${ONE_TIME_CODE_DIGITS} digits from the second email` };
  }

  return { decision, reason, code };
}
