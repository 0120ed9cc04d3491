import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { checkSettings, looksSecret } from '../../src/engine/handler-configs.js';
import { InvalidInputError } from '../../src/engine/errors.js';
import { createLogger } from '../../src/logger.js';
import { createSecretsBox, parseSecretsKey, SecretsDecryptError, SecretsKeyError, secretsKeyId } from '../../src/engine/secrets.js';

const silent = { warn: () => undefined };
const SECRET = 'sk_live_unit_7f3a9c';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ae-secrets-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('SECRETS_KEY', () => {
  it('accepts 32 bytes as 64 hex characters, base64 or base64url, and nothing else', () => {
    const key = randomBytes(32);
    expect(parseSecretsKey(key.toString('hex'))).toEqual(key);
    expect(parseSecretsKey(key.toString('base64'))).toEqual(key);
    expect(parseSecretsKey(key.toString('base64url'))).toEqual(key);
    for (const bad of ['', 'secret', key.toString('hex').slice(2), randomBytes(16).toString('base64'), randomBytes(33).toString('base64')]) {
      expect(() => parseSecretsKey(bad), bad).toThrow(SecretsKeyError);
    }
  });

  it('fails at start with a config error naming SECRETS_KEY and the expected forms, without echoing the value', () => {
    const value = 'my-not-so-secret-passphrase';
    let caught: unknown;
    try {
      loadConfig({ SECRETS_KEY: value });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toMatch(/SECRETS_KEY: must be 32 random bytes written as 64 hex characters or as base64/);
    expect((caught as Error).message).not.toContain(value);
    const key = randomBytes(32);
    expect(loadConfig({ SECRETS_KEY: key.toString('base64') }).secretsKey).toEqual(key);
  });
});

describe('the secrets box (AES-256-GCM)', () => {
  it('round-trips, uses a fresh IV per write, keeps the names readable and never the plaintext', () => {
    const box = createSecretsBox({ key: randomBytes(32), keyFile: path.join(dir, 'unused.key'), logger: silent });
    const a = box.seal({ apiKey: SECRET, webhookSecret: 'whsec_1' }, 'space:h:p');
    const b = box.seal({ apiKey: SECRET, webhookSecret: 'whsec_1' }, 'space:h:p');
    expect(a).toMatch(/^ae-secrets:v1:[0-9a-f]{16}:[\w-]+:[\w-]{16}:[\w-]{22}:[\w-]+$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain(SECRET);
    expect(a).not.toContain(Buffer.from(SECRET).toString('base64url').slice(0, 8));
    expect(box.open(a, 'space:h:p')).toEqual({ apiKey: SECRET, webhookSecret: 'whsec_1' });
    expect(box.names(a)).toEqual(['apiKey', 'webhookSecret']);
  });

  it('refuses to open with another key, naming both key ids, and refuses altered or moved ciphertext', () => {
    const key = randomBytes(32);
    const other = randomBytes(32);
    const stored = createSecretsBox({ key, keyFile: 'x', logger: silent }).seal({ apiKey: SECRET }, 'ctx');
    const wrong = createSecretsBox({ key: other, keyFile: 'x', logger: silent });
    expect(() => wrong.open(stored, 'ctx')).toThrow(SecretsDecryptError);
    expect(() => wrong.open(stored, 'ctx')).toThrow(
      `encrypted with key ${secretsKeyId(key)}, but the configured key is ${secretsKeyId(other)}: set SECRETS_KEY`,
    );
    const right = createSecretsBox({ key, keyFile: 'x', logger: silent });
    expect(() => right.open(stored, 'another-config')).toThrow(/altered or belongs to another configuration/);
    const parts = stored.split(':');
    parts[6] = Buffer.from(Buffer.from(parts[6]!, 'base64url').map((byte, i) => (i === 0 ? byte ^ 1 : byte))).toString('base64url');
    expect(() => right.open(parts.join(':'), 'ctx')).toThrow(/altered/);
    expect(() => right.open('plaintext', 'ctx')).toThrow(/not in the ae-secrets:v1 format/);
  });

  it('without SECRETS_KEY generates DATA_DIR/secrets.key once (mode 0600, with a warning saying where), and reuses it', async () => {
    const keyFile = path.join(dir, 'data', 'secrets.key');
    const warnings: string[] = [];
    const logger = { warn: (_details: object, message: string) => void warnings.push(message) };
    const first = createSecretsBox({ keyFile, logger });
    const stored = first.seal({ apiKey: SECRET }, 'ctx');
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(keyFile);
    expect(warnings[0]).toMatch(/Back this file up.*set SECRETS_KEY in production/);
    const keyText = await readFile(keyFile, 'utf8');

    // A restart (a new box over the same file) reads the same key and warns no more.
    const second = createSecretsBox({ keyFile, logger });
    expect(second.open(stored, 'ctx')).toEqual({ apiKey: SECRET });
    expect(await readFile(keyFile, 'utf8')).toBe(keyText);
    expect(warnings).toHaveLength(1);
    expect(parseSecretsKey(keyText)).toHaveLength(32);
  });
});

describe('handler settings', () => {
  it('recognise secret-looking keys in any spelling, but not names of where a secret goes', () => {
    for (const key of ['password', 'PASSWORD', 'api_key', 'apiKey', 'x-api-key', 'clientSecret', 'privateKey', 'accessToken', 'auth_token', 'Credentials']) {
      expect(looksSecret(key), key).toBe(true);
    }
    for (const key of ['url', 'from', 'tokenUrl', 'apiKeyHeader', 'timeoutMs', 'merchantId']) {
      expect(looksSecret(key), key).toBe(false);
    }
  });

  it('refuse a secret at any depth with INVALID_INPUT naming the field and pointing to secrets', () => {
    const refusal = (settings: unknown) => {
      try {
        checkSettings(settings);
      } catch (error) {
        return error as InvalidInputError;
      }
      throw new Error('accepted');
    };
    const deep = refusal({ url: 'https://x', auth: { list: [{ Api_Key: 'k' }] } });
    expect(deep).toBeInstanceOf(InvalidInputError);
    expect(deep.code).toBe('INVALID_INPUT');
    expect(deep.field).toEqual(['input', 'settings', 'auth', 'list', '0', 'Api_Key']);
    expect(deep.message).toMatch(/settings\.auth\.list\.0\.Api_Key looks like a secret.*put it in secrets/);
    expect(refusal({ headers: { Authorization: 'Bearer abc' } }).field).toEqual(['input', 'settings', 'headers', 'Authorization']);
    expect(refusal({ note: 'Bearer abc.def' }).message).toMatch(/looks like a credential/);
    expect(refusal([1]).message).toBe('settings must be a JSON object');
    let nested: unknown = 1;
    for (let i = 0; i < 5000; i += 1) nested = { a: nested };
    expect(refusal(nested).message).toMatch(/deeper than 20 levels/);
    expect(checkSettings({ url: 'https://x', tokenUrl: 'https://x/token', retries: [1, 2] })).toBeTruthy();
  });
});

describe('the logger', () => {
  it('redacts secrets, stored ciphertext and GraphQL variables wherever a careless log call puts them', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
    logger.trace({ secrets: { apiKey: SECRET } }, 'a');
    logger.debug({ input: { handler: 'h', secrets: { apiKey: SECRET } } }, 'b');
    logger.info({ args: { input: { secrets: SECRET } } }, 'c');
    logger.warn({ config: { secretsCiphertext: `ae-secrets:v1:${SECRET}` } }, 'd');
    logger.error({ variables: { input: { secrets: SECRET } } }, 'e');
    logger.error({ args: [{ variables: { s: SECRET } }, { secrets: SECRET }] }, 'f');
    logger.info({ request: { variables: { s: SECRET } } }, 'g');
    expect(lines).toHaveLength(7);
    expect(lines.join('')).not.toContain(SECRET);
    expect(lines.join('')).toContain('[redacted]');
  });
});
