import { z } from 'zod';
import { makePurchase } from '../engine/action-types/make-purchase.js';
import { order } from '../engine/action-types/order.js';
import { defineHandler } from './define-handler.js';
import { MAX_REFERENCE_CHARS, orderProvider } from './provider-http.js';
import { postSignedWebhook, requestThroughWebhook, webhookSecrets, webhookSettings } from './signed-webhook.js';

/**
 * `order` and `make_purchase` through a provider's webhook, signed per Standard Webhooks
 * (`webhook-id` = the action's idempotency key, `webhook-timestamp`, `webhook-signature`):
 * `POST {url}` with `{ type: "order.requested", actionId, payload, callbackUrl }` (`payload`: the
 * action's payload as the type's schema parsed it, defaults applied). A 2xx
 * `{ reference }` completes it; a 202 means the provider confirms later through
 * `POST {callbackUrl}` (src/http/callbacks.ts), signed with the same secret, and the action
 * waits until then. Repeat class `provider`: a repeat has the same `webhook-id` and the same
 * callback URL. A 4xx lets the chain go on (email, then an operator); 5xx and timeouts are
 * retried. Rollback: the same URL with `type: "order.cancelled"`.
 */
export const orderWebhookHandler = defineHandler({
  name: 'order.webhook',
  kind: 'webhook',
  types: [order, makePurchase],
  repeat: 'provider',
  settings: webhookSettings,
  secrets: webhookSecrets,
  rollbackData: z.object({ reference: z.string().min(1).max(MAX_REFERENCE_CHARS) }),

  async execute(ctx) {
    const { action, settings, secrets, services } = ctx;
    const provider = orderProvider(action);
    await ctx.progress(`Sending the order to ${provider} by webhook…`);
    return requestThroughWebhook({
      fetch: services.fetch,
      handler: 'order.webhook',
      type: 'order.requested',
      url: settings.url,
      secret: secrets.secret,
      baseUrl: services.baseUrl,
      idempotencyKey: ctx.idempotencyKey,
      actionId: action.id,
      payload: action.payload,
      provider,
      who: `${provider}'s webhook`,
      waitingMessage: `Waiting for ${provider} to confirm the order…`,
      at: services.clock(),
      attempt: ctx.attempt,
    });
  },

  async rollback(ctx) {
    const { action, settings, secrets, services, rollbackData } = ctx;
    const provider = orderProvider(action);
    await postSignedWebhook(services.fetch, {
      url: settings.url,
      secret: secrets.secret,
      id: `action:${action.id}:cancel`,
      body: { type: 'order.cancelled', actionId: action.id, reference: rollbackData.reference },
      at: services.clock(),
      who: `${provider}'s webhook (cancelling ${rollbackData.reference})`,
    });
  },
});
