import { z } from 'zod';
import { defineActionType } from './define.js';
import { amountText, itemLine } from './describe.js';
import { currency, exactDecimal, formatDecimal, money, purchaseTotalMatches, text } from './fields.js';

/** `make_purchase`: buy items from a merchant; needs KYC (and approval) by default, and the one-time code on link approval. */
export const makePurchase = defineActionType({
  type: 'make_purchase',
  description: 'Buy items from a merchant.',
  payload: z
    .strictObject({
      items: z
        .array(
          z.strictObject({
            name: text(500, 'What to buy.'),
            price: money.optional().meta({ description: 'Unit price in the purchase currency.' }),
            quantity: z.int().positive().max(10_000).default(1).meta({ description: 'How many; default 1.' }),
          }),
        )
        .min(1, { error: 'needs at least one item' })
        .max(500)
        .meta({ description: 'What to buy (1 to 500 items).' }),
      merchant: text(500, 'Where to buy it.'),
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
    .meta({
      description: 'When every item has a price, total must equal the sum of price × quantity, to the cent (within half a cent of the exact sum).',
      examples: [{ items: [{ name: 'Desk lamp', price: 20, quantity: 2 }], merchant: 'Lamp Shop', total: 40, currency: 'EUR' }],
    }),
  reversible: false,
  approvalNeedsCode: true,

  describe(p) {
    const total = `${p.total} ${p.currency}`;
    const items = p.items.map((item) => itemLine(item));
    return {
      headline: `Buy ${p.items.length <= 3 ? p.items.map((item) => itemLine(item, true)).join(', ') : `${p.items.length} items`} from ${p.merchant} for ${total}`,
      details: [
        { label: 'Merchant', value: p.merchant },
        { label: 'Items', value: items },
        { label: 'Total', value: total },
      ],
      instructions: `Buy from ${p.merchant}: ${p.items
        .map((item) => `${item.quantity} × ${item.name}${item.price === undefined ? '' : ` — ${amountText(item.price)}`}`)
        .join('; ')}; total ${amountText(p.total)} ${p.currency}.`,
    };
  },
});
