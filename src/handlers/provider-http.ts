import { OutboundRefusedError, OutboundTimeoutError } from '../engine/outbound.js';
import { FinalHandlerError, PermanentHandlerError, RetryableHandlerError, type HandlerAction } from './types.js';

/**
 * What the order-style handlers (`order.api`, `order.webhook`, `order.email`, `payment.webhook`)
 * share: who the provider is, the order's request body, and how a provider's HTTP answer is
 * judged (2xx done, 4xx refused for good, 5xx and no answer worth retrying).
 */

/** The longest provider reference kept (it becomes the receipt's external reference). */
export const MAX_REFERENCE_CHARS = 200;

/** Who carries the action out: an order's `provider`, a purchase's `merchant`. */
export function orderProvider(action: Pick<HandlerAction, 'payload'>): string {
  const { provider, merchant } = action.payload as { provider?: unknown; merchant?: unknown };
  if (typeof provider === 'string') return provider;
  if (typeof merchant === 'string') return merchant;
  return '*';
}

/**
 * The JSON an order-style provider receives. `order`: `{ actionId, items, pickup_time,
 * customer_name, customer_phone, special_instructions }` (absent fields are null);
 * `make_purchase`: `{ actionId, items, merchant, total, currency }`.
 */
export function orderRequestBody(action: HandlerAction): Record<string, unknown> {
  const p = action.payload as Record<string, unknown>;
  if (action.type === 'make_purchase') {
    return { actionId: action.id, items: p.items, merchant: p.merchant, total: p.total, currency: p.currency };
  }
  return {
    actionId: action.id,
    items: p.items,
    pickup_time: p.pickup_time ?? null,
    customer_name: p.customer_name ?? null,
    customer_phone: p.customer_phone ?? null,
    special_instructions: p.special_instructions ?? null,
  };
}

/**
 * A request to a provider through the handler's outbound fetch; a connection error or a
 * timeout is worth retrying, a URL the deployment refuses is not.
 */
export async function callProvider(fetcher: typeof fetch, url: string, init: RequestInit, who: string): Promise<Response> {
  try {
    return await fetcher(url, init);
  } catch (error) {
    if (error instanceof OutboundRefusedError) throw new PermanentHandlerError(`${who}: ${error.message}`);
    if (error instanceof OutboundTimeoutError) throw new RetryableHandlerError(`${who} did not answer in time (${error.message})`);
    throw new RetryableHandlerError(`${who} could not be reached (${describeNetworkError(error)})`);
  }
}

/** 4xx answers that mean "not now" (timeout, conflict with a request in progress, too early, too many): retried, never a fall-through. */
const RETRYABLE_4XX = new Set([408, 409, 425, 429]);

/**
 * Throws for an answer that is not 2xx. A 4xx is permanent and the chain goes on to its next
 * handler — but only on a first attempt: after an attempt whose outcome is unknown (a timeout, a
 * 5xx) the provider may already have taken it, so a 4xx then ends the action instead of placing
 * it again by another route. 408, 409, 425, 429 and anything else are retried.
 */
export async function assertSuccess(res: Response, who: string, attempt = 1): Promise<void> {
  if (res.ok) return;
  const detail = await answerText(res);
  const text = `${who} answered ${res.status}${detail ? `: ${detail}` : ''}`;
  if (res.status >= 400 && res.status < 500 && !RETRYABLE_4XX.has(res.status)) {
    if (attempt > 1) throw new FinalHandlerError(`${text}; an earlier attempt may have reached the provider, so no other route is tried: check with them`);
    throw new PermanentHandlerError(text);
  }
  throw new RetryableHandlerError(text);
}

/** The provider's reference from a 2xx JSON answer `{ reference, … }`; else a final error naming what is missing (the action fails, no other route). */
export async function readReference(res: Response, who: string): Promise<{ reference: string; body: Record<string, unknown> }> {
  // A 2xx means the provider took it: without a usable reference, trying another route could place it twice.
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new FinalHandlerError(`${who} answered ${res.status} without a JSON body; expected {"reference": "…"}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new FinalHandlerError(`${who} answered ${res.status} with JSON that is not an object; expected {"reference": "…"}`);
  }
  const reference = (body as Record<string, unknown>).reference;
  if (typeof reference !== 'string' || reference.trim() === '') {
    throw new FinalHandlerError(`${who} answered ${res.status} without a reference (the field "reference" must be a non-empty string)`);
  }
  if (reference.length > MAX_REFERENCE_CHARS) {
    throw new FinalHandlerError(`${who} answered ${res.status} with a reference longer than ${MAX_REFERENCE_CHARS} characters`);
  }
  return { reference, body: body as Record<string, unknown> };
}

/** The first line of an error answer, short and printable, for the status message. */
async function answerText(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  let message = text;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object') {
      const m = (parsed as Record<string, unknown>).error ?? (parsed as Record<string, unknown>).message;
      if (typeof m === 'string') message = m;
    }
  } catch {
    // not JSON: the text itself
  }
  const line = message.split(/\r?\n/)[0]!.replace(/[^\P{C}\t]/gu, '').trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

function describeNetworkError(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  if (cause && typeof cause.code === 'string') return cause.code;
  return error instanceof Error ? error.message : String(error);
}
