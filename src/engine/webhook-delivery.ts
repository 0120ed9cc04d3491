import { Webhook } from 'standardwebhooks';
import type { PrismaClient, WebhookDelivery, WebhookEndpoint } from '../generated/prisma/client.js';
import type { Logger } from '../logger.js';
import { appendAuditEntry } from './audit.js';
import { briefError } from './infra-errors.js';
import { OutboundRefusedError, OutboundTimeoutError } from './outbound.js';
import type { SecretsBox } from './secrets.js';
import { auditedUrl, openWebhookSecret } from './webhook-endpoints.js';
import type { WebhookQueue } from './webhook-queue.js';

/** What the webhook sender runs on. */
export interface WebhookSenderDeps {
  db: PrismaClient;
  secrets: SecretsBox;
  logger: Logger;
  clock: () => Date;
  /** createOutboundFetch: the deadline (OUTBOUND_TIMEOUT_MS) and OUTBOUND_BLOCK_PRIVATE. */
  fetch: typeof fetch;
  webhooks: WebhookQueue;
  /** WEBHOOK_RETRY_BASE_MS: the first retry's delay; doubles per attempt, at most {@link MAX_RETRY_DELAY_MS}. */
  retryBaseMs: number;
  /** WEBHOOK_MAX_FAILURES: failed attempts in a row after which the endpoint is disabled. */
  maxFailures: number;
}

/** The longest wait between two attempts of one delivery. */
export const MAX_RETRY_DELAY_MS = 3_600_000;
/** Deliveries one job sends before it makes room for other endpoints (the endpoint is queued again at once). */
const DELIVERIES_PER_JOB = 100;
/** The longest error text kept in the log of deliveries. */
const MAX_ERROR = 300;

/** The Standard Webhooks message id of a delivery: stable across its retries, so receivers can drop repeats. */
export function webhookIdOf(deliveryId: string): string {
  return `msg_${deliveryId.replace(/-/g, '')}`;
}

/** The JSON body of a delivery (issue #9's contract), the same bytes on every attempt. */
export function webhookBody(d: Pick<WebhookDelivery, 'actionId' | 'status' | 'seq' | 'message' | 'statusAt'>): string {
  return JSON.stringify({ type: 'action.status', actionId: d.actionId, status: d.status, seq: d.seq, message: d.message, timestamp: d.statusAt.toISOString() });
}

/** Delay before the next attempt of a delivery that has failed `attempts` times. */
export function retryDelayMs(attempts: number, baseMs: number): number {
  return Math.min(baseMs * 2 ** Math.max(0, attempts - 1), MAX_RETRY_DELAY_MS);
}

/** The outcome of one HTTP attempt. */
interface Attempt {
  ok: boolean;
  statusCode: number | null;
  error: string | null;
}

/**
 * Sends an endpoint's PENDING deliveries one at a time, in the order they were written (so per
 * action in the order of `seq`), and stops at the first that fails (it is tried again after its
 * backoff, before anything behind it). Returns when nothing is due; the caller queues the
 * endpoint again for what is left ({@link wakeEndpoint}).
 */
export async function sendEndpointDeliveries(deps: WebhookSenderDeps, endpointId: string): Promise<void> {
  const endpoint = await deps.db.webhookEndpoint.findUnique({ where: { id: endpointId } });
  if (!endpoint?.enabled) return;
  let secret: string | null = null;
  let secretError: string | null = null;
  try {
    secret = openWebhookSecret(deps, endpoint);
  } catch (error) {
    secretError = `the endpoint's secret cannot be opened (${briefError(error)}); register the endpoint again with its secret`;
  }
  for (let sent = 0; sent < DELIVERIES_PER_JOB; sent++) {
    const head = await deps.db.webhookDelivery.findFirst({ where: { endpointId, state: 'PENDING' }, orderBy: { position: 'asc' } });
    if (!head) return;
    if (head.nextAttemptAt && head.nextAttemptAt.getTime() > deps.clock().getTime()) return;
    const attempt: Attempt = secret ? await post(deps, endpoint.url, secret, head) : { ok: false, statusCode: null, error: secretError };
    if (!(await record(deps, endpoint, head, attempt))) return;
  }
}

async function post(deps: WebhookSenderDeps, url: string, secret: string, delivery: WebhookDelivery): Promise<Attempt> {
  const body = webhookBody(delivery);
  const id = webhookIdOf(delivery.id);
  const now = deps.clock();
  try {
    const response = await deps.fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'action-engine-webhooks',
        'webhook-id': id,
        'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
        'webhook-signature': new Webhook(secret).sign(id, now, body),
      },
      body,
      // A redirect is not followed: the receiver must answer at the registered URL.
      redirect: 'manual',
    });
    await response.body?.cancel().catch(() => {});
    const ok = response.status >= 200 && response.status < 300;
    return { ok, statusCode: response.status, error: ok ? null : `the endpoint answered HTTP ${response.status}` };
  } catch (error) {
    const why =
      error instanceof OutboundTimeoutError
        ? `no answer within the outbound timeout (${error.message})`
        : error instanceof OutboundRefusedError
          ? `refused: ${error.message}`
          : `could not reach the endpoint: ${networkError(error)}`;
    return { ok: false, statusCode: null, error: why.slice(0, MAX_ERROR) };
  }
}

/** fetch's own error says only "fetch failed": the cause says what (ECONNREFUSED, a reset, a bad certificate). */
function networkError(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } })?.cause;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : null;
  return detail ? `${briefError(error)} (${detail})` : briefError(error);
}

/** Records an attempt; false when the endpoint should not be tried again now (a failure). */
async function record(deps: WebhookSenderDeps, endpoint: WebhookEndpoint, delivery: WebhookDelivery, attempt: Attempt): Promise<boolean> {
  const now = deps.clock();
  if (attempt.ok) {
    await deps.db.$transaction([
      deps.db.webhookDelivery.updateMany({
        where: { id: delivery.id, state: 'PENDING' },
        data: { state: 'DELIVERED', attempts: { increment: 1 }, lastStatusCode: attempt.statusCode, lastError: null, lastAttemptAt: now, deliveredAt: now, nextAttemptAt: null },
      }),
      deps.db.webhookEndpoint.updateMany({ where: { id: endpoint.id, consecutiveFailures: { not: 0 } }, data: { consecutiveFailures: 0 } }),
    ]);
    return true;
  }
  const attempts = delivery.attempts + 1;
  const [, updated] = await deps.db.$transaction([
    deps.db.webhookDelivery.updateMany({
      where: { id: delivery.id, state: 'PENDING' },
      data: {
        attempts,
        lastStatusCode: attempt.statusCode,
        lastError: attempt.error,
        lastAttemptAt: now,
        nextAttemptAt: new Date(now.getTime() + retryDelayMs(attempts, deps.retryBaseMs)),
      },
    }),
    deps.db.webhookEndpoint.update({ where: { id: endpoint.id }, data: { consecutiveFailures: { increment: 1 } }, select: { consecutiveFailures: true } }),
  ]);
  deps.logger.warn({ endpointId: endpoint.id, deliveryId: delivery.id, attempts, statusCode: attempt.statusCode, err: attempt.error }, 'webhook delivery failed; will retry');
  if (updated.consecutiveFailures >= deps.maxFailures) await disableEndpoint(deps, endpoint, updated.consecutiveFailures, attempt.error ?? 'failed');
  return false;
}

/**
 * Disables an endpoint that failed `failures` times in a row: its PENDING deliveries become
 * FAILED (they stay in the log; enabling the endpoint again does not resend them), with an
 * admin audit entry by `system`.
 */
async function disableEndpoint(deps: WebhookSenderDeps, endpoint: WebhookEndpoint, failures: number, lastError: string): Promise<void> {
  const now = deps.clock();
  const reason = `disabled after ${failures} failed delivery attempts in a row; the last: ${lastError}`.slice(0, MAX_ERROR + 100);
  const disabled = await deps.db.$transaction(async (tx) => {
    const { count } = await tx.webhookEndpoint.updateMany({ where: { id: endpoint.id, enabled: true }, data: { enabled: false, disabledAt: now, disabledReason: reason } });
    if (!count) return false;
    const failed = await tx.webhookDelivery.updateMany({ where: { endpointId: endpoint.id, state: 'PENDING', attempts: 0 }, data: { state: 'FAILED', lastError: 'not sent: the endpoint was disabled' } });
    const tried = await tx.webhookDelivery.updateMany({ where: { endpointId: endpoint.id, state: 'PENDING' }, data: { state: 'FAILED', nextAttemptAt: null } });
    await appendAuditEntry(tx, {
      event: 'webhook_endpoint.disabled',
      actor: 'system',
      spaceId: endpoint.spaceId,
      data: { endpointId: endpoint.id, url: auditedUrl(endpoint.url), reason, consecutiveFailures: failures, failedDeliveries: failed.count + tried.count },
    });
    return true;
  });
  if (disabled) deps.logger.warn({ endpointId: endpoint.id, failures }, 'webhook endpoint disabled after repeated failures');
}

/**
 * Queues an endpoint's send job for when its first PENDING delivery is due, if it has one and
 * is enabled. Run after each job has finished (its job id is then free again), so a delivery
 * written while the job ran is never left waiting for the sweeper.
 */
export async function wakeEndpoint(deps: Pick<WebhookSenderDeps, 'db' | 'clock' | 'webhooks'>, endpointId: string): Promise<void> {
  const head = await deps.db.webhookDelivery.findFirst({
    where: { endpointId, state: 'PENDING', endpoint: { enabled: true } },
    orderBy: { position: 'asc' },
    select: { nextAttemptAt: true },
  });
  if (!head) return;
  await deps.webhooks.wake([endpointId], head.nextAttemptAt ? head.nextAttemptAt.getTime() - deps.clock().getTime() : 0);
}

/**
 * The sweeper: queues every enabled endpoint with PENDING deliveries (for when its first is
 * due), so a send job lost to a Redis outage or a crash loses nothing. Returns how many.
 */
export async function sweepWebhookDeliveries(deps: Pick<WebhookSenderDeps, 'db' | 'clock' | 'webhooks'>): Promise<number> {
  // A status change that raced the engine disabling an endpoint can still have written a
  // delivery for it: it fails like the others did, so nothing waits for a re-enable out of order.
  await deps.db.$executeRaw`
    UPDATE "WebhookDelivery" d SET "state" = 'FAILED', "lastError" = 'not sent: the endpoint was disabled', "nextAttemptAt" = NULL
    FROM "WebhookEndpoint" e
    WHERE e."id" = d."endpointId" AND NOT e."enabled" AND e."disabledReason" IS NOT NULL AND d."state" = 'PENDING'`;
  const heads = await deps.db.$queryRaw<Array<{ endpointId: string; nextAttemptAt: Date | null }>>`
    SELECT DISTINCT ON (d."endpointId") d."endpointId", d."nextAttemptAt"
    FROM "WebhookDelivery" d JOIN "WebhookEndpoint" e ON e."id" = d."endpointId" AND e."enabled"
    WHERE d."state" = 'PENDING'
    ORDER BY d."endpointId", d."position"`;
  const now = deps.clock().getTime();
  for (const head of heads) await deps.webhooks.wake([head.endpointId], head.nextAttemptAt ? head.nextAttemptAt.getTime() - now : 0);
  return heads.length;
}
