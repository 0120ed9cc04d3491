import { MAX_CODE_ATTEMPTS, ONE_TIME_CODE_DIGITS } from '../engine/approval-tokens.js';

/** The action an approval is asked for, and its context: shared by the email and the page. */
export interface ApprovalSummaryInput {
  action: {
    id: string;
    type: string;
    payload: unknown;
    priority: number;
    scheduledFor: Date | null;
    createdAt: Date;
  };
  requestedBy: { name: string; role: string };
  /** The user on whose behalf the action would run. */
  userHandle: string;
  /** When the approval link stops working. */
  expiresAt: Date;
}

/** Input of `renderApprovalEmail`. */
export interface ApprovalEmailInput extends ApprovalSummaryInput {
  /** The link to the confirmation page (`GET /approvals/:token`); opening it decides nothing. */
  approveUrl: string;
  /** True for payments and purchases: a one-time code is mailed separately. */
  needsCode: boolean;
}

/** A rendered email: subject plus text and HTML bodies. */
export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

/**
 * One line of an action's description. `value` is a list when it is an array; `format` says
 * how to show a long value: `text` keeps line breaks, `json` is a preformatted block.
 */
export interface ActionDetail {
  label: string;
  value: string | string[];
  format?: 'inline' | 'text' | 'json';
}

/** What an action will do, in plain words: a one-line headline and the details behind it. */
export interface ActionDescription {
  headline: string;
  details: ActionDetail[];
  /** True when the type has no plain-words description and the details are the raw JSON. */
  generic: boolean;
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

// Bidi overrides and isolates can make "evil.com/moc.knab" read as something else.
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const CONTROLS_EXCEPT_TAB_LF = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * One line of user-controlled text: line breaks become spaces, control and bidi characters go.
 * Why: a value with a line break could fake a line of its own ("Link: …") in the text body.
 */
export function oneLine(value: string): string {
  return value
    .replace(/\r\n|[\r\n\u2028\u2029\u0085]/g, ' ')
    .replace(CONTROLS_EXCEPT_TAB_LF, '')
    .replace(BIDI_CONTROLS, '')
    .replace(/\t/g, ' ');
}

function multiLine(value: string): string {
  return value
    .replace(/\r\n?|[\u2028\u2029\u0085]/g, '\n')
    .replace(CONTROLS_EXCEPT_TAB_LF, '')
    .replace(BIDI_CONTROLS, '');
}

/** A subject line that cannot carry extra headers: one line, at most `max` characters. */
export function safeSubject(value: string, max = MAX_SUBJECT_LENGTH): string {
  const line = oneLine(value).replace(/\s+/g, ' ').trim();
  return truncateChars(line, max);
}

function truncateChars(value: string, max: number): string {
  const chars = Array.from(value);
  return chars.length <= max ? value : `${chars.slice(0, max - 1).join('').trimEnd()}…`;
}

function truncateBlock(value: string, max: number): string {
  const chars = Array.from(value);
  if (chars.length <= max) return value;
  return `${chars.slice(0, max).join('')}\n… (${chars.length - max} more characters not shown)`;
}

/** A date and time in words, e.g. "Mon, 3 Mar 2025, 14:00 UTC". Falls back to UTC for an unknown zone. */
export function formatDateTime(date: Date, timeZone = 'UTC'): string {
  if (Number.isNaN(date.getTime())) return 'an invalid date';
  return dateFormat(timeZone).format(date);
}

function dateFormat(timeZone: string): Intl.DateTimeFormat {
  const options: Intl.DateTimeFormatOptions = {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    year: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    timeZoneName: 'short',
  };
  try {
    return new Intl.DateTimeFormat('en-GB', { ...options, timeZone });
  } catch {
    return new Intl.DateTimeFormat('en-GB', { ...options, timeZone: 'UTC' });
  }
}

function parseDate(value: string | undefined): Date | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function formatWhen(value: string | undefined, timeZone: string | undefined): string | undefined {
  const date = parseDate(value);
  return date ? formatDateTime(date, timeZone) : value;
}

function formatRange(start: string | undefined, end: string | undefined, timeZone: string | undefined): string | undefined {
  const from = parseDate(start);
  const to = parseDate(end);
  if (from && to && to > from) return dateFormat(timeZone ?? 'UTC').formatRange(from, to);
  if (!start && !end) return undefined;
  return `${formatWhen(start, timeZone) ?? '?'} – ${formatWhen(end, timeZone) ?? '?'}`;
}

function prettyJson(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    return String(value);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads payload fields, remembering which were shown so that nothing else goes unseen. */
class PayloadReader {
  private readonly used = new Set<string>();
  constructor(private readonly payload: Record<string, unknown>) {}

  text(key: string): string | undefined {
    const value = this.payload[key];
    if (typeof value === 'string' && value.trim() !== '') {
      this.used.add(key);
      return oneLine(value);
    }
    if (typeof value === 'number' || typeof value === 'boolean') {
      this.used.add(key);
      return String(value);
    }
    if (value === undefined || value === null || value === '') this.used.add(key);
    return undefined;
  }

  longText(key: string): string | undefined {
    const value = this.payload[key];
    if (typeof value !== 'string') return this.text(key);
    this.used.add(key);
    return value.trim() === '' ? undefined : multiLine(value);
  }

  list(key: string): string[] {
    const value = this.payload[key];
    if (typeof value === 'string') return [this.text(key)].filter((v): v is string => v !== undefined);
    if (value === undefined || value === null) {
      this.used.add(key);
      return [];
    }
    if (Array.isArray(value) && value.every((v) => typeof v === 'string' || typeof v === 'number')) {
      this.used.add(key);
      return value.map((v) => oneLine(String(v)));
    }
    return [];
  }

  items(key: string, short = false): string[] {
    const value = this.payload[key];
    if (!Array.isArray(value)) return this.list(key);
    this.used.add(key);
    return value.map((item) => describeItem(item, short));
  }

  raw(key: string): unknown {
    return this.payload[key];
  }

  rest(): Record<string, unknown> {
    return Object.fromEntries(Object.entries(this.payload).filter(([key]) => !this.used.has(key)));
  }
}

/** An item line: "2 × Burger at 9.50 each (no onions)"; `short` leaves out price and extras. */
function describeItem(item: unknown, short = false): string {
  if (typeof item === 'string' || typeof item === 'number') return oneLine(String(item));
  if (!isObject(item)) return oneLine(JSON.stringify(item) ?? String(item));
  const reader = new PayloadReader(item);
  const name = reader.text('name') ?? reader.text('title') ?? reader.text('sku') ?? 'unnamed item';
  const quantity = reader.text('quantity') ?? '1';
  let price = reader.text('price');
  // Why: 9.5 as a price reads like a typo; show two decimals when that changes no digit.
  if (typeof item.price === 'number' && Math.abs(Math.round(item.price * 100) - item.price * 100) < 1e-6) price = item.price.toFixed(2);
  const mods = reader.list('modifications');
  let line = `${quantity} × ${name}`;
  if (short) return line;
  if (price !== undefined) line += ` at ${price} each`;
  if (mods.length > 0) line += ` (${mods.join(', ')})`;
  const rest = reader.rest();
  if (Object.keys(rest).length > 0) line += ` — also: ${oneLine(JSON.stringify(rest))}`;
  return line;
}

function itemsTotal(items: unknown): string | undefined {
  if (!Array.isArray(items) || items.length === 0) return undefined;
  let cents = 0;
  for (const item of items) {
    if (!isObject(item)) return undefined;
    const price = Number(item.price);
    const quantity = item.quantity === undefined ? 1 : Number(item.quantity);
    if (!Number.isFinite(price) || !Number.isFinite(quantity)) return undefined;
    cents += Math.round(price * 100) * quantity;
  }
  return (cents / 100).toFixed(2);
}

function listWords(values: string[], max = 3): string {
  if (values.length <= max) return values.join(', ');
  return `${values.slice(0, max).join(', ')} and ${values.length - max} more`;
}

function quoted(value: string | undefined): string {
  return value === undefined ? '' : `“${value}”`;
}

function money(amount: string | undefined, currency: string | undefined): string | undefined {
  if (amount === undefined) return undefined;
  return currency ? `${amount} ${currency}` : amount;
}

type Row = ActionDetail | null | undefined | false;

function rows(...list: Row[]): ActionDetail[] {
  return list.filter((row): row is ActionDetail => {
    if (!row) return false;
    return Array.isArray(row.value) ? row.value.length > 0 : row.value !== '';
  });
}

function row(label: string, value: string | string[] | undefined, format?: ActionDetail['format']): Row {
  if (value === undefined) return null;
  return format ? { label, value, format } : { label, value };
}

type Describer = (p: PayloadReader, max: number) => Omit<ActionDescription, 'generic'>;

const DESCRIBERS: Record<string, Describer> = {
  send_email(p, max) {
    const to = p.list('to');
    const cc = p.list('cc');
    const bcc = p.list('bcc');
    const subject = p.text('subject');
    const body = p.longText('body');
    const html = p.longText('html');
    let headline = to.length > 0 ? `Send an email to ${listWords(to)}` : 'Send an email';
    if (subject !== undefined) headline += ` with the subject ${quoted(subject)}`;
    return {
      headline,
      details: rows(
        row('To', to),
        row('Cc', cc),
        row('Bcc', bcc),
        row('Subject', subject),
        row('Message', body === undefined ? undefined : truncateBlock(body, max), 'text'),
        row('HTML version (source)', html === undefined ? undefined : truncateBlock(html, max), 'json'),
      ),
    };
  },

  create_calendar_event(p, max) {
    const title = p.text('title');
    const timeZone = p.text('timezone');
    const when = formatRange(p.text('start_time'), p.text('end_time'), timeZone);
    const attendees = p.list('attendees');
    const location = p.text('location');
    const description = p.longText('description');
    let headline = `Create the calendar event ${quoted(title ?? 'untitled')}`;
    if (when !== undefined) headline += ` on ${when}`;
    if (attendees.length > 0) headline += ` with ${listWords(attendees)}`;
    return {
      headline,
      details: rows(
        row('Title', title),
        row('When', when),
        row('Time zone', timeZone),
        row('Attendees', attendees),
        row('Location', location),
        row('Description', description === undefined ? undefined : truncateBlock(description, max), 'text'),
      ),
    };
  },

  move_file(p) {
    const from = p.text('from');
    const to = p.text('to');
    return {
      headline: `Move the file ${from ?? '?'} → ${to ?? '?'}`,
      details: rows(row('From', from), row('To', to)),
    };
  },

  create_document(p, max) {
    const title = p.text('title');
    const folder = p.text('folder');
    const format = p.text('format');
    const content = p.longText('content');
    let headline = `Create the document ${quoted(title ?? 'untitled')}`;
    if (folder !== undefined) headline += ` in the folder ${folder}`;
    if (format !== undefined) headline += ` as ${format}`;
    return {
      headline,
      details: rows(
        row('Title', title),
        row('Folder', folder ?? 'the top folder'),
        row('Format', format),
        row('Content', content === undefined ? undefined : truncateBlock(content, max), 'text'),
      ),
    };
  },

  make_payment(p) {
    const amount = money(p.text('amount'), p.text('currency'));
    const recipient = p.text('recipient');
    const memo = p.text('memo');
    return {
      headline: `Pay ${amount ?? 'an unstated amount'} to ${recipient ?? 'an unstated recipient'}`,
      details: rows(row('Amount', amount), row('Recipient', recipient), row('Memo', memo)),
    };
  },

  make_purchase(p) {
    const merchant = p.text('merchant');
    const total = money(p.text('total'), p.text('currency'));
    const short = p.items('items', true);
    const items = p.items('items');
    let headline = `Buy ${items.length > 0 && items.length <= 3 ? short.join(', ') : `${items.length} items`}`;
    if (merchant !== undefined) headline += ` from ${merchant}`;
    if (total !== undefined) headline += ` for ${total}`;
    return {
      headline,
      details: rows(row('Merchant', merchant), row('Items', items), row('Total', total)),
    };
  },

  order(p) {
    const provider = p.text('provider');
    const rawItems = p.raw('items');
    const short = p.items('items', true);
    const items = p.items('items');
    const total = itemsTotal(rawItems);
    const pickup = formatWhen(p.text('pickup_time'), undefined);
    let headline = `Order from ${provider ?? 'an unstated provider'}`;
    if (items.length > 0) headline += `: ${items.length <= 3 ? short.join(', ') : `${items.length} items`}`;
    if (pickup !== undefined) headline += `, pickup ${pickup}`;
    return {
      headline,
      details: rows(
        row('Provider', provider),
        row('Items', items),
        row('Items total (price × quantity)', total),
        row('Pickup time', pickup),
        row('Customer name', p.text('customer_name')),
        row('Customer phone', p.text('customer_phone')),
        row('Special instructions', p.text('special_instructions')),
      ),
    };
  },
};

/**
 * Describes in plain words what an action will do, per built-in type; other types (and
 * payloads that are not objects) are shown as pretty-printed JSON. Payload fields a type's
 * description does not use are appended as JSON, so the approver sees everything.
 * `maxTextLength` caps long text such as an email body.
 */
export function describeAction(type: string, payload: unknown, options: { maxTextLength?: number } = {}): ActionDescription {
  const max = options.maxTextLength ?? 2000;
  const describer = Object.hasOwn(DESCRIBERS, type) ? DESCRIBERS[type] : undefined;
  if (!describer || !isObject(payload)) {
    return {
      headline: `Run the action ${quoted(oneLine(type))}`,
      details: [{ label: 'Request', value: truncateBlock(prettyJson(payload), max), format: 'json' }],
      generic: true,
    };
  }
  const reader = new PayloadReader(payload);
  const { headline, details } = describer(reader, max);
  const rest = reader.rest();
  if (Object.keys(rest).length > 0) {
    details.push({ label: 'Other details', value: truncateBlock(prettyJson(rest), max), format: 'json' });
  }
  return { headline, details, generic: false };
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
  const { headline, details } = describeAction(input.action.type, input.action.payload);
  const context = describeRequest(input);
  const codeLine = `You will also need the ${ONE_TIME_CODE_DIGITS}-digit one-time code that arrives in a separate email. Enter it on the page to approve.`;
  const ignoreLine = `If you did not expect this request, do nothing: it will not run unless someone approves it before ${formatDateTime(input.expiresAt)}.`;

  const text = [
    'Approval needed',
    '',
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
<h1 style="margin:0 0 16px;font-size:20px;line-height:1.3;word-break:break-word;">${escapeHtml(headline)}</h1>
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
