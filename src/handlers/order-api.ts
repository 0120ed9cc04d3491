import { z } from 'zod';
import { makePurchase } from '../engine/action-types/make-purchase.js';
import { order } from '../engine/action-types/order.js';
import { defineHandler } from './define-handler.js';
import { assertSuccess, callProvider, MAX_REFERENCE_CHARS, orderProvider, orderRequestBody, readReference } from './provider-http.js';

/** `baseUrl` without a trailing slash, so `${baseUrl}/orders` never has `//`. */
function ordersUrl(baseUrl: string, ...rest: string[]): string {
  return [baseUrl.replace(/\/+$/, ''), 'orders', ...rest.map(encodeURIComponent)].join('/');
}

/**
 * `order` and `make_purchase` through a provider's HTTP ordering API (configured per provider:
 * the order's `provider`, the purchase's `merchant`):
 * `POST {baseUrl}/orders` with `Authorization: Bearer {apiKey}`, `Idempotency-Key: action:<id>`
 * and the JSON of {@link orderRequestBody}; a 2xx `{ reference, eta? }` completes it.
 *
 * Repeat class `provider`: a retry sends the same Idempotency-Key and the provider answers with
 * the order it already has. 5xx, timeouts and connection errors are retried (with backoff, by
 * the queue); a 4xx is the provider refusing, so the chain tries its next handler (the webhook).
 * Rollback: `POST {baseUrl}/orders/{reference}/cancel`.
 */
export const orderApiHandler = defineHandler({
  name: 'order.api',
  kind: 'api',
  types: [order, makePurchase],
  repeat: 'provider',
  settings: z.strictObject({
    baseUrl: z.url({ protocol: /^https?$/, error: 'must be an http or https URL' }).meta({ description: 'The ordering API: orders go to {baseUrl}/orders.' }),
  }),
  secrets: z.strictObject({ apiKey: z.string().min(1).max(4096) }),
  rollbackData: z.object({ reference: z.string().min(1).max(MAX_REFERENCE_CHARS) }),

  async execute(ctx) {
    const { action, settings, secrets, services } = ctx;
    const provider = orderProvider(action);
    await ctx.progress(action.type === 'make_purchase' ? `Placing the purchase with ${provider}…` : `Placing order with ${provider}…`);
    const who = `${provider}'s ordering API`;
    const res = await callProvider(
      services.fetch,
      ordersUrl(settings.baseUrl),
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          authorization: `Bearer ${secrets.apiKey}`,
          'idempotency-key': ctx.idempotencyKey,
        },
        body: JSON.stringify(orderRequestBody(action)),
      },
      who,
    );
    await assertSuccess(res, who, ctx.attempt);
    const { reference, body } = await readReference(res, who);
    const eta = typeof body.eta === 'string' ? body.eta.slice(0, 100) : undefined;
    return {
      status: 'completed',
      provider,
      externalRef: reference,
      data: { reference, ...(eta !== undefined ? { eta } : {}), via: 'api' },
      rollbackData: { reference },
    };
  },

  async rollback(ctx) {
    const { action, settings, secrets, services, rollbackData } = ctx;
    const who = `${orderProvider(action)}'s ordering API`;
    const res = await callProvider(
      services.fetch,
      ordersUrl(settings.baseUrl, rollbackData.reference, 'cancel'),
      {
        method: 'POST',
        headers: { accept: 'application/json', authorization: `Bearer ${secrets.apiKey}`, 'idempotency-key': `action:${action.id}:cancel` },
      },
      who,
    );
    await assertSuccess(res, `${who} (cancelling ${rollbackData.reference})`);
  },
});
