/**
 * The zod building blocks of action type payloads: text of one line or many, email addresses,
 * date-times, time zones, paths inside the user's file root, money. Each states its rule in its
 * JSON Schema (`description`, `pattern`, `examples`), so a published schema explains itself,
 * and refuses a bad value with one message that names the rule.
 */
import { z } from 'zod';
import { parseIsoDateTime } from '../date-time.js';
import {
  controlCharacterProblem,
  MULTI_LINE_CHARACTER,
  MULTI_LINE_RULE,
  shortInput,
  SINGLE_LINE_CHARACTER,
  SINGLE_LINE_RULE,
  singleLineProblem,
} from '../input-text.js';

/** A check on a string that stops the others when it fails (one error per field). */
export const refuse =
  (problem: (value: string) => string | null) =>
  (value: string, ctx: z.RefinementCtx<string>): void => {
    const found = problem(value);
    if (found) ctx.addIssue({ code: 'custom', message: found, input: value, continue: false });
  };

/** JSON Schema patterns of single-line and multi-line text (what {@link singleLineProblem} and {@link controlCharacterProblem} accept). */
export const SINGLE_LINE_PATTERN = `^${SINGLE_LINE_CHARACTER}*$`;
export const MULTI_LINE_PATTERN = `^${MULTI_LINE_CHARACTER}*$`;

/** Multi-line text (a body, a description): TAB, LF and CR allowed, other control characters not. */
export const multiLine = (max: number, description: string) =>
  z
    .string()
    .superRefine(refuse(controlCharacterProblem))
    .max(max)
    .meta({ description: `${description} ${MULTI_LINE_RULE}`, pattern: MULTI_LINE_PATTERN });

/** Single-line text (a subject, a name): no line breaks, no control character but TAB, no bidi overrides or isolates. */
export const line = (max: number, description?: string) =>
  z
    .string()
    .superRefine(refuse(singleLineProblem))
    .max(max)
    .meta({ description: description ? `${description} ${SINGLE_LINE_RULE}` : SINGLE_LINE_RULE, pattern: SINGLE_LINE_PATTERN });

/** Required single-line text, trimmed, not empty. */
export const text = (max: number, description?: string) =>
  z
    .string()
    .superRefine(refuse(singleLineProblem))
    .trim()
    .min(1, { error: 'must not be empty' })
    .max(max)
    .meta({
      description: description ? `${description} Not empty. ${SINGLE_LINE_RULE}` : `Not empty. ${SINGLE_LINE_RULE}`,
      pattern: SINGLE_LINE_PATTERN,
    });

/** The longest email address (RFC 5321: a path of 256 octets, less the angle brackets) and its part before @. */
export const MAX_EMAIL_CHARS = 254;
export const MAX_EMAIL_LOCAL_CHARS = 64;

/** Why a string is not a bare email address (`ada@example.com`; no display name, no `<…>`), or null. */
function emailProblem(value: string): string | null {
  const single = singleLineProblem(value);
  if (single) return single;
  if (value.length > MAX_EMAIL_CHARS) return `must be an email address of at most ${MAX_EMAIL_CHARS} characters`;
  if (!z.regexes.email.test(value)) return 'must be an email address such as ada@example.com (no display name or <…>)';
  const at = value.lastIndexOf('@');
  if (at > MAX_EMAIL_LOCAL_CHARS) return `must be an email address whose part before @ has at most ${MAX_EMAIL_LOCAL_CHARS} characters`;
  if (value.slice(at + 1).split('.').some((label) => label.length > 63)) return 'must be an email address whose domain labels have at most 63 characters';
  return null;
}

/** A bare email address, checked by {@link emailProblem}. */
export const email = z
  .string()
  .superRefine(refuse(emailProblem))
  .meta({
    format: 'email',
    pattern: z.regexes.email.source,
    maxLength: MAX_EMAIL_CHARS,
    description: `A bare email address (no display name, no <…>), at most ${MAX_EMAIL_CHARS} characters, at most ${MAX_EMAIL_LOCAL_CHARS} before the @.`,
    examples: ['ada@example.com'],
  });

/** An ISO 8601 date-time with a time zone that is a real date (no 2030-02-31, no year 0000). */
export const isoDateTime = z
  .string()
  .superRefine((value, ctx) => {
    const parsed = parseIsoDateTime(value);
    if ('error' in parsed) ctx.addIssue({ code: 'custom', message: parsed.error, input: value });
  })
  .meta({ format: 'date-time', examples: ['2026-11-21T10:00:00Z', '2026-11-21T11:00:00+01:00'] });

/** Why a string is not an IANA time zone name this server knows (`Europe/Berlin`, `UTC`), or null. */
export function timeZoneProblem(value: string): string | null {
  const single = singleLineProblem(value);
  if (single) return single;
  // An IANA name, not an offset: Intl of newer runtimes also takes "+01:00".
  const invalid = 'must be an IANA time zone name such as Europe/Berlin or UTC';
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/.test(value)) return invalid;
  try {
    new Intl.DateTimeFormat(undefined, { timeZone: value });
    return null;
  } catch (error) {
    if (error instanceof RangeError) return `${invalid}; ${shortInput(value)} is not one`;
    throw error;
  }
}


/**
 * A path inside the user's file root, as JSON Schema states it (ECMA-262): not absolute, no
 * `..` segment, one line (no control character but TAB, no line break, no bidi override or
 * isolate). The refinements below say the same with a message per rule.
 */
export const USER_PATH_PATTERN = `^(?![/\\\\])(?!(?:.*[/\\\\])?\\.\\.(?:[/\\\\]|$))${SINGLE_LINE_CHARACTER}+$`;
/** {@link USER_PATH_PATTERN}, and not the whole folder ("", ".", "./" after normalisation): a file of move_file. */
export const FILE_PATH_PATTERN = `^(?!(?:\\.?[/\\\\])*\\.?$)${USER_PATH_PATTERN.slice(1)}`;

/** A path as the handlers resolve it: `\` and `/` separate segments, empty and `.` segments drop out. */
export function normalizeUserPath(p: string): string {
  return p
    .split(/[\\/]/)
    .filter((segment) => segment !== '' && segment !== '.')
    .join('/');
}

/** The longest folder or file name most filesystems allow, in bytes. */
const MAX_NAME_BYTES = 255;
const UTF8 = new TextEncoder();

/** The rules of a user path, as descriptions state them. */
export const PATH_RULES = 'no leading /, no ".." segment, one line: no line breaks, control characters other than TAB or bidirectional override/isolate characters';
/** A path relative to the user's file root (a folder of create_document, a file of move_file). */
export const userPath = z
  .string()
  .superRefine(refuse(singleLineProblem))
  .min(1, { error: 'must not be empty', abort: true })
  .max(1024, { abort: true })
  .refine((p) => !p.startsWith('/') && !p.startsWith('\\'), { error: 'must be relative to your file root', abort: true })
  .refine((p) => !p.split(/[\\/]/).includes('..'), { error: 'must not contain ".."', abort: true })
  // Longer names fail on the filesystem (ENAMETOOLONG): refused here, when the action is created.
  .refine((p) => p.split(/[\\/]/).every((segment) => UTF8.encode(segment).length <= MAX_NAME_BYTES), {
    error: `each folder or file name must be at most ${MAX_NAME_BYTES} bytes`,
    abort: true,
  })
  .meta({
    pattern: USER_PATH_PATTERN,
    description: `A path relative to your file root (${PATH_RULES}; symbolic links out of it are refused).`,
    examples: ['reports/2026/q3.pdf'],
  });
/** A file of move_file: a user path that names something inside the folder, not the folder itself. */
export const filePath = userPath
  .refine((p) => normalizeUserPath(p) !== '', { error: 'must name a file or folder inside your file root, not the whole root ("", "." or "./")' })
  .meta({ pattern: FILE_PATH_PATTERN });
/** An amount of money in a currency's main unit: more than 0, at most 1,000,000,000. */
export const money = z.number().positive({ error: 'must be more than 0' }).max(1_000_000_000);
/** An ISO 4217 currency code. */
export const currency = z
  .string()
  .superRefine(refuse(singleLineProblem))
  .regex(/^[A-Z]{3}$/, { error: 'must be an ISO 4217 code such as EUR' })
  .meta({ description: 'ISO 4217 currency code, upper case.', examples: ['EUR', 'USD'] });

/**
 * A JSON number as the exact decimal it was written as (JavaScript prints the shortest text
 * that reads back as the same number: 0.005 is "0.005", 2.675 is "2.675"), scaled to an
 * integer: `units / 10^scale`.
 */
export function exactDecimal(n: number): { units: bigint; scale: number } {
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(n));
  if (!m) throw new RangeError(`not a finite non-negative number: ${n}`);
  const fraction = m[2] ?? '';
  const scale = fraction.length - Number(m[3] ?? 0);
  const digits = BigInt(m[1]! + fraction);
  return scale >= 0 ? { units: digits, scale } : { units: digits * 10n ** BigInt(-scale), scale: 0 };
}

/** `units / 10^scale` as text with at least two decimals (`61.00`, `0.999`). */
export function formatDecimal({ units, scale }: { units: bigint; scale: number }): string {
  const at = Math.max(scale, 2);
  const padded = (units * 10n ** BigInt(at - scale)).toString().padStart(at + 1, '0');
  const text = `${padded.slice(0, -at)}.${padded.slice(-at)}`;
  return text.replace(/(\.\d\d\d*?)0+$/, '$1');
}

/**
 * Whether a total matches Σ price × quantity to the cent: computed exactly (no rounding per
 * item, no float error), the two may differ by at most half a cent, so a total rounded either
 * way from 0.999 or 10.005 is right. Returns the exact sum.
 */
export function purchaseTotalMatches(items: ReadonlyArray<{ price: number; quantity: number }>, total: number): { matches: boolean; sum: string } {
  const terms = items.map((item) => {
    const price = exactDecimal(item.price);
    return { units: price.units * BigInt(item.quantity), scale: price.scale };
  });
  const exactTotal = exactDecimal(total);
  const scale = Math.max(2, exactTotal.scale, ...terms.map((t) => t.scale));
  const at = (d: { units: bigint; scale: number }) => d.units * 10n ** BigInt(scale - d.scale);
  const sum = terms.reduce((acc, t) => acc + at(t), 0n);
  const difference = sum > at(exactTotal) ? sum - at(exactTotal) : at(exactTotal) - sum;
  // Half a cent is 5 × 10^(scale - 3).
  return { matches: difference * 1000n <= 5n * 10n ** BigInt(scale), sum: formatDecimal({ units: sum, scale }) };
}

/** Σ price × quantity, exactly, as text with at least two decimals (`12.00`, `0.999`). */
export function itemsSum(items: ReadonlyArray<{ price: number; quantity: number }>): string {
  const terms = items.map((item) => {
    const price = exactDecimal(item.price);
    return { units: price.units * BigInt(item.quantity), scale: price.scale };
  });
  const scale = Math.max(2, ...terms.map((t) => t.scale));
  const sum = terms.reduce((acc, t) => acc + t.units * 10n ** BigInt(scale - t.scale), 0n);
  return formatDecimal({ units: sum, scale });
}
