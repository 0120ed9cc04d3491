import { createHash, createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';
import { PermanentHandlerError, type HandlerResult } from './types.js';
import { assertSuccess, callProvider, MAX_REFERENCE_CHARS, readReference } from './provider-http.js';

/**
 * Signed webhooks to providers (`order.webhook`, `payment.webhook`) per Standard Webhooks, and
 * the provider's later answer through `POST /callbacks/<handler>/<token>` (src/http/callbacks.ts).
 *
 * The callback token is an HMAC-SHA256 of the handler and the action id under the configured
 * webhook secret: 256 bits nobody without the secret can guess, and the same on every repeat
 * of the attempt (so a provider that deduplicated a repeated request by its `webhook-id` still
 * calls back on the URL the engine waits for). The engine stores only its SHA-256, in the
 * waiting execution's key.
 */

/** The handlers that wait for a provider's callback. */
export const CALLBACK_HANDLERS = ['order.webhook', 'payment.webhook'] as const;
export type CallbackHandler = (typeof CALLBACK_HANDLERS)[number];

/** `settings` of a signed-webhook handler. */
export const webhookSettings = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'must be an http or https URL' }).meta({ description: 'Where the signed webhook is POSTed.' }),
});

/** `secrets` of a signed-webhook handler: a Standard Webhooks secret, `whsec_` and base64 of at least 16 bytes. */
export const webhookSecrets = z.strictObject({
  secret: z
    .string()
    .max(1000)
    .regex(/^whsec_[A-Za-z0-9+/]{22,}={0,2}$/, { error: 'must be a Standard Webhooks secret: whsec_ followed by base64 of at least 16 bytes' }),
});

/** The callback's body: `{ reference, status: "confirmed" | "rejected", reason? }`. */
export const callbackBody = z.strictObject({
  reference: z.string().trim().min(1).max(MAX_REFERENCE_CHARS),
  status: z.enum(['confirmed', 'rejected']),
  reason: z.string().max(1000).optional(),
});
export type CallbackBody = z.output<typeof callbackBody>;

/** The token in the callback URL of `handler` for `actionId`, under the webhook secret. */
export function callbackToken(secret: string, handler: string, actionId: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return createHmac('sha256', key).update(`callback\n${handler}\n${actionId}`).digest('base64url');
}

/** What the waiting execution is keyed by: the handler and the SHA-256 of the token (never the token). */
export function callbackWaitKey(handler: string, token: string): string {
  return `${handler}:callback:${createHash('sha256').update(token).digest('hex')}`;
}

/** Tokens are 32 bytes base64url: anything else is not one of ours. */
export const CALLBACK_TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** The JSON body and Standard Webhooks headers of one signed webhook. */
export function signWebhook(secret: string, id: string, body: unknown, at: Date): { text: string; headers: Record<string, string> } {
  const text = JSON.stringify(body);
  const signature = new Webhook(secret).sign(id, at, text);
  return {
    text,
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': signature,
    },
  };
}

/** POSTs a signed webhook; throws as the provider-HTTP rules say (4xx permanent, 5xx/timeouts retryable). */
export async function postSignedWebhook(
  fetcher: typeof fetch,
  options: { url: string; secret: string; id: string; body: unknown; at: Date; who: string; attempt?: number },
): Promise<Response> {
  const { text, headers } = signWebhook(options.secret, options.id, options.body, options.at);
  const res = await callProvider(fetcher, options.url, { method: 'POST', headers: { ...headers, accept: 'application/json' }, body: text }, options.who);
  await assertSuccess(res, options.who, options.attempt);
  return res;
}

/** A webhook's outcome: waiting for the callback, or completed with the provider's reference (kept for rollback). */
export type WebhookResult =
  | Extract<HandlerResult, { status: 'waiting' }>
  | (Omit<Extract<HandlerResult, { status: 'completed' }>, 'rollbackData'> & { rollbackData: { reference: string } });

/**
 * Sends the `<kind>.requested` webhook and turns the answer into a result: a 2xx with
 * `{ reference }` completes; a 202 waits for the provider's signed callback.
 */
export async function requestThroughWebhook(options: {
  fetch: typeof fetch;
  handler: CallbackHandler;
  type: 'order.requested' | 'payment.requested';
  url: string;
  secret: string;
  baseUrl: string | undefined;
  idempotencyKey: string;
  actionId: string;
  payload: Record<string, unknown>;
  provider: string;
  who: string;
  waitingMessage: string;
  at: Date;
  /** The queue attempt: after an attempt with an unknown outcome a 4xx ends the action (see assertSuccess). */
  attempt?: number;
}): Promise<WebhookResult> {
  if (!options.baseUrl) throw new PermanentHandlerError('the engine does not know its public URL (BASE_URL), so the provider could not call back');
  const token = callbackToken(options.secret, options.handler, options.actionId);
  const callbackUrl = `${options.baseUrl}/callbacks/${options.handler}/${token}`;
  const res = await postSignedWebhook(options.fetch, {
    url: options.url,
    secret: options.secret,
    id: options.idempotencyKey,
    body: { type: options.type, actionId: options.actionId, payload: options.payload, callbackUrl },
    at: options.at,
    who: options.who,
    attempt: options.attempt,
  });
  if (res.status === 202) {
    await res.body?.cancel();
    // The provider's signed callback settles it; should none ever come, an operator can: the
    // task settles the same waiting execution (one settle path), so nothing waits for ever.
    return {
      status: 'waiting',
      key: callbackWaitKey(options.handler, token),
      message: options.waitingMessage,
      task: {
        instructions:
          `${options.who} accepted the request (HTTP 202) and said it would confirm later at the callback URL. ` +
          `If no confirmation arrives, ask ${options.provider} whether ${options.type === 'payment.requested' ? 'the payment' : 'the order'} for action ${options.actionId} went through, ` +
          'then complete this task with {"reference": "<their reference>"}; if it did not, leave it and fail or cancel the action as your process says.',
      },
    };
  }
  const { reference } = await readReference(res, options.who);
  return {
    status: 'completed',
    provider: options.provider,
    externalRef: reference,
    data: { reference, via: 'webhook' },
    rollbackData: { reference },
  };
}
