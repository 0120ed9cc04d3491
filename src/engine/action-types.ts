import { z } from 'zod';
import { InvalidPayloadError, UnknownTypeError } from './errors.js';

const email = z.email({ error: 'must be an email address' });
const text = (max: number) => z.string().trim().min(1, { error: 'must not be empty' }).max(max);
const isoDateTime = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with a time zone' });
/** A path inside the user's file root: relative, no `..` segment, no NUL. */
const userPath = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(1024)
  .refine((p) => !p.startsWith('/') && !p.startsWith('\\'), { error: 'must be relative to your file root' })
  .refine((p) => !p.split(/[\\/]/).includes('..'), { error: 'must not contain ".."' })
  .refine((p) => !p.includes('\0'), { error: 'must not contain NUL' });
const money = z.number().positive({ error: 'must be more than 0' }).max(1_000_000_000);
const currency = z.string().regex(/^[A-Z]{3}$/, { error: 'must be an ISO 4217 code such as EUR' });

const sendEmail = z.strictObject({
  to: z.array(email).min(1, { error: 'needs at least one recipient' }).max(100),
  cc: z.array(email).max(100).optional(),
  bcc: z.array(email).max(100).optional(),
  subject: text(998),
  body: z.string().min(1, { error: 'must not be empty' }).max(1_000_000),
  html: z.string().max(2_000_000).optional(),
});

const calendarEvent = z
  .strictObject({
    title: text(500),
    start_time: isoDateTime,
    end_time: isoDateTime,
    description: z.string().max(10_000).optional(),
    attendees: z.array(email).max(500).optional(),
    location: z.string().max(500).optional(),
    timezone: z.string().max(64).optional(),
  })
  .refine((e) => Date.parse(e.end_time) > Date.parse(e.start_time), {
    error: 'must be after start_time',
    path: ['end_time'],
  });

const moveFile = z
  .strictObject({ from: userPath, to: userPath })
  .refine((m) => m.from !== m.to, { error: 'must differ from from', path: ['to'] });

const createDocument = z.strictObject({
  title: text(500),
  content: z.string().max(5_000_000),
  format: z.enum(['markdown', 'html', 'text']).default('markdown'),
  folder: userPath.optional(),
});

const makePayment = z.strictObject({
  amount: money,
  currency,
  recipient: text(500),
  memo: z.string().max(1000).optional(),
});

const makePurchase = z.strictObject({
  items: z
    .array(z.strictObject({ name: text(500), price: money.optional(), quantity: z.int().positive().max(10_000).default(1) }))
    .min(1, { error: 'needs at least one item' })
    .max(500),
  merchant: text(500),
  total: money,
  currency: currency.default('USD'),
});

const order = z.strictObject({
  provider: text(200),
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
      throw new UnknownTypeError(`unknown action type "${type}"; known types: ${[...this.#types.keys()].join(', ')}`, ['type']);
    }
    return d;
  }

  jsonSchema(type: string): unknown {
    this.get(type);
    return this.#jsonSchemas.get(type);
  }

  /**
   * Validates a payload and returns it normalised (defaults applied). Throws
   * {@link InvalidPayloadError} naming the first offending field, e.g. `payload.to.0`.
   */
  validate(type: string, payload: unknown): Record<string, unknown> {
    const d = this.get(type);
    const result = d.payload.safeParse(payload);
    if (result.success) return result.data as Record<string, unknown>;
    const issue = result.error.issues[0]!;
    const path = issue.path.map(String);
    const where = path.length ? `payload.${path.join('.')}` : 'payload';
    const more = result.error.issues.length > 1 ? ` (and ${result.error.issues.length - 1} more)` : '';
    throw new InvalidPayloadError(`${where}: ${describeIssue(issue)}${more}`, ['payload', ...path]);
  }
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.input === undefined) return 'is required';
  if (issue.code === 'unrecognized_keys') return `unknown field(s) ${issue.keys.join(', ')}`;
  return issue.message;
}
