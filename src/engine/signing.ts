import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { loadOrCreateKeyFile, readKeyFile, type KeyFileKind } from './key-file.js';
import type { Prisma, PrismaClient } from '../generated/prisma/client.js';

/**
 * The engine's Ed25519 signing key (spec §6, §8): it signs audit checkpoints and receipts, so
 * that someone who can rewrite the database (even its superuser) cannot rewrite history or
 * forge a receipt without it. Every public key ever used is kept in `SigningKey` and served at
 * `/.well-known/action-engine-keys`, so old signatures stay verifiable after a key changes.
 *
 * `SIGNING_KEY` takes the private key as
 * - a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, e.g. from `openssl genpkey -algorithm ed25519`;
 *   line breaks may be written as `\n`), or
 * - the 32-byte private seed as 64 hex characters or base64 / base64url (43 or 44 characters).
 * Unset, the key is read from `DATA_DIR/signing.key` (a PKCS#8 PEM), generated there on first start.
 */

const SEED_BYTES = 32;
// DER prefix of a PKCS#8 Ed25519 private key (RFC 8410), followed by the 32-byte seed.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** The key is missing or malformed. */
export class SigningKeyError extends Error {
  override name = 'SigningKeyError';
}

/** A public key as stored in `SigningKey` and carried in export bundles. */
export interface PublicSigningKey {
  /** First 16 hex characters of SHA-256 of the raw 32-byte public key. */
  keyId: string;
  /** The raw 32-byte public key, base64url (a JWK's `x`). */
  publicKey: string;
}

/** A public key as a JSON Web Key (RFC 8037), as `/.well-known/action-engine-keys` serves it. */
export interface SigningJwk {
  kid: string;
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  alg: 'EdDSA';
  use: 'sig';
  /** When the engine first used the key (ISO 8601). */
  createdAt: string;
}

/** Signs with the engine's private key; the key itself never leaves this object. */
export interface Signer extends PublicSigningKey {
  publicKeyJwk: { kty: 'OKP'; crv: 'Ed25519'; x: string };
  /** Ed25519 signature of `data` (a string is signed as its UTF-8 bytes), base64url (86 characters). */
  sign(data: string | Uint8Array): string;
}

/**
 * Parses `SIGNING_KEY` (see the module comment for the forms accepted). Throws
 * {@link SigningKeyError} saying which forms are accepted, never echoing the value.
 */
export function parseSigningKey(text: string): KeyObject {
  const value = text.trim().replace(/\\n/g, '\n');
  if (value.startsWith('-----BEGIN')) {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: value, format: 'pem' });
    } catch {
      throw new SigningKeyError('is not a readable PEM private key (expected PKCS#8, as `openssl genpkey -algorithm ed25519` writes)');
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new SigningKeyError(`must be an Ed25519 key (got ${key.asymmetricKeyType ?? 'an unknown type'})`);
    return key;
  }
  let seed: Buffer | null = null;
  if (/^[0-9a-fA-F]{64}$/.test(value)) seed = Buffer.from(value, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(value)) seed = Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (!seed || seed.length !== SEED_BYTES) {
    throw new SigningKeyError(
      'must be an Ed25519 private key: a PKCS#8 PEM (`openssl genpkey -algorithm ed25519`) or its 32-byte seed as 64 hex characters or base64 (e.g. `openssl rand -base64 32`)',
    );
  }
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** The key id of a raw public key: the first 16 hex characters of its SHA-256. */
export function signingKeyId(rawPublicKey: Uint8Array): string {
  return createHash('sha256').update(rawPublicKey).digest('hex').slice(0, 16);
}

/** A {@link Signer} over an Ed25519 private key. */
export function createSigner(privateKey: KeyObject): Signer {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') throw new SigningKeyError('the signing key must be an Ed25519 private key');
  const { x } = createPublicKey(privateKey).export({ format: 'jwk' }) as { x: string };
  const keyId = signingKeyId(Buffer.from(x, 'base64url'));
  return {
    keyId,
    publicKey: x,
    publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x },
    sign: (data) => sign(null, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, privateKey).toString('base64url'),
  };
}

export interface LoadSignerOptions {
  /** From `SIGNING_KEY`; when absent the key is read from (or generated into) `keyFile`. */
  key?: KeyObject | undefined;
  /** `DATA_DIR/signing.key`. */
  keyFile: string;
  logger: { warn(details: object, message: string): void };
}

/**
 * The engine's signer: `SIGNING_KEY`, else `keyFile`, else a new key written to `keyFile` (mode
 * 0600, by an atomic link so two processes starting at once agree on one key) with a warning.
 */
export function loadSigner(options: LoadSignerOptions): Signer {
  if (options.key) return createSigner(options.key);
  return createSigner(loadOrCreateKeyFile(options.keyFile, signingKeyFile(options.logger)));
}

/** The signing key as it lives in `DATA_DIR/signing.key` (PKCS#8 PEM). */
function signingKeyFile(logger: LoadSignerOptions['logger']): KeyFileKind<KeyObject> {
  return {
    label: 'signing key',
    parse: parseSigningKey,
    generate: () => String(generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' })),
    created: (file) =>
      logger.warn(
        { keyFile: file },
        `SIGNING_KEY is not set: generated an Ed25519 signing key for audit checkpoints and receipts in ${file}. Back this file up and keep it away from the database's administrators (whoever holds it can sign history), and set SIGNING_KEY in production.`,
      ),
    error: (message) => new SigningKeyError(message),
  };
}

/** Reads a key file written by {@link loadSigner} (or by hand, in any `SIGNING_KEY` form); null when there is none. */
export function readSigningKeyFile(file: string): KeyObject | null {
  return readKeyFile(file, { label: 'signing key', parse: parseSigningKey, error: (message) => new SigningKeyError(message) });
}

/** A public key object from its raw base64url form; throws {@link SigningKeyError} when it is not 32 bytes. */
export function publicKeyFromRaw(publicKey: string): KeyObject {
  const raw = Buffer.from(publicKey, 'base64url');
  if (raw.length !== 32 || raw.toString('base64url') !== publicKey) throw new SigningKeyError('an Ed25519 public key is 32 bytes, base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey }, format: 'jwk' });
}

/**
 * Whether `signature` (base64url) is a valid Ed25519 signature of `data` by `publicKey` (raw,
 * base64url, or a KeyObject). False, never a throw, for a malformed key or signature.
 */
export function verifySignature(publicKey: string | KeyObject, data: string | Uint8Array, signature: string): boolean {
  try {
    const key = typeof publicKey === 'string' ? publicKeyFromRaw(publicKey) : publicKey;
    const sig = Buffer.from(signature, 'base64url');
    if (sig.length !== 64 || sig.toString('base64url') !== signature) return false;
    return verify(null, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, key, sig);
  } catch {
    return false;
  }
}

/** The JWK of a stored key, as `/.well-known/action-engine-keys` lists it. */
export function signingJwk(key: PublicSigningKey & { createdAt: Date | string }): SigningJwk {
  const createdAt = typeof key.createdAt === 'string' ? key.createdAt : key.createdAt.toISOString();
  return { kid: key.keyId, kty: 'OKP', crv: 'Ed25519', x: key.publicKey, alg: 'EdDSA', use: 'sig', createdAt };
}

/**
 * Reads keys given as a JWK set (`{ keys: [...] }`, what the keys endpoint serves) or a list of
 * JWKs; each key's id is recomputed from its `x`, so a mislabelled key cannot stand in for another.
 * Throws {@link SigningKeyError} naming what is wrong.
 */
export function publicKeysFromJwks(value: unknown): PublicSigningKey[] {
  const list = Array.isArray(value) ? value : (value as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) throw new SigningKeyError('expected a JSON Web Key set: { "keys": [ { "kty": "OKP", "crv": "Ed25519", "x": … } ] }');
  return list.map((jwk: unknown, i) => {
    const { kty, crv, x, kid } = (jwk ?? {}) as Record<string, unknown>;
    if (kty !== 'OKP' || crv !== 'Ed25519' || typeof x !== 'string') throw new SigningKeyError(`key ${i + 1} is not an Ed25519 JWK (kty "OKP", crv "Ed25519", x)`);
    publicKeyFromRaw(x);
    const keyId = signingKeyId(Buffer.from(x, 'base64url'));
    if (kid !== undefined && kid !== keyId) throw new SigningKeyError(`key ${i + 1}: kid "${String(kid).slice(0, 32)}" is not the id of its public key (${keyId})`);
    return { keyId, publicKey: x };
  });
}

const registered = new WeakMap<Signer, WeakSet<object>>();

/**
 * Records the signer's public key in `SigningKey` (INSERT … ON CONFLICT DO NOTHING), once per
 * signer and database client: later calls cost nothing. Call before the first signature that is
 * stored, so every stored signature names a listed key. A failure is not remembered: call again.
 */
export async function registerSigningKey(db: PrismaClient | Prisma.TransactionClient, signer: Signer): Promise<void> {
  const done = registered.get(signer);
  if (done?.has(db)) return;
  await db.$executeRaw`INSERT INTO "SigningKey" ("keyId", "publicKey") VALUES (${signer.keyId}, ${signer.publicKey}) ON CONFLICT ("keyId") DO NOTHING`;
  if (done) done.add(db);
  else registered.set(signer, new WeakSet([db]));
}
