import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { loadOrCreateKeyFile, type KeyFileKind } from './key-file.js';

/**
 * Handler secrets at rest (spec §10 revision 2): AES-256-GCM with a random 12-byte IV per
 * write and a 16-byte auth tag. The stored text is
 *
 *     ae-secrets:v1:<key id>:<names>:<iv>:<tag>:<ciphertext>     (base64url parts)
 *
 * where the key id is the first 8 bytes (hex) of SHA-256 over the key, so a wrong key is named
 * as such rather than reported as tampering, and `names` lists the secrets' names (not their
 * values) so `secretNames` can be shown without decrypting. The prefix and the row's
 * `configKey` are authenticated data: a ciphertext copied to another row does not open.
 */
export const SECRETS_FORMAT = 'ae-secrets:v1';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The key is missing or malformed. */
export class SecretsKeyError extends Error {
  override name = 'SecretsKeyError';
}

/** Stored secrets cannot be opened (another key, altered, or not in the stored format). */
export class SecretsDecryptError extends Error {
  override name = 'SecretsDecryptError';
}

/**
 * Parses `SECRETS_KEY`: 32 bytes written as 64 hex digits or as base64 (standard or url-safe,
 * padding optional). Throws {@link SecretsKeyError} saying which forms are accepted.
 */
export function parseSecretsKey(text: string): Buffer {
  const value = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(value)) {
    const bytes = Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (bytes.length === KEY_BYTES) return bytes;
  }
  throw new SecretsKeyError(
    'must be 32 random bytes written as 64 hex characters or as base64 (44 characters), e.g. the output of `openssl rand -base64 32`',
  );
}

/** A short public name of a key: the first 8 bytes of its SHA-256, in hex. */
export function secretsKeyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

/** Encrypts and decrypts handler secrets with one key. */
export interface SecretsBox {
  /** Encrypts a JSON object of secrets for the row `context` (its configKey). */
  seal(secrets: Record<string, unknown>, context: string): string;
  /** Decrypts what {@link seal} wrote for the same `context`. Throws {@link SecretsDecryptError}. */
  open(stored: string, context: string): Record<string, unknown>;
  /** The names of the stored secrets, without decrypting (never the values). */
  names(stored: string): string[];
}

export interface SecretsBoxOptions {
  /** From `SECRETS_KEY`; when absent the key is read from (or generated into) `keyFile`. */
  key?: Buffer | undefined;
  /** `DATA_DIR/secrets.key`. */
  keyFile: string;
  /** Where the warning about a generated key goes (the service's logger). */
  logger: SecretsLogger;
}

export interface SecretsLogger {
  warn(details: object, message: string): void;
}

/**
 * The key is resolved on first use, not at start: a deployment with no handler secrets never
 * creates a key file. A generated key is written with mode 0600 by an atomic link, so two
 * processes starting at once agree on one key.
 */
export function createSecretsBox(options: SecretsBoxOptions): SecretsBox {
  let key: Buffer | null = options.key ?? null;
  const currentKey = (): Buffer => {
    key ??= loadOrCreateKeyFile(options.keyFile, secretsKeyFile(options.logger));
    return key;
  };
  return {
    seal(secrets, context) {
      const k = currentKey();
      const names = Buffer.from(JSON.stringify(Object.keys(secrets).sort())).toString('base64url');
      const header = `${SECRETS_FORMAT}:${secretsKeyId(k)}:${names}`;
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', k, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(`${header}\n${context}`));
      const ciphertext = Buffer.concat([cipher.update(JSON.stringify(secrets), 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [header, iv.toString('base64url'), tag.toString('base64url'), ciphertext.toString('base64url')].join(':');
    },
    open(stored, context) {
      const parts = split(stored);
      const k = currentKey();
      const keyId = secretsKeyId(k);
      if (parts.keyId !== keyId) {
        throw new SecretsDecryptError(
          `the handler secrets were encrypted with key ${parts.keyId}, but the configured key is ${keyId}: ` +
            'set SECRETS_KEY (or DATA_DIR/secrets.key) to the key they were written with, or store the secrets again',
        );
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', k, parts.iv, { authTagLength: TAG_BYTES });
        decipher.setAAD(Buffer.from(`${parts.header}\n${context}`));
        decipher.setAuthTag(parts.tag);
        const plain = Buffer.concat([decipher.update(parts.ciphertext), decipher.final()]).toString('utf8');
        return JSON.parse(plain) as Record<string, unknown>;
      } catch {
        throw new SecretsDecryptError('the handler secrets cannot be decrypted: the stored text was altered or belongs to another configuration');
      }
    },
    names(stored) {
      return split(stored).names;
    },
  };
}

function split(stored: string) {
  const parts = stored.split(':');
  if (parts.length !== 7 || `${parts[0]}:${parts[1]}` !== SECRETS_FORMAT) {
    throw new SecretsDecryptError(`the stored handler secrets are not in the ${SECRETS_FORMAT} format`);
  }
  const [, , keyId, names, iv, tag, ciphertext] = parts as [string, string, string, string, string, string, string];
  let parsedNames: string[];
  try {
    parsedNames = JSON.parse(Buffer.from(names, 'base64url').toString('utf8')) as string[];
  } catch {
    throw new SecretsDecryptError(`the stored handler secrets are not in the ${SECRETS_FORMAT} format`);
  }
  return {
    header: `${SECRETS_FORMAT}:${keyId}:${names}`,
    keyId,
    names: parsedNames,
    iv: Buffer.from(iv, 'base64url'),
    tag: Buffer.from(tag, 'base64url'),
    ciphertext: Buffer.from(ciphertext, 'base64url'),
  };
}

/** The secrets key as it lives in `DATA_DIR/secrets.key`. */
function secretsKeyFile(logger: SecretsLogger): KeyFileKind<Buffer> {
  return {
    label: 'secrets key',
    parse: parseSecretsKey,
    generate: () => `${randomBytes(KEY_BYTES).toString('base64')}\n`,
    created: (file) =>
      logger.warn(
        { keyFile: file },
        `SECRETS_KEY is not set: generated a key for handler secrets in ${file}. Back this file up (secrets stored with it cannot be read without it), and set SECRETS_KEY in production.`,
      ),
    error: (message) => new SecretsKeyError(message),
  };
}
