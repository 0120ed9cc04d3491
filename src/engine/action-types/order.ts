import { z } from 'zod';
import { parseIsoDateTime } from '../date-time.js';
import { SINGLE_LINE_RULE, singleLineProblem } from '../input-text.js';
import { defineActionType } from './define.js';
import { amountText, formatDateTime, instructionLines, itemLine } from './describe.js';
import { itemsSum, line, multiLine, refuse, SINGLE_LINE_PATTERN, text } from './fields.js';

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

/** A pickup time in words when it is a date-time (the schema's rule), else as written. */
function pickupText(value: string | undefined): string | undefined {
  if (value === undefined || !STARTS_WITH_DATE.test(value)) return value;
  const parsed = parseIsoDateTime(value);
  return 'date' in parsed ? formatDateTime(parsed.date) : value;
}

/**
 * `order`: an order with a provider (a cafe, a restaurant): through its API, a signed webhook,
 * an email to it or a human operator, whichever is configured first. Rollback cancels it where
 * the handler supports that.
 */
export const order = defineActionType({
  type: 'order',
  description: 'Place an order with a provider (e.g. a cafe): API, webhook, email or a human operator.',
  payload: z
    .strictObject({
      provider: text(200, 'Who takes the order (a configured provider name).').meta({ examples: ['downtown-cafe'] }),
      items: z
        .array(
          z.strictObject({
            name: text(500, 'What to order.'),
            price: z.number().nonnegative().max(1_000_000).meta({ description: 'Unit price, 0 or more.' }),
            quantity: z.int().positive().max(1000).default(1).meta({ description: 'How many; default 1.' }),
            modifications: z.array(line(200)).max(50).optional().meta({ description: 'Changes to the item ("oat milk"), at most 50.' }),
          }),
        )
        .min(1, { error: 'needs at least one item' })
        .max(200)
        .meta({ description: 'What to order (1 to 200 items).' }),
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
      customer_name: line(200, 'Whose name the order is under.').optional(),
      customer_phone: z
        .string()
        .superRefine(refuse(singleLineProblem))
        .regex(/^\+?[0-9 ()-]{3,32}$/, { error: 'must be a phone number' })
        .optional()
        .meta({ description: 'A phone number for the provider: digits, spaces, ( ) and -, optionally a leading +.', examples: ['+49 30 1234567'] }),
      special_instructions: multiLine(2000, 'Free-form instructions for the provider.').optional(),
    })
    .meta({
      examples: [
        {
          provider: 'downtown-cafe',
          items: [{ name: 'Latte', price: 3.5, quantity: 2, modifications: ['oat milk'] }],
          pickup_time: '12:30',
          customer_name: 'Ada',
        },
      ],
    }),
  reversible: true,
  // A cancellation may not reach the kitchen in time: an approved order waits out the grace period (spec §5).
  gracePeriod: true,

  describe(p) {
    const pickup = pickupText(p.pickup_time);
    let headline = `Order from ${p.provider}: ${p.items.length <= 3 ? p.items.map((item) => itemLine(item, true)).join(', ') : `${p.items.length} items`}`;
    if (pickup !== undefined) headline += `, pickup ${pickup}`;
    const total = itemsSum(p.items);
    const described = p.items.map(
      (item) => `${item.quantity} × ${item.name}${item.modifications?.length ? ` (${item.modifications.join(', ')})` : ''} — ${amountText(item.price)}`,
    );
    const customer = [p.customer_name, p.customer_phone ? `(${p.customer_phone})` : ''].filter(Boolean).join(' ');
    return {
      headline,
      details: [
        { label: 'Provider', value: p.provider },
        { label: 'Items', value: p.items.map((item) => itemLine(item)) },
        { label: 'Items total (price × quantity)', value: total },
        { label: 'Pickup time', value: pickup },
        { label: 'Customer name', value: p.customer_name },
        { label: 'Customer phone', value: p.customer_phone },
        { label: 'Special instructions', value: p.special_instructions, format: 'text' },
      ],
      instructions: instructionLines(
        `Place this order with ${p.provider}: ${described.join('; ')}; total ${total}.`,
        ['Customer', customer],
        ['Pickup', p.pickup_time],
        ['Special instructions', p.special_instructions],
      ),
    };
  },
});
