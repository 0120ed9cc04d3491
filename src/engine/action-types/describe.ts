import type { ActionAbout, ActionDetail, ActionTypeDefinition, DetailInput } from './define.js';
import { exactDecimal, formatDecimal } from './fields.js';

/**
 * What an action will do, in plain words, ready to show: the approval mail and page, the
 * operator's task. Every value in it is safe to put on one line (headline, inline values, list
 * items) or in an indented block (`text`, `json`).
 */
export interface ActionDescription {
  headline: string;
  details: ActionDetail[];
  /** Plain-text instructions for an operator who carries it out by hand. */
  instructions: string;
  /**
   * True when the description is the raw JSON: the type has no `describe`, the payload does not
   * fit the type's schema (a stored payload older than a schema change), or `describe` threw.
   */
  generic: boolean;
}

/** Options of {@link describePayload}. */
export interface DescribeOptions {
  /** Longest `text` and `json` value shown, in characters (default 2,000); longer ones are cut with a note. */
  maxTextLength?: number;
  /** The payload was already parsed with the type's schema (the worker's): skip parsing it again. */
  parsed?: boolean;
  /** The stored action, when there is one (an operator needs to know whose folder). */
  about?: ActionAbout;
}

/** Default of {@link DescribeOptions.maxTextLength}. */
export const DEFAULT_MAX_TEXT_CHARS = 2000;
/** Longest text (an email body, a document) quoted into an operator's instructions, in characters; the full text stays on the action. */
export const OPERATOR_QUOTE_CHARS = 20_000;

/**
 * Describes a payload with its type's `describe`, after parsing it with the type's schema, so
 * the describer sees the typed payload it was written for. Falls back to the payload as JSON
 * (`generic`) when there is no definition or `describe`, when the payload does not parse, or
 * when `describe` throws: an approver always sees something, and everything.
 *
 * Nothing goes unseen: top-level payload fields the describer never read are appended as
 * "Other details" (JSON), so a field added to a schema but forgotten in its describer still
 * reaches the approver.
 */
export function describePayload(
  definition: ActionTypeDefinition | undefined,
  type: string,
  payload: unknown,
  options: DescribeOptions = {},
): ActionDescription {
  const max = options.maxTextLength ?? DEFAULT_MAX_TEXT_CHARS;
  if (!definition?.describe) return genericDescription(type, payload, max);
  let value = payload;
  if (!options.parsed) {
    const parsed = definition.payload.safeParse(payload);
    if (!parsed.success) return genericDescription(type, payload, max);
    value = parsed.data;
  }
  const read = new Set<string>();
  const tracked = isObject(value) ? watchReads(value, read) : value;
  let said;
  try {
    said = definition.describe(tracked, options.about);
  } catch {
    return genericDescription(type, payload, max);
  }
  const headline = oneLine(said.headline).trim();
  const details = cleanDetails(said.details, max);
  if (isObject(value)) {
    const unread = Object.fromEntries(Object.entries(value).filter(([key, v]) => !read.has(key) && v !== undefined));
    if (Object.keys(unread).length > 0) {
      details.push({ label: 'Other details', value: truncateBlock(multiLine(prettyJson(unread)), max), format: 'json' });
    }
  }
  const instructions = said.instructions === undefined ? defaultInstructions(headline, details) : multiLine(said.instructions);
  return { headline, details, instructions, generic: false };
}

/** The payload as pretty-printed JSON, for a type without a description. */
function genericDescription(type: string, payload: unknown, max: number): ActionDescription {
  const json = prettyJson(payload);
  return {
    headline: `Run the action ${quoted(oneLine(type))}`,
    details: [{ label: 'Request', value: truncateBlock(multiLine(json), max), format: 'json' }],
    instructions: `Carry out this ${oneLine(type)} action:\n\n${multiLine(excerpt(json))}`,
    generic: true,
  };
}

/** Records which top-level fields are read (`describe` gets the proxy, not the payload). */
function watchReads(payload: Record<string, unknown>, read: Set<string>): Record<string, unknown> {
  return new Proxy(payload, {
    get(target, key, receiver) {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key, receiver);
    },
    // Spreading or listing entries reads every field.
    ownKeys(target) {
      for (const key of Object.keys(target)) read.add(key);
      return Reflect.ownKeys(target);
    },
  });
}

function cleanDetails(details: ReadonlyArray<DetailInput | false | null | undefined>, max: number): ActionDetail[] {
  const out: ActionDetail[] = [];
  for (const d of details) {
    if (!d || d.value === undefined || d.value === null) continue;
    const label = oneLine(d.label);
    if (Array.isArray(d.value)) {
      const items = (d.value as ReadonlyArray<string | number>).map((v) => oneLine(String(v)));
      if (items.length > 0) out.push({ label, value: items });
      continue;
    }
    const text = String(d.value);
    if (text.trim() === '') continue;
    if (d.format === 'text' || d.format === 'json') out.push({ label, value: truncateBlock(multiLine(text), max), format: d.format });
    else out.push({ label, value: oneLine(text) });
  }
  return out;
}

function defaultInstructions(headline: string, details: ActionDetail[]): string {
  const lines = [`${headline}.`];
  for (const d of details) {
    if (Array.isArray(d.value)) lines.push(`${d.label}: ${d.value.join(', ')}`);
    else if (d.format === 'text' || d.format === 'json') lines.push(`${d.label}:`, '', d.value, '');
    else lines.push(`${d.label}: ${d.value}`);
  }
  return lines.join('\n').trimEnd();
}

// ---------------------------------------------------------------------------------------------
// Building blocks for describers and the renderers.

// Bidi overrides, isolates and marks can make "evil.com/moc.knab" read as something else.
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const CONTROLS_EXCEPT_TAB_LF = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * One line of user-controlled text: line breaks become spaces, control and bidi characters go.
 * Why: a value with a line break could fake a line of its own ("Link: …") in a text body.
 */
export function oneLine(value: string): string {
  return value
    .replace(/\r\n|[\r\n\u2028\u2029\u0085]/g, ' ')
    .replace(CONTROLS_EXCEPT_TAB_LF, '')
    .replace(BIDI_CONTROLS, '')
    .replace(/\t/g, ' ');
}

/** Text of many lines: line breaks become LF, control characters other than TAB and LF and bidi characters go. */
export function multiLine(value: string): string {
  return value
    .replace(/\r\n?|[\u2028\u2029\u0085]/g, '\n')
    .replace(CONTROLS_EXCEPT_TAB_LF, '')
    .replace(BIDI_CONTROLS, '');
}

/** At most `max` characters (code points), the last one `…` when cut. */
export function truncateChars(value: string, max: number): string {
  const chars = Array.from(value);
  return chars.length <= max ? value : `${chars.slice(0, max - 1).join('').trimEnd()}…`;
}

/** At most `max` characters of a block, then a line saying how many more there are. */
export function truncateBlock(value: string, max: number): string {
  const chars = Array.from(value);
  if (chars.length <= max) return value;
  return `${chars.slice(0, max).join('')}\n… (${chars.length - max} more characters not shown)`;
}

/** A long text quoted into an operator's instructions: cut at {@link OPERATOR_QUOTE_CHARS}, saying where the rest is. */
export function excerpt(text: string, max = OPERATOR_QUOTE_CHARS): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}\n… (cut at ${max} characters; the full text is in the action's payload)`;
}

/** `a, b, c and 2 more`. */
export function listWords(values: readonly string[], max = 3): string {
  if (values.length <= max) return values.join(', ');
  return `${values.slice(0, max).join(', ')} and ${values.length - max} more`;
}

/** `“value”`, or '' for nothing. */
export function quoted(value: string | undefined): string {
  return value === undefined ? '' : `“${value}”`;
}

/**
 * Lines of operator instructions: a string is a line as it is, a `[label, value]` pair is a
 * `Label: value` line (lists joined with commas), left out when the value is absent or empty.
 */
export function instructionLines(...parts: Array<string | [string, string | number | readonly string[] | null | undefined] | false | null | undefined>): string {
  const lines: string[] = [];
  for (const part of parts) {
    if (part === false || part === null || part === undefined) continue;
    if (typeof part === 'string') {
      lines.push(part);
      continue;
    }
    const [label, value] = part;
    const text = Array.isArray(value) ? value.join(', ') : value === undefined || value === null ? '' : String(value);
    if (text !== '') lines.push(`${label}: ${text}`);
  }
  return lines.join('\n');
}

/** An amount as written, with at least two decimals: `9.50`, `12.00`, `0.999` (never rounded). */
export function amountText(amount: number): string {
  return Number.isFinite(amount) && amount >= 0 ? formatDecimal(exactDecimal(amount)) : String(amount);
}

/** An item of an order or a purchase. */
export interface ItemInput {
  name: string;
  quantity: number;
  price?: number | undefined;
  modifications?: readonly string[] | undefined;
}

/** `2 × Burger at 9.50 each (no onions)`; `short` leaves out the price and modifications. */
export function itemLine(item: ItemInput, short = false): string {
  let line = `${item.quantity} × ${item.name}`;
  if (short) return line;
  if (item.price !== undefined) line += ` at ${amountText(item.price)} each`;
  if (item.modifications?.length) line += ` (${item.modifications.join(', ')})`;
  return line;
}

/** A date and time in words, e.g. "Mon, 3 Mar 2025, 14:00 UTC". Falls back to UTC for an unknown zone. */
export function formatDateTime(date: Date, timeZone = 'UTC'): string {
  if (Number.isNaN(date.getTime())) return 'an invalid date';
  return dateFormat(timeZone).format(date);
}

const DATE_FORMATS = new Map<string, Intl.DateTimeFormat>();

function dateFormat(timeZone: string): Intl.DateTimeFormat {
  let format = DATE_FORMATS.get(timeZone);
  if (format) return format;
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
    format = new Intl.DateTimeFormat('en-GB', { ...options, timeZone });
  } catch {
    return dateFormat('UTC');
  }
  // Bounded: time zones are a closed set of names (the schema refuses others).
  if (DATE_FORMATS.size < 1000) DATE_FORMATS.set(timeZone, format);
  return format;
}

function parseDate(value: string | undefined): Date | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** An ISO 8601 date-time in words in `timeZone`; other text as it is. */
export function formatWhen(value: string | undefined, timeZone?: string): string | undefined {
  const date = parseDate(value);
  return date ? formatDateTime(date, timeZone) : value;
}

/** `Mon, 3 Mar 2025, 09:00 – 09:15 UTC`: a range of two ISO 8601 date-times, in words. */
export function formatRange(start: string | undefined, end: string | undefined, timeZone: string | undefined): string | undefined {
  const from = parseDate(start);
  const to = parseDate(end);
  if (from && to && to > from) return dateFormat(timeZone ?? 'UTC').formatRange(from, to);
  if (!start && !end) return undefined;
  return `${formatWhen(start, timeZone) ?? '?'} – ${formatWhen(end, timeZone) ?? '?'}`;
}

/** A value as indented JSON; what JSON cannot say as `String(value)`. */
export function prettyJson(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    return String(value);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
