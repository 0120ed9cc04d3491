import { makePayment } from '../engine/action-types/make-payment.js';
import { defineHandler } from './define-handler.js';
import { requestThroughWebhook, webhookSecrets, webhookSettings } from './signed-webhook.js';

/** Who is named on a payment's receipt: the host of the payment webhook (payments have no provider field). */
export function paymentProvider(url: string): string {
  try {
    return new URL(url).host || 'payment-webhook';
  } catch {
    return 'payment-webhook';
  }
}

/**
 * `make_payment` through a payment provider's webhook, configured for provider `*` (a payment
 * has no provider field), signed per Standard Webhooks like `order.webhook`:
 * `POST {url}` with `{ type: "payment.requested", actionId, payload: { amount, currency,
 * recipient, memo }, callbackUrl }`; a 2xx `{ reference }` completes it, a 202 waits for the
 * provider's signed callback. The provider's reference is the receipt's external reference.
 *
 * It runs only for an approved payment (the engine checks a person's approval right before
 * dispatch, spec §6), and it is the only handler of `make_payment`: without its configuration
 * a payment fails, it is never handed to an operator. Repeat class `provider` (`webhook-id` =
 * the idempotency key). No rollback: payments are not reversible.
 */
export const paymentWebhookHandler = defineHandler({
  name: 'payment.webhook',
  kind: 'webhook',
  types: [makePayment],
  repeat: 'provider',
  settings: webhookSettings,
  secrets: webhookSecrets,

  async execute(ctx) {
    const { action, payload, settings, secrets, services } = ctx;
    const provider = paymentProvider(settings.url);
    await ctx.progress(`Asking the payment provider (${provider}) to pay ${payload.amount} ${payload.currency} to ${payload.recipient}…`);
    return requestThroughWebhook({
      fetch: services.fetch,
      handler: 'payment.webhook',
      type: 'payment.requested',
      url: settings.url,
      secret: secrets.secret,
      baseUrl: services.baseUrl,
      idempotencyKey: ctx.idempotencyKey,
      actionId: action.id,
      payload: action.payload,
      provider,
      who: `the payment provider (${provider})`,
      waitingMessage: `Waiting for the payment provider to confirm the payment of ${payload.amount} ${payload.currency}…`,
      at: services.clock(),
      attempt: ctx.attempt,
    });
  },
});
