import { z } from 'zod';
import { amountText } from '../engine/action-types/describe.js';
import { makePurchase } from '../engine/action-types/make-purchase.js';
import { order } from '../engine/action-types/order.js';
import { escapeHtml, safeSubject } from '../mail/approval-email.js';
import { defineHandler, type TypedAction } from './define-handler.js';
import { orderProvider } from './provider-http.js';

type Served = TypedAction<typeof order | typeof makePurchase>;

/** The order mail's sections: a label and its lines (items) or one value; absent values are left out. */
function orderSections(action: Served): Array<{ label: string; lines: string[] }> {
  const sections: Array<{ label: string; value: string | undefined | null } | { label: string; lines: string[] }> = [];
  if (action.type === 'order') {
    const p = action.payload;
    sections.push({
      label: 'Items',
      lines: p.items.map(
        (item) =>
          `${item.quantity} × ${item.name}` +
          (item.modifications?.length ? ` — ${item.modifications.join(', ')}` : '') +
          ` (${amountText(item.price)} each)`,
      ),
    });
    sections.push({ label: 'Pickup time', value: p.pickup_time });
    sections.push({ label: 'Customer name', value: p.customer_name });
    sections.push({ label: 'Customer phone', value: p.customer_phone });
    sections.push({ label: 'Special instructions', value: p.special_instructions });
  } else {
    const p = action.payload;
    sections.push({
      label: 'Items',
      lines: p.items.map((item) => `${item.quantity} × ${item.name}${item.price === undefined ? '' : ` (${amountText(item.price)} ${p.currency} each)`}`),
    });
    sections.push({ label: 'Total', value: `${amountText(p.total)} ${p.currency}` });
  }
  sections.push({ label: 'Reference (action id)', value: action.id });
  return sections.flatMap((s) => ('lines' in s ? [s] : s.value ? [{ label: s.label, lines: s.value.split(/\r?\n/) }] : []));
}

/**
 * `order` and `make_purchase` by email to the provider (settings `{ email }`, per provider):
 * a structured order mail (items with quantities and modifications, pickup time, customer name
 * and phone, special instructions, the action id) through the engine's mailer (`SMTP_URL`,
 * else the outbox folder). Sending it completes the action: the external reference is the
 * mail's Message-ID and the receipt says it went to the provider by email.
 *
 * Repeat class `none`: a mail cannot be checked for or taken back, so after an interrupted
 * attempt the engine asks an operator instead of sending it again. No rollback (an email
 * cannot be unsent; cancelling is the provider's and operator's business).
 */
export const orderEmailHandler = defineHandler({
  name: 'order.email',
  kind: 'email',
  types: [order, makePurchase],
  repeat: 'none',
  settings: z.strictObject({
    email: z.email({ error: 'must be an email address' }).max(320).meta({ description: 'Where the provider takes orders by email.' }),
  }),

  async execute(ctx) {
    const { action, settings, services } = ctx;
    const provider = orderProvider(action);
    const what = action.type === 'order' ? 'order' : 'purchase order';
    await ctx.progress(`Emailing the ${what} to ${provider}…`);
    const sections = orderSections(action);
    const intro = `New ${what} for ${provider}, sent by the Action Engine on behalf of a customer.`;
    const text = [
      intro,
      '',
      ...sections.flatMap((s) => (s.lines.length === 1 && s.label !== 'Items' ? [`${s.label}: ${s.lines[0]}`] : [`${s.label}:`, ...s.lines.map((l) => `  - ${l}`)])),
      '',
      'Please quote the reference when you answer.',
      '',
    ].join('\n');
    const html = [
      '<!doctype html><html><body>',
      `<p>${escapeHtml(intro)}</p>`,
      '<table>',
      ...sections.map(
        (s) =>
          `<tr><th align="left" valign="top">${escapeHtml(s.label)}</th><td>${
            s.label === 'Items' ? `<ul>${s.lines.map((l) => `<li>${escapeHtml(l)}</li>`).join('')}</ul>` : s.lines.map(escapeHtml).join('<br>')
          }</td></tr>`,
      ),
      '</table>',
      '<p>Please quote the reference when you answer.</p>',
      '</body></html>',
    ].join('\n');
    const sent = await services.mailer.send({
      to: settings.email,
      subject: safeSubject(`${action.type === 'order' ? 'Order' : 'Purchase order'} ${action.id.slice(0, 8)} for ${provider}`),
      text,
      html,
    });
    return {
      status: 'completed',
      provider,
      externalRef: sent.messageId,
      data: { via: 'email', sentTo: settings.email, messageId: sent.messageId, note: `The ${what} was sent to ${provider} by email (${settings.email}).` },
      rollbackData: null,
    };
  },
});
