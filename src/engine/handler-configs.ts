import type { z } from 'zod';
import type { Principal } from '../context.js';
import type { HandlerConfig, Prisma } from '../generated/prisma/client.js';
import type { HandlerRegistry } from '../handlers/registry.js';
import { appendAuditEntry, type HandlerConfigState } from './audit.js';
import { canonicalJson } from './canonical-json.js';
import type { Actor, EngineDeps } from './deps.js';
import { ForbiddenError, InvalidInputError } from './errors.js';
import { SecretsDecryptError } from './secrets.js';

/**
 * What `upsertHandlerConfig` takes (spec §10 revision 2). An absent field keeps what is stored
 * (or its default for a new configuration); `secrets: null` removes the stored secrets.
 */
export interface HandlerConfigInput {
  handler: string;
  provider: string;
  /** Non-secret settings (URLs, addresses, options); a JSON object. */
  settings?: unknown;
  /** Write-only: encrypted at rest, never returned or logged. A JSON object, or null to remove. */
  secrets?: unknown;
  enabled?: boolean | null;
}

const MAX_PROVIDER = 100;
const MAX_DEPTH = 20;
const MAX_SECRET_NAME = 100;

// Compared on the key in lower case with everything but letters and digits removed, so
// `api_key`, `apiKey`, `API-KEY` and `x-api-key` all match `apikey`.
const SECRET_WORDS = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'apikey',
  'accesskey',
  'privatekey',
  'signingkey',
  'credential',
  'authorization',
  'bearer',
  'cookie',
];
// Where a secret word only names where something is (`tokenUrl`, `secretHeader`), not the value.
const NOT_A_VALUE = /(url|uri|endpoint|header|headername|field|path)$/;
const SECRET_VALUE = [/^bearer\s+\S/i, /-----BEGIN [A-Z ]*PRIVATE KEY-----/];

/** Whether a settings key names a secret (`password`, `api_key`, `clientSecret`, …). */
export function looksSecret(key: string): boolean {
  const k = key.toLowerCase().replace(/[^a-z0-9]/g, '');
  return SECRET_WORDS.some((w) => k.includes(w)) && !NOT_A_VALUE.test(k);
}

/**
 * Refuses settings that are not a JSON object, that nest deeper than {@link MAX_DEPTH}, or that
 * hold a key that looks secret or a value that looks like a credential (a bearer token, a
 * private key), at any depth. The error names the field and says to use `secrets`.
 */
export function checkSettings(settings: unknown): Record<string, unknown> {
  if (!isPlainObject(settings)) throw new InvalidInputError('settings must be a JSON object', ['input', 'settings']);
  const stack: Array<{ value: unknown; path: Array<string | number> }> = [{ value: settings, path: ['input', 'settings'] }];
  while (stack.length) {
    const { value, path } = stack.pop()!;
    if (path.length - 2 > MAX_DEPTH) {
      throw new InvalidInputError(`settings nest deeper than ${MAX_DEPTH} levels`, path.slice(0, MAX_DEPTH + 3));
    }
    if (typeof value === 'string' && SECRET_VALUE.some((re) => re.test(value))) {
      throw new InvalidInputError(
        `settings.${path.slice(2).join('.')} looks like a credential: settings are stored and shown in clear; put it in secrets`,
        path,
      );
    }
    if (Array.isArray(value)) {
      value.forEach((item, i) => stack.push({ value: item, path: [...path, i] }));
    } else if (isPlainObject(value)) {
      for (const [key, item] of Object.entries(value)) {
        if (looksSecret(key)) {
          throw new InvalidInputError(
            `settings.${[...path.slice(2), key].join('.')} looks like a secret: settings are stored and shown in clear; put it in secrets`,
            [...path, key],
          );
        }
        stack.push({ value: item, path: [...path, key] });
      }
    }
  }
  return settings;
}

/** What stands in for a secret-looking value found in stored settings. */
export const REDACTED_SETTING = '[redacted: a secret in settings; move it to secrets]';

/**
 * Stored settings as they may be shown or audited: values under secret-looking keys, and values
 * that look like credentials, replaced by {@link REDACTED_SETTING}. New settings cannot hold
 * them ({@link checkSettings}); rows saved before that check existed still may.
 */
export function redactSettings(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return SECRET_VALUE.some((re) => re.test(value)) ? REDACTED_SETTING : value;
  if (depth > MAX_DEPTH + 12) return REDACTED_SETTING;
  if (Array.isArray(value)) return value.map((item) => redactSettings(item, depth + 1));
  if (isPlainObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, looksSecret(key) ? REDACTED_SETTING : redactSettings(item, depth + 1)]));
  }
  return value;
}

function checkSecrets(secrets: unknown): Record<string, unknown> {
  if (!isPlainObject(secrets)) {
    throw new InvalidInputError('secrets must be a JSON object of named secrets (e.g. {"apiKey": "…"}), or null to remove them', ['input', 'secrets']);
  }
  for (const name of Object.keys(secrets)) {
    if (!name.trim() || name.length > MAX_SECRET_NAME) {
      throw new InvalidInputError(`each secret needs a name of 1 to ${MAX_SECRET_NAME} characters`, ['input', 'secrets']);
    }
  }
  // Depth only: the values themselves are never inspected, echoed or named.
  const stack: Array<{ value: unknown; depth: number }> = [{ value: secrets, depth: 0 }];
  while (stack.length) {
    const { value, depth } = stack.pop()!;
    if (depth > MAX_DEPTH) throw new InvalidInputError(`secrets nest deeper than ${MAX_DEPTH} levels`, ['input', 'secrets']);
    if (typeof value === 'object' && value !== null) for (const item of Object.values(value)) stack.push({ value: item, depth: depth + 1 });
  }
  return secrets;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The key of a configuration row: `<space id>:<handler>:<provider>`. */
export function handlerConfigKey(spaceId: string, handler: string, provider: string): string {
  return `${spaceId}:${handler}:${provider}`;
}

/**
 * Creates or changes a handler configuration in the admin's space, in one transaction with
 * its audit entry (before and after; secrets only as names and whether they changed). Once it
 * has committed, every process drops its cached configurations for that provider in the space.
 */
export async function upsertHandlerConfig(
  deps: Pick<EngineDeps, 'db' | 'secrets' | 'configCache'>,
  handlers: HandlerRegistry,
  principal: Principal,
  actor: Actor,
  input: HandlerConfigInput,
): Promise<HandlerConfig> {
  if (principal.role !== 'ADMIN') throw new ForbiddenError('only admins configure handlers');
  let handler;
  try {
    handler = handlers.get(input.handler);
  } catch (error) {
    throw new InvalidInputError(error instanceof Error ? error.message : String(error), ['input', 'handler']);
  }
  if (!input.provider.trim() || input.provider.length > MAX_PROVIDER || /[\p{Cc}]/u.test(input.provider)) {
    throw new InvalidInputError(`provider must be 1 to ${MAX_PROVIDER} printable characters, or * for the handler's default`, ['input', 'provider']);
  }
  const settings = input.settings === undefined ? undefined : checkSettings(input.settings ?? {});
  const secrets = input.secrets === undefined || input.secrets === null ? input.secrets : checkSecrets(input.secrets);
  // What the handler declares it needs is checked when the configuration is saved, not at its
  // first attempt: a wrong one is refused naming the field, and nothing is stored.
  if (settings !== undefined && handler.settings) fitsSchema(handler.settings, settings, 'settings', true);
  if (secrets && Object.keys(secrets).length > 0 && handler.secrets) fitsSchema(handler.secrets, secrets, 'secrets', false);

  const configKey = handlerConfigKey(principal.spaceId, input.handler, input.provider);
  const saved = await deps.db.$transaction(async (tx) => {
    // Row lock, so `before` is what this write replaces even when admins race.
    await tx.$executeRaw`SELECT 1 FROM "HandlerConfig" WHERE "configKey" = ${configKey} FOR UPDATE`;
    const previous = await tx.handlerConfig.findUnique({ where: { configKey } });

    let secretsCiphertext = previous?.secretsCiphertext ?? null;
    let secretsChanged = false;
    if (secrets === null || (secrets && Object.keys(secrets).length === 0)) {
      secretsChanged = secretsCiphertext !== null;
      secretsCiphertext = null;
    } else if (secrets) {
      secretsChanged = !sameSecrets(deps, previous, secrets);
      if (secretsChanged) secretsCiphertext = deps.secrets.seal(secrets, configKey);
    }

    const fields = {
      spaceId: principal.spaceId,
      handler: input.handler,
      provider: input.provider,
      settings: (settings ?? (previous?.settings as Prisma.InputJsonValue | undefined) ?? {}) as Prisma.InputJsonValue,
      enabled: input.enabled ?? previous?.enabled ?? true,
      secretsCiphertext,
    };
    const saved = await tx.handlerConfig.upsert({ where: { configKey }, create: { configKey, ...fields }, update: fields });
    await appendAuditEntry(tx, {
      event: 'handler_config.upserted',
      actor: actor.id,
      ip: actor.ip ?? null,
      userAgent: actor.userAgent ?? null,
      spaceId: principal.spaceId,
      data: {
        configKey,
        handler: saved.handler,
        provider: saved.provider,
        before: previous ? auditState(deps, previous) : null,
        after: auditState(deps, saved),
        secretsChanged,
      },
    });
    return saved;
  });
  await deps.configCache.invalidate({ kind: 'handlerConfigs', spaceId: principal.spaceId, provider: input.provider });
  return saved;
}

/** Whether the stored secrets equal `next`; stored secrets that cannot be opened count as different. */
function sameSecrets(deps: Pick<EngineDeps, 'secrets'>, previous: HandlerConfig | null, next: Record<string, unknown>): boolean {
  if (!previous?.secretsCiphertext) return false;
  try {
    return canonicalJson(deps.secrets.open(previous.secretsCiphertext, previous.configKey)) === canonicalJson(next);
  } catch (error) {
    if (error instanceof SecretsDecryptError) return false;
    throw error;
  }
}

/** The names of a configuration's secrets (never their values); [] when it has none. */
export function secretNamesOf(deps: Pick<EngineDeps, 'secrets'>, config: Pick<HandlerConfig, 'secretsCiphertext'>): string[] {
  if (!config.secretsCiphertext) return [];
  try {
    return deps.secrets.names(config.secretsCiphertext);
  } catch {
    return [];
  }
}

function auditState(deps: Pick<EngineDeps, 'secrets'>, config: HandlerConfig): HandlerConfigState {
  return {
    settings: redactSettings(config.settings) as HandlerConfig['settings'],
    enabled: config.enabled,
    hasSecrets: config.secretsCiphertext !== null,
    secretNames: secretNamesOf(deps, config),
  };
}

/**
 * Throws {@link InvalidInputError} naming the first field of `value` that does not fit the
 * handler's schema (`input.settings.url`). For secrets the message names the field and the rule,
 * never the value.
 */
function fitsSchema(schema: z.ZodType, value: unknown, what: 'settings' | 'secrets', showMessage: boolean): void {
  const result = schema.safeParse(value);
  if (result.success) return;
  const issue = result.error.issues[0]!;
  const path = issue.path.map(String);
  const field = [what, ...path].join('.');
  const rule = showMessage ? issue.message : issue.code === 'invalid_type' ? `must be ${String((issue as { expected?: unknown }).expected)}` : issue.code.replace(/_/g, ' ');
  throw new InvalidInputError(`${field} does not fit what the handler needs: ${rule}`, ['input', what, ...path]);
}
