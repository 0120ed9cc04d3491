import type { IncomingMessage, ServerResponse } from 'node:http';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import type { App } from '../app.js';
import { describeIssue } from '../engine/action-types/issues.js';
import { providerOf } from '../engine/config-cache.js';
import { InvalidTransitionError, NotFoundError } from '../engine/errors.js';
import { loadConfigs, openHandlerSecrets } from '../engine/execution.js';
import { failWaiting, settleWaiting } from '../engine/settle.js';
import { paymentProvider } from '../handlers/payment-webhook.js';
import {
  CALLBACK_HANDLERS,
  CALLBACK_TOKEN,
  callbackBody,
  callbackWaitKey,
  webhookSecrets,
  webhookSettings,
  type CallbackHandler,
} from '../handlers/signed-webhook.js';
import { BodyTooLargeError, readBodyWithin, refuseTooLarge } from './request-body.js';

const PREFIX = '/callbacks/';

function send(res: ServerResponse, status: number, body: Record<string, unknown>, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** One header's value as the library wants it (a repeated header is refused as missing). */
function header(req: IncomingMessage, name: string): string {
  const value = req.headers[name];
  return typeof value === 'string' ? value : '';
}

/** Printable, one line: a provider's reason goes into status messages and the audit trail. */
function plain(text: string): string {
  return text.replace(/[\p{Cc}\p{Cf}]+/gu, ' ').replace(/\s+/g, ' ').trim();
}

/**
 * `POST /callbacks/:handler/:token` (spec §10): a provider confirms or rejects what it accepted
 * with a 202 (`order.webhook`, `payment.webhook`). The token names the waiting execution (the
 * engine keeps only its hash); the request must be signed per Standard Webhooks with the
 * secret of the handler's configuration for the action's space and provider (verified by the
 * library: constant-time comparison, timestamps within 5 minutes). The body is
 * `{ reference, status: "confirmed" | "rejected", reason? }`.
 *
 * Answers: 200 settled; 400 a malformed body (naming the field); 401 not signed with the right
 * secret; 404 no such callback; 405 not a POST; 409 already settled (a replay); 413 too large.
 * Only 200 changes anything, and only through the one settle path (src/engine/settle.ts).
 * Returns false for other paths.
 */
export async function handleCallbackRoute(app: App, req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
  if (!pathname.startsWith(PREFIX)) return false;
  const [handler, token, ...rest] = pathname.slice(PREFIX.length).split('/');
  if (req.method !== 'POST') {
    send(res, 405, { error: 'callbacks are POSTed' }, { allow: 'POST' });
    return true;
  }
  if (rest.length > 0 || !CALLBACK_HANDLERS.includes(handler as CallbackHandler) || !token || !CALLBACK_TOKEN.test(token)) {
    send(res, 404, { error: 'no such callback' });
    return true;
  }
  let raw: Buffer;
  try {
    raw = await readBodyWithin(req, app.config.maxRequestBytes);
  } catch (error) {
    if (!(error instanceof BodyTooLargeError)) throw error;
    refuseTooLarge(req, res, JSON.stringify({ error: error.message }), 'application/json; charset=utf-8');
    return true;
  }

  const key = callbackWaitKey(handler!, token);
  const execution = await app.db.execution.findFirst({ where: { waitKey: key }, orderBy: { startedAt: 'desc' }, include: { action: true } });
  if (!execution) {
    send(res, 404, { error: 'no such callback' });
    return true;
  }
  const { action } = execution;

  // The secret of the configuration the handler used: the action's space and provider.
  const config = (await loadConfigs(app.engine, action)).get(handler!) ?? null;
  let secret: string | null = null;
  let settings: { url: string } | null = null;
  try {
    const secrets = webhookSecrets.safeParse(openHandlerSecrets(app.engine, config) ?? {});
    const parsedSettings = webhookSettings.safeParse(config?.settings ?? {});
    if (secrets.success) secret = secrets.data.secret;
    if (parsedSettings.success) settings = parsedSettings.data;
  } catch (error) {
    app.logger.warn({ err: error, actionId: action.id, handler }, 'cannot open the secrets of a callback\'s handler configuration');
  }
  if (!secret) {
    send(res, 401, { error: `the signature cannot be checked: ${handler} has no usable secret configured for this provider` });
    return true;
  }
  const text = raw.toString('utf8');
  try {
    new Webhook(secret).verify(text, {
      'webhook-id': header(req, 'webhook-id'),
      'webhook-timestamp': header(req, 'webhook-timestamp'),
      'webhook-signature': header(req, 'webhook-signature'),
    }, { jsonParse: false });
  } catch (error) {
    if (!(error instanceof WebhookVerificationError)) throw error;
    send(res, 401, { error: `the Standard Webhooks signature does not verify (${error.message})` });
    return true;
  }

  if (execution.status !== 'WAITING' || action.status !== 'EXECUTING') {
    send(res, 409, { error: `already settled: the action is ${action.status}`, status: action.status });
    return true;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    send(res, 400, { error: 'the body is not JSON; expected {"reference": "…", "status": "confirmed" | "rejected", "reason"?: "…"}' });
    return true;
  }
  const parsed = callbackBody.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.code === 'unrecognized_keys' ? [...issue.path.map(String), issue.keys[0]!] : issue.path.map(String);
    const field = path.join('.') || 'body';
    const message = issue.code === 'unrecognized_keys' ? 'unknown field' : describeIssue(issue);
    send(res, 400, { error: `${field}: ${message}`, field });
    return true;
  }
  const body = parsed.data;
  const provider = handler === 'payment.webhook' ? paymentProvider(settings?.url ?? '') : providerOf(action.payload);
  const actor = { id: 'system', ip: req.socket.remoteAddress ?? null, userAgent: header(req, 'user-agent') || null };
  try {
    if (body.status === 'confirmed') {
      await settleWaiting(app.engine, key, {
        result: {
          provider,
          externalRef: body.reference,
          data: { reference: body.reference, via: 'webhook', confirmedBy: 'callback' },
          rollbackData: { reference: body.reference },
        },
        actor,
      });
    } else {
      const reason = body.reason ? plain(body.reason) : '';
      await failWaiting(app.engine, key, `${provider} rejected it${reason ? `: ${reason}` : ' (no reason given)'} (reference ${plain(body.reference)})`);
    }
  } catch (error) {
    // Settled meanwhile by a concurrent callback: nothing changed here.
    if (error instanceof NotFoundError || error instanceof InvalidTransitionError) {
      send(res, 409, { error: 'already settled' });
      return true;
    }
    throw error;
  }
  send(res, 200, { ok: true, actionId: action.id, outcome: body.status === 'confirmed' ? 'completed' : 'failed' });
  return true;
}
