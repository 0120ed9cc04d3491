import { z } from 'zod';
import { defineActionType } from './define.js';
import { amountText, instructionLines } from './describe.js';
import { currency, money, multiLine, text } from './fields.js';

/**
 * `make_payment`: pay a recipient. Never without a person (spec §6): it waits for a human
 * approval whatever the rules say, and approving it by link needs the one-time code.
 */
export const makePayment = defineActionType({
  type: 'make_payment',
  description: 'Pay a recipient.',
  payload: z
    .strictObject({
      amount: money.meta({ description: 'Amount in the currency\'s main unit, more than 0.', examples: [12.5] }),
      currency,
      recipient: text(500, 'Who is paid.'),
      memo: multiLine(1000, 'A note for the recipient.').optional(),
    })
    .meta({ examples: [{ amount: 12.5, currency: 'EUR', recipient: 'Downtown Cafe', memo: 'Team lunch' }] }),
  reversible: false,
  humanApproval: true,
  approvalNeedsCode: true,

  describe(p) {
    const amount = `${p.amount} ${p.currency}`;
    return {
      headline: `Pay ${amount} to ${p.recipient}`,
      details: [
        { label: 'Amount', value: amount },
        { label: 'Recipient', value: p.recipient },
        { label: 'Memo', value: p.memo, format: 'text' },
      ],
      instructions: instructionLines(`Pay ${amountText(p.amount)} ${p.currency} to ${p.recipient}.`, ['Memo', p.memo]),
    };
  },
});
