import { z } from 'zod';
import { parseIsoDateTime } from './date-time.js';
import { InvalidPayloadError, PayloadErrors, UnknownTypeError } from './errors.js';
import {
  controlCharacterProblem,
  MULTI_LINE_CHARACTER,
  MULTI_LINE_RULE,
  shortInput,
  SINGLE_LINE_CHARACTER,
  SINGLE_LINE_RULE,
  singleLineProblem,
} from './input-text.js';

/** A check on a string that stops the others when it fails (one error per field). */
const refuse =
  (problem: (value: string) => string | null) =>
  (value: string, ctx: z.RefinementCtx<string>): void => {
    const found = problem(value);
    if (found) ctx.addIssue({ code: 'custom', message: found, input: value, continue: false });
  };

/** JSON Schema patterns of single-line and multi-line text (what {@link singleLineProblem} and {@link controlCharacterProblem} accept). */
export const SINGLE_LINE_PATTERN = `^${SINGLE_LINE_CHARACTER}*$`;
export const MULTI_LINE_PATTERN = `^${MULTI_LINE_CHARACTER}*$`;

/** Multi-line text (a body, a description): TAB, LF and CR allowed, other control characters not. */
const multiLine = (max: number, description: string) =>
  z
    .string()
    .superRefine(refuse(controlCharacterProblem))
    .max(max)
    .meta({ description: `${description} ${MULTI_LINE_RULE}`, pattern: MULTI_LINE_PATTERN });

/** Single-line text (a subject, a name): no line breaks, no control character but TAB, no bidi overrides or isolates. */
const line = (max: number, description?: string) =>
  z
    .string()
    .superRefine(refuse(singleLineProblem))
    .max(max)
    .meta({ description: description ? `${description} ${SINGLE_LINE_RULE}` : SINGLE_LINE_RULE, pattern: SINGLE_LINE_PATTERN });

/** Required single-line text, trimmed, not empty. */
const text = (max: number, description?: string) =>
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

const email = z
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
const isoDateTime = z
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

/** Text that starts with a date (`2031-02-01…`) is taken as an ISO 8601 date-time and must be a real one. */
const STARTS_WITH_DATE = /^\d{4}-\d{2}-\d{2}/;

/** Why a pickup time is refused, or null: free text (`12:30`, `in 20 minutes`) is fine, a date-time must be a real one. */
function pickupTimeProblem(value: string): string | null {
  const single = singleLineProblem(value);
  if (single) return single;
  if (!STARTS_WITH_DATE.test(value)) return null;
  const parsed = parseIsoDateTime(value);
  if (!('error' in parsed)) return null;
  return `${parsed.error} (a pickup time that starts with a date is read as an ISO 8601 date-time; free text such as "12:30" is taken as written)`;
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

const PATH_RULES = 'no leading /, no ".." segment, one line: no line breaks, control characters other than TAB or bidirectional override/isolate characters';
const userPath = z
  .string()
  .superRefine(refuse(singleLineProblem))
  .min(1, { error: 'must not be empty', abort: true })
  .max(1024, { abort: true })
  .refine((p) => !p.startsWith('/') && !p.startsWith('\\'), { error: 'must be relative to your file root', abort: true })
  .refine((p) => !p.split(/[\\/]/).includes('..'), { error: 'must not contain ".."', abort: true })
  .meta({
    pattern: USER_PATH_PATTERN,
    description: `A path relative to your file root (${PATH_RULES}; symbolic links out of it are refused).`,
    examples: ['reports/2026/q3.pdf'],
  });
/** A file of move_file: a user path that names something inside the folder, not the folder itself. */
const filePath = userPath
  .refine((p) => normalizeUserPath(p) !== '', { error: 'must name a file or folder inside your file root, not the whole root ("", "." or "./")' })
  .meta({ pattern: FILE_PATH_PATTERN });
const money = z.number().positive({ error: 'must be more than 0' }).max(1_000_000_000);
const currency = z
  .string()
  .superRefine(refuse(singleLineProblem))
  .regex(/^[A-Z]{3}$/, { error: 'must be an ISO 4217 code such as EUR' })
  .meta({ description: 'ISO 4217 currency code, upper case.', examples: ['EUR', 'USD'] });

const sendEmail = z.strictObject({
  to: z.array(email).min(1, { error: 'needs at least one recipient' }).max(100).meta({ description: 'Recipients (1 to 100 email addresses).' }),
  cc: z.array(email).max(100).optional(),
  bcc: z.array(email).max(100).optional(),
  subject: text(998, 'Subject line (at most 998 characters).').meta({ examples: ['Quarterly report'] }),
  body: multiLine(1_000_000, 'Plain-text body.').min(1, { error: 'must not be empty' }),
  html: multiLine(2_000_000, 'Optional HTML body, sent alongside the text.').optional(),
});

const calendarEvent = z
  .strictObject({
    title: text(500).meta({ examples: ['Team lunch'] }),
    start_time: isoDateTime.meta({ description: 'Start: an ISO 8601 date-time with a time zone.' }),
    end_time: isoDateTime.meta({ description: 'End: an ISO 8601 date-time with a time zone, after start_time.' }),
    description: multiLine(10_000, 'Event description.').optional(),
    attendees: z.array(email).max(500).optional(),
    location: line(500).optional(),
    timezone: z
      .string()
      .superRefine(refuse(timeZoneProblem))
      .max(64)
      .optional()
      .meta({ description: 'IANA time zone name for display (e.g. Europe/Berlin or UTC; unknown names and offsets are refused).', examples: ['Europe/Berlin'] }),
  })
  .superRefine((e, ctx) => {
    const start = parseIsoDateTime(e.start_time);
    const end = parseIsoDateTime(e.end_time);
    if ('date' in start && 'date' in end && end.date.getTime() <= start.date.getTime()) {
      ctx.addIssue({ code: 'custom', message: 'must be after start_time', path: ['end_time'], input: e.end_time });
    }
  })
  .meta({ description: 'end_time must be after start_time.' });

const moveFile = z
  .strictObject({
    from: filePath.meta({ description: `The file to move, relative to your file root (${PATH_RULES}; not the root itself).` }),
    to: filePath.meta({ description: `Where it goes, relative to your file root (${PATH_RULES}; not the root itself); must differ from from ("a.txt" and "./a.txt" are the same).` }),
  })
  .refine((m) => normalizeUserPath(m.to) === '' || normalizeUserPath(m.from) !== normalizeUserPath(m.to), {
    error: 'must differ from from (both name the same path)',
    path: ['to'],
  })
  .meta({ description: 'from and to must name different paths once normalised ("a.txt" and "./a.txt" are the same).' });

const createDocument = z.strictObject({
  title: text(500, 'Title; also names the file.').meta({ examples: ['Meeting notes'] }),
  content: multiLine(5_000_000, 'The document text (at most 5,000,000 characters).'),
  format: z.enum(['markdown', 'html', 'text']).default('markdown').meta({ description: 'File format; default markdown.' }),
  folder: userPath.optional().meta({ description: `Folder relative to your file root (${PATH_RULES}); created if missing.`, examples: ['notes/2026'] }),
});

const makePayment = z.strictObject({
  amount: money.meta({ description: 'Amount in the currency\'s main unit, more than 0.', examples: [12.5] }),
  currency,
  recipient: text(500, 'Who is paid.'),
  memo: multiLine(1000, 'A note for the recipient.').optional(),
});

/**
 * A JSON number as the exact decimal it was written as (JavaScript prints the shortest text
 * that reads back as the same number: 0.005 is "0.005", 2.675 is "2.675"), scaled to an
 * integer: `units / 10^scale`.
 */
function exactDecimal(n: number): { units: bigint; scale: number } {
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(n));
  if (!m) throw new RangeError(`not a finite non-negative number: ${n}`);
  const fraction = m[2] ?? '';
  const scale = fraction.length - Number(m[3] ?? 0);
  const digits = BigInt(m[1]! + fraction);
  return scale >= 0 ? { units: digits, scale } : { units: digits * 10n ** BigInt(-scale), scale: 0 };
}

/** `units / 10^scale` as text with at least two decimals (`61.00`, `0.999`). */
function formatDecimal({ units, scale }: { units: bigint; scale: number }): string {
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

const makePurchase = z
  .strictObject({
    items: z
      .array(
        z.strictObject({
          name: text(500),
          price: money.optional().meta({ description: 'Unit price in the purchase currency.' }),
          quantity: z.int().positive().max(10_000).default(1),
        }),
      )
      .min(1, { error: 'needs at least one item' })
      .max(500),
    merchant: text(500),
    total: money.meta({
      description: 'Total in the purchase currency; when every item has a price, it must equal Σ price × quantity (computed exactly, no rounding per item), to the cent.',
    }),
    currency,
  })
  .superRefine((p, ctx) => {
    if (!p.items.every((item) => item.price !== undefined)) return;
    const { matches, sum } = purchaseTotalMatches(p.items as Array<{ price: number; quantity: number }>, p.total);
    if (!matches) {
      ctx.addIssue({
        code: 'custom',
        path: ['total'],
        input: p.total,
        message: `is ${formatDecimal(exactDecimal(p.total))} but the items add up to ${sum} (Σ price × quantity)`,
      });
    }
  })
  .meta({ description: 'When every item has a price, total must equal the sum of price × quantity, to the cent (within half a cent of the exact sum).' });

const order = z.strictObject({
  provider: text(200, 'Who takes the order (a configured provider name).').meta({ examples: ['downtown-cafe'] }),
  items: z
    .array(
      z.strictObject({
        name: text(500),
        price: z.number().nonnegative().max(1_000_000),
        quantity: z.int().positive().max(1000).default(1),
        modifications: z.array(line(200)).max(50).optional(),
      }),
    )
    .min(1, { error: 'needs at least one item' })
    .max(200),
  pickup_time: z
    .string()
    .superRefine(refuse(pickupTimeProblem))
    .max(100)
    .optional()
    .meta({
      description: `When to pick the order up: free text ("12:30", "in 20 minutes"), or, when it starts with a date, an ISO 8601 date-time with a time zone that is a real one (2031-02-30 and hour 24 are refused). ${SINGLE_LINE_RULE}`,
      pattern: SINGLE_LINE_PATTERN,
      examples: ['12:30', '2031-02-01T12:30:00+01:00'],
    }),
  customer_name: line(200).optional(),
  customer_phone: z
    .string()
    .superRefine(refuse(singleLineProblem))
    .regex(/^\+?[0-9 ()-]{3,32}$/, { error: 'must be a phone number' })
    .optional(),
  special_instructions: multiLine(2000, 'Free-form instructions for the provider.').optional(),
});

/** What the engine knows about one action type. */
export interface ActionTypeDefinition {
  type: string;
  description: string;
  payload: z.ZodType;
  /** Whether a completed action of this type can be rolled back. */
  reversible: boolean;
  /**
   * Runs only after a person approved it (spec §6, payments), whatever the safety rules say:
   * it starts PENDING, and the worker rechecks the recorded approval before any handler runs.
   */
  humanApproval?: boolean;
}

/** The built-in action types of spec §3, in the spec's order. */
export const BUILT_IN_ACTION_TYPES: readonly ActionTypeDefinition[] = [
  { type: 'send_email', description: 'Send an email on the user\'s behalf.', payload: sendEmail, reversible: false },
  {
    type: 'create_calendar_event',
    description: 'Create an event in the user\'s calendar.',
    payload: calendarEvent,
    reversible: true,
  },
  { type: 'move_file', description: 'Move or rename a file inside the user\'s file root.', payload: moveFile, reversible: true },
  { type: 'create_document', description: 'Write a document into the user\'s folder.', payload: createDocument, reversible: true },
  { type: 'make_payment', description: 'Pay a recipient.', payload: makePayment, reversible: false, humanApproval: true },
  { type: 'make_purchase', description: 'Buy items from a merchant.', payload: makePurchase, reversible: false },
  {
    type: 'order',
    description: 'Place an order with a provider (e.g. a cafe): API, webhook, email or a human operator.',
    payload: order,
    reversible: true,
  },
];

/** The registered action types, looked up by name. */
export class ActionTypeRegistry {
  readonly #types = new Map<string, ActionTypeDefinition>();
  readonly #jsonSchemas = new Map<string, unknown>();

  constructor(definitions: readonly ActionTypeDefinition[]) {
    for (const d of definitions) {
      if (this.#types.has(d.type)) throw new Error(`action type ${d.type} is registered twice`);
      this.#types.set(d.type, d);
      this.#jsonSchemas.set(d.type, z.toJSONSchema(d.payload, { io: 'input', unrepresentable: 'any' }));
    }
  }

  list(): ActionTypeDefinition[] {
    return [...this.#types.values()];
  }

  get(type: string): ActionTypeDefinition {
    const d = this.#types.get(type);
    if (!d) {
      throw new UnknownTypeError(`unknown action type ${shortInput(type)}; known types: ${[...this.#types.keys()].join(', ')}`, ['type']);
    }
    return d;
  }

  jsonSchema(type: string): unknown {
    this.get(type);
    return this.#jsonSchemas.get(type);
  }

  /**
   * Validates a payload and returns it normalised (defaults applied). Throws
   * {@link PayloadErrors} with one {@link InvalidPayloadError} per problem, each naming its
   * field (e.g. `payload.to.0`) and what was expected.
   */
  validate(type: string, payload: unknown): Record<string, unknown> {
    const d = this.get(type);
    const result = d.payload.safeParse(payload, { reportInput: true });
    if (result.success) return result.data as Record<string, unknown>;
    const errors = result.error.issues.flatMap((issue) => {
      const path = issue.path.map(String);
      const at = (p: string[], message: string) => new InvalidPayloadError(`${['payload', ...p].join('.')}: ${message}`, ['payload', ...p]);
      // One error per unknown field, on that field.
      if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => at([...path, key], `unknown field ${shortInput(key)}`));
      return [at(path, describeIssue(issue))];
    });
    throw new PayloadErrors(errors);
  }
}

/** A JSON value's kind, as a caller would name it. */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number') return Number.isInteger(value) ? 'a whole number' : 'a number';
  return `a ${typeof value}`;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'an array',
  object: 'an object',
};

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      return `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${kindOf(issue.input)}`;
    case 'unrecognized_keys':
      return `unknown field(s) ${issue.keys.map((k) => shortInput(k)).join(', ')}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      if (issue.origin === 'string') return issue.minimum === 1 ? 'must not be empty' : `must be at least ${issue.minimum} characters`;
      if (issue.origin === 'array') return issue.message.startsWith('Too small') ? `needs at least ${issue.minimum} item(s)` : issue.message;
      return issue.message.startsWith('Too small') ? `must be ${issue.inclusive ? 'at least' : 'more than'} ${issue.minimum}` : issue.message;
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${issue.maximum} characters`;
      if (issue.origin === 'array') return `must have at most ${issue.maximum} items`;
      return `must be ${issue.inclusive ? 'at most' : 'less than'} ${issue.maximum}`;
    default:
      return issue.message;
  }
}
