import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Principal } from '../context.js';
import type { WebhookEndpoint } from '../generated/prisma/client.js';
import type { ActionStatus } from '../generated/prisma/enums.js';
import { appendAuditEntry, type WebhookEndpointState } from './audit.js';
import type { Actor, EngineDeps } from './deps.js';
import { ForbiddenError, InvalidInputError } from './errors.js';
import { assertOutboundAllowed, OutboundRefusedError } from './outbound.js';
import { SecretsDecryptError } from './secrets.js';

/** What `upsertWebhookEndpoint` takes (spec §10 revision 2). */
export interface WebhookEndpointInput {
  /** Where status changes are POSTed; an endpoint is identified by its space and URL. */
  url: string;
  /** Write-only: a Standard Webhooks secret, `whsec_` and the base64 of 24 to 64 random bytes. */
  secret: string;
  /** The statuses to deliver; null or empty: every status. Omitted: kept (a new endpoint gets every status). */
  events?: readonly ActionStatus[] | null;
  /** Omitted: kept (a new endpoint is enabled). `true` on a disabled endpoint enables it again and clears its failures. */
  enabled?: boolean | null;
}

const MAX_URL = 2000;
/** Standard Webhooks: `whsec_` + base64 of the key; keys of 24 to 64 bytes. */
const SECRET_FORM = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
const SECRET_BYTES = { min: 24, max: 64 };

/** The context a webhook endpoint's secret is sealed under: a ciphertext copied to another row does not open. */
export function webhookSecretContext(endpointId: string): string {
  return `webhook:${endpointId}`;
}

/** Opens an endpoint's `whsec_…` secret. Throws SecretsDecryptError when it cannot be opened. */
export function openWebhookSecret(deps: Pick<EngineDeps, 'secrets'>, endpoint: Pick<WebhookEndpoint, 'id' | 'secretCiphertext'>): string {
  const opened = deps.secrets.open(endpoint.secretCiphertext, webhookSecretContext(endpoint.id));
  if (typeof opened['secret'] !== 'string') throw new SecretsDecryptError('the stored webhook secret is not in the expected form');
  return opened['secret'];
}

/** Checks a URL an endpoint may have: http(s), no credentials in it, and OUTBOUND_BLOCK_PRIVATE. The error names `input.url`. */
export async function checkWebhookUrl(url: string, options: { blockPrivate: boolean }): Promise<string> {
  const field = ['input', 'url'];
  if (!url.trim() || url.length > MAX_URL || /\p{Cc}/u.test(url)) throw new InvalidInputError(`url must be an http or https URL of at most ${MAX_URL} characters`, field);
  let parsed: URL;
  try {
    parsed = await assertOutboundAllowed(url, options);
  } catch (error) {
    if (error instanceof OutboundRefusedError) throw new InvalidInputError(`url is refused: ${error.message}`, field);
    throw error;
  }
  // The URL is shown to admins and in the audit: credentials do not belong in it (the secret signs the requests).
  if (parsed.username || parsed.password) throw new InvalidInputError('url must not carry a user name or password: requests are authenticated by their signature', field);
  return parsed.toString();
}

/** Checks a Standard Webhooks secret; the error names `input.secret` and the rule, never the value. */
export function checkWebhookSecret(secret: string): string {
  const field = ['input', 'secret'];
  const rule = `secret must be a Standard Webhooks secret: whsec_ followed by the base64 of ${SECRET_BYTES.min} to ${SECRET_BYTES.max} random bytes (e.g. "whsec_" + \`openssl rand -base64 32\`)`;
  if (!SECRET_FORM.test(secret)) throw new InvalidInputError(rule, field);
  const bytes = Buffer.from(secret.slice('whsec_'.length), 'base64').length;
  if (bytes < SECRET_BYTES.min || bytes > SECRET_BYTES.max) throw new InvalidInputError(rule, field);
  return secret;
}

function stateOf(endpoint: WebhookEndpoint): WebhookEndpointState {
  return { url: auditedUrl(endpoint.url), events: [...endpoint.events], enabled: endpoint.enabled };
}

/**
 * A webhook URL as the append-only audit keeps it: the origin, and the rest only as a SHA-256
 * (`https://hooks.example/…#sha256:…`), since paths and query strings often carry tokens.
 */
export function auditedUrl(url: string): string {
  try {
    const u = new URL(url);
    const rest = `${u.pathname}${u.search}`;
    return rest === '/' || rest === '' ? u.origin : `${u.origin}/…#sha256:${createHash('sha256').update(url).digest('hex').slice(0, 16)}`;
  } catch {
    return `#sha256:${createHash('sha256').update(url).digest('hex').slice(0, 16)}`;
  }
}

/**
 * Registers or changes an outbound webhook endpoint of the admin's space (one per URL), in one
 * transaction with its audit entry (the secret only as whether it changed). Enabling a disabled
 * endpoint clears its failure count and reason.
 */
export async function upsertWebhookEndpoint(
  deps: Pick<EngineDeps, 'db' | 'secrets' | 'webhooks' | 'logger'>,
  outbound: { blockPrivate: boolean },
  principal: Principal,
  actor: Actor,
  input: WebhookEndpointInput,
): Promise<WebhookEndpoint> {
  if (principal.role !== 'ADMIN') throw new ForbiddenError('only admins register webhook endpoints');
  const url = await checkWebhookUrl(input.url, outbound);
  const secret = checkWebhookSecret(input.secret);
  const events = input.events === undefined ? undefined : [...new Set(input.events ?? [])].sort();

  const saved = await deps.db.$transaction(async (tx) => {
    // Row lock, so `before` is what this write replaces even when admins race.
    await tx.$executeRaw`SELECT 1 FROM "WebhookEndpoint" WHERE "spaceId" = ${principal.spaceId}::uuid AND "url" = ${url} FOR UPDATE`;
    const previous = await tx.webhookEndpoint.findUnique({ where: { spaceId_url: { spaceId: principal.spaceId, url } } });
    const id = previous?.id ?? randomUUID();
    const secretChanged = !previous || !sameSecret(deps, previous, secret);
    const enabled = input.enabled ?? previous?.enabled ?? true;
    const reEnabled = enabled && previous !== null && !previous.enabled;
    const fields = {
      secretCiphertext: secretChanged ? deps.secrets.seal({ secret }, webhookSecretContext(id)) : previous!.secretCiphertext,
      events: events ?? previous?.events ?? [],
      enabled,
      ...(reEnabled ? { consecutiveFailures: 0, disabledAt: null, disabledReason: null } : {}),
      ...(!enabled && previous?.enabled !== false ? { disabledAt: new Date(), disabledReason: null } : {}),
    };
    const saved = previous
      ? await tx.webhookEndpoint.update({ where: { id }, data: fields })
      : await tx.webhookEndpoint.create({ data: { id, spaceId: principal.spaceId, url, ...fields } });
    await appendAuditEntry(tx, {
      event: 'webhook_endpoint.upserted',
      actor: actor.id,
      ip: actor.ip ?? null,
      userAgent: actor.userAgent ?? null,
      spaceId: principal.spaceId,
      data: { endpointId: id, url: auditedUrl(url), before: previous ? stateOf(previous) : null, after: stateOf(saved), secretChanged },
    });
    return saved;
  });
  // Deliveries written before an admin disabled it wait; enabled again, they go out now (not
  // awaited: the sweeper would queue them too).
  if (saved.enabled && deps.webhooks) {
    deps.webhooks.wake([saved.id]).catch((error: unknown) => deps.logger.warn({ endpointId: saved.id, err: String(error) }, 'could not queue a webhook endpoint; the sweeper will'));
  }
  return saved;
}

/** Whether the stored secret equals `next` (compared in constant time); one that cannot be opened counts as different. */
function sameSecret(deps: Pick<EngineDeps, 'secrets'>, previous: WebhookEndpoint, next: string): boolean {
  try {
    const stored = Buffer.from(openWebhookSecret(deps, previous));
    const given = Buffer.from(next);
    return stored.length === given.length && timingSafeEqual(stored, given);
  } catch (error) {
    if (error instanceof SecretsDecryptError) return false;
    throw error;
  }
}
