import { z } from 'zod';
import { parseIsoDateTime } from './date-time.js';
import { InvalidPayloadError, PayloadErrors, UnknownTypeError } from './errors.js';
import { shortInput } from './input-text.js';

const email = z.email({ error: 'must be an email address' }).meta({ examples: ['ada@example.com'] });
const text = (max: number) => z.string().trim().min(1, { error: 'must not be empty' }).max(max);

/** An ISO 8601 date-time with a time zone that is a real date (no 2030-02-31, no year 0000). */
const isoDateTime = z
  .string()
  .superRefine((value, ctx) => {
    const parsed = parseIsoDateTime(value);
    if ('error' in parsed) ctx.addIssue({ code: 'custom', message: parsed.error, input: value });
  })
  .meta({ format: 'date-time', examples: ['2026-11-21T10:00:00Z', '2026-11-21T11:00:00+01:00'] });

/**
 * A path inside the user's file root, as JSON Schema states it (ECMA-262): not absolute, no
 * `..` segment, no NUL. The refinements below say the same with a message per rule.
 */
export const USER_PATH_PATTERN = '^(?![/\\\\])(?!(?:.*[/\\\\])?\\.\\.(?:[/\\\\]|$))[^\\u0000]+$';
const userPath = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(1024)
  .refine((p) => !p.startsWith('/') && !p.startsWith('\\'), { error: 'must be relative to your file root' })
  .refine((p) => !p.split(/[\\/]/).includes('..'), { error: 'must not contain ".."' })
  .refine((p) => !p.includes('\0'), { error: 'must not contain NUL' })
  .meta({
    pattern: USER_PATH_PATTERN,
    description: 'A path relative to your file root (no leading /, no ".." segment, no NUL; symbolic links out of it are refused).',
    examples: ['reports/2026/q3.pdf'],
  });
const money = z.number().positive({ error: 'must be more than 0' }).max(1_000_000_000);
const currency = z
  .string()
  .regex(/^[A-Z]{3}$/, { error: 'must be an ISO 4217 code such as EUR' })
  .meta({ description: 'ISO 4217 currency code, upper case.', examples: ['EUR', 'USD'] });

const sendEmail = z.strictObject({
  to: z.array(email).min(1, { error: 'needs at least one recipient' }).max(100).meta({ description: 'Recipients (1 to 100 email addresses).' }),
  cc: z.array(email).max(100).optional(),
  bcc: z.array(email).max(100).optional(),
  subject: text(998).meta({ description: 'Subject line (not empty, at most 998 characters).', examples: ['Quarterly report'] }),
  body: z.string().min(1, { error: 'must not be empty' }).max(1_000_000).meta({ description: 'Plain-text body.' }),
  html: z.string().max(2_000_000).optional().meta({ description: 'Optional HTML body, sent alongside the text.' }),
});

const calendarEvent = z
  .strictObject({
    title: text(500).meta({ examples: ['Team lunch'] }),
    start_time: isoDateTime.meta({ description: 'Start: an ISO 8601 date-time with a time zone.' }),
    end_time: isoDateTime.meta({ description: 'End: an ISO 8601 date-time with a time zone, after start_time.' }),
    description: z.string().max(10_000).optional(),
    attendees: z.array(email).max(500).optional(),
    location: z.string().max(500).optional(),
    timezone: z.string().max(64).optional().meta({ description: 'IANA time zone name for display.', examples: ['Europe/Berlin'] }),
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
    from: userPath.meta({ description: 'The file to move, relative to your file root (no leading /, no "..", no NUL).' }),
    to: userPath.meta({ description: 'Where it goes, relative to your file root (no leading /, no "..", no NUL); must differ from from.' }),
  })
  .refine((m) => m.from !== m.to, { error: 'must differ from from', path: ['to'] });

const createDocument = z.strictObject({
  title: text(500).meta({ description: 'Title; also names the file.', examples: ['Meeting notes'] }),
  content: z.string().max(5_000_000).meta({ description: 'The document text (at most 5,000,000 characters).' }),
  format: z.enum(['markdown', 'html', 'text']).default('markdown').meta({ description: 'File format; default markdown.' }),
  folder: userPath.optional().meta({ description: 'Folder relative to your file root (no leading /, no "..", no NUL); created if missing.', examples: ['notes/2026'] }),
});

const makePayment = z.strictObject({
  amount: money.meta({ description: 'Amount in the currency\'s main unit, more than 0.', examples: [12.5] }),
  currency,
  recipient: text(500),
  memo: z.string().max(1000).optional(),
});

/** Cents, rounded: prices are compared to the cent. */
const cents = (amount: number) => Math.round(amount * 100);

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
    total: money.meta({ description: 'Total in the purchase currency; when every item has a price, it must equal Σ price × quantity, to the cent.' }),
    currency,
  })
  .superRefine((p, ctx) => {
    if (!p.items.every((item) => item.price !== undefined)) return;
    const sum = p.items.reduce((acc, item) => acc + cents(item.price!) * item.quantity, 0);
    if (sum !== cents(p.total)) {
      ctx.addIssue({
        code: 'custom',
        path: ['total'],
        input: p.total,
        message: `is ${(cents(p.total) / 100).toFixed(2)} but the items add up to ${(sum / 100).toFixed(2)} (Σ price × quantity)`,
      });
    }
  })
  .meta({ description: 'When every item has a price, total must equal the sum of price × quantity, to the cent.' });

const order = z.strictObject({
  provider: text(200).meta({ description: 'Who takes the order (a configured provider name).', examples: ['downtown-cafe'] }),
  items: z
    .array(
      z.strictObject({
        name: text(500),
        price: z.number().nonnegative().max(1_000_000),
        quantity: z.int().positive().max(1000).default(1),
        modifications: z.array(z.string().max(200)).max(50).optional(),
      }),
    )
    .min(1, { error: 'needs at least one item' })
    .max(200),
  pickup_time: z.string().max(100).optional(),
  customer_name: z.string().max(200).optional(),
  customer_phone: z.string().regex(/^\+?[0-9 ()-]{3,32}$/, { error: 'must be a phone number' }).optional(),
  special_instructions: z.string().max(2000).optional(),
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
