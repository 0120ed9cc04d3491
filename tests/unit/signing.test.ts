import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { signCheckpoint, verifyCheckpointSignature } from '../../src/engine/audit-checkpoints.js';
import { receiptStatement, signReceipt, verifyReceipt, type ReceiptStatementInput } from '../../src/engine/receipts.js';
import {
  createSigner,
  loadSigner,
  parseSigningKey,
  publicKeysFromJwks,
  signingJwk,
  signingKeyId,
  SigningKeyError,
  verifySignature,
} from '../../src/engine/signing.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ae-signing-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const keyPair = () => generateKeyPairSync('ed25519');

describe('SIGNING_KEY', () => {
  it('accepts a PKCS#8 PEM (with real or written-out line breaks) or the 32-byte seed as hex, base64 or base64url: all the same key', () => {
    const { privateKey } = keyPair();
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const seed = Buffer.from((privateKey.export({ format: 'jwk' }) as { d: string }).d, 'base64url');
    const expected = createSigner(privateKey).keyId;
    for (const form of [pem, pem.replace(/\n/g, '\\n'), seed.toString('hex'), seed.toString('base64'), seed.toString('base64url')]) {
      expect(createSigner(parseSigningKey(form)).keyId, form.slice(0, 20)).toBe(expected);
    }
  });

  it('refuses anything else, and another kind of key', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    for (const bad of ['', 'secret', randomBytes(16).toString('hex'), randomBytes(33).toString('base64'), '-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----']) {
      expect(() => parseSigningKey(bad), bad).toThrow(SigningKeyError);
    }
    expect(() => parseSigningKey(rsa)).toThrow(/must be an Ed25519 key/);
  });

  it('fails at start with a config error naming SIGNING_KEY and the forms, without echoing the value', () => {
    const value = 'my-signing-passphrase';
    let caught: unknown;
    try {
      loadConfig({ SIGNING_KEY: value });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toMatch(/SIGNING_KEY: must be an Ed25519 private key: a PKCS#8 PEM/);
    expect((caught as Error).message).not.toContain(value);
    const seed = randomBytes(32).toString('base64url');
    expect(createSigner(loadConfig({ SIGNING_KEY: seed }).signingKey!).keyId).toBe(createSigner(parseSigningKey(seed)).keyId);
    expect(loadConfig({ AUDIT_SEAL_INTERVAL_MS: '1000' }).auditSealIntervalMs).toBe(1000);
    expect(() => loadConfig({ AUDIT_SEAL_INTERVAL_MS: '0' })).toThrow(/AUDIT_SEAL_INTERVAL_MS/);
  });
});

describe('the signer', () => {
  it('names its key by the first 16 hex of SHA-256 of the raw public key, and publishes it as a JWK', () => {
    const { privateKey, publicKey } = keyPair();
    const signer = createSigner(privateKey);
    const raw = Buffer.from((publicKey.export({ format: 'jwk' }) as { x: string }).x, 'base64url');
    expect(raw).toHaveLength(32);
    expect(signer.keyId).toBe(signingKeyId(raw));
    expect(signer.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(signer.publicKey).toBe(raw.toString('base64url'));
    expect(signer.publicKeyJwk).toEqual({ kty: 'OKP', crv: 'Ed25519', x: signer.publicKey });
    expect(signingJwk({ ...signer, createdAt: new Date('2026-11-27T00:00:00Z') })).toEqual({
      kid: signer.keyId, kty: 'OKP', crv: 'Ed25519', x: signer.publicKey, alg: 'EdDSA', use: 'sig', createdAt: '2026-11-27T00:00:00.000Z',
    });
  });

  it('signatures verify with the public key only, and not after any change to the data, the signature or the key', () => {
    const signer = createSigner(keyPair().privateKey);
    const other = createSigner(keyPair().privateKey);
    const signature = signer.sign('hello');
    expect(signature).toMatch(/^[A-Za-z0-9_-]{86}$/);
    expect(verifySignature(signer.publicKey, 'hello', signature)).toBe(true);
    expect(verifySignature(signer.publicKey, Buffer.from('hello'), signature)).toBe(true);
    expect(verifySignature(signer.publicKey, 'hellO', signature)).toBe(false);
    expect(verifySignature(other.publicKey, 'hello', signature)).toBe(false);
    const flipped = Buffer.from(signature, 'base64url');
    flipped[10]! ^= 1;
    expect(verifySignature(signer.publicKey, 'hello', flipped.toString('base64url'))).toBe(false);
    // Malformed inputs are a "no", never a throw.
    expect(verifySignature(signer.publicKey, 'hello', 'not a signature')).toBe(false);
    expect(verifySignature('short', 'hello', signature)).toBe(false);
  });

  it('DATA_DIR/signing.key: generated once with mode 0600 and a warning, then reused; a second loader reads the same key', async () => {
    const file = path.join(dir, 'nested', 'signing.key');
    const warnings: string[] = [];
    const logger = { warn: (_d: object, msg: string) => warnings.push(msg) };
    const signers = [loadSigner({ keyFile: file, logger }), loadSigner({ keyFile: file, logger })];
    expect(signers[1]!.keyId).toBe(signers[0]!.keyId);
    expect(warnings).toEqual([expect.stringContaining('SIGNING_KEY is not set: generated an Ed25519 signing key')]);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    // SIGNING_KEY wins over the file, and a key given never writes one.
    const given = keyPair().privateKey;
    const other = path.join(dir, 'unused.key');
    expect(loadSigner({ key: given, keyFile: other, logger }).keyId).toBe(createSigner(given).keyId);
    await expect(stat(other)).rejects.toThrow(/ENOENT/);
    await writeFile(other, 'garbage');
    expect(() => loadSigner({ keyFile: other, logger })).toThrow(/the signing key file .*unused.key must be an Ed25519 private key/);
  });

  it('reads trusted keys from a JWK set, recomputing each key id; refuses a mislabelled or non-Ed25519 key', () => {
    const signer = createSigner(keyPair().privateKey);
    const jwk = signingJwk({ ...signer, createdAt: new Date() });
    expect(publicKeysFromJwks({ keys: [jwk] })).toEqual([{ keyId: signer.keyId, publicKey: signer.publicKey }]);
    expect(publicKeysFromJwks([{ kty: 'OKP', crv: 'Ed25519', x: signer.publicKey }])).toEqual([{ keyId: signer.keyId, publicKey: signer.publicKey }]);
    expect(() => publicKeysFromJwks({ keys: [{ ...jwk, kid: '0000000000000000' }] })).toThrow(/is not the id of its public key/);
    expect(() => publicKeysFromJwks({ keys: [{ kty: 'RSA', n: 'x', e: 'AQAB' }] })).toThrow(/not an Ed25519 JWK/);
    expect(() => publicKeysFromJwks({ nope: 1 })).toThrow(/JSON Web Key set/);
  });
});

describe('receipts', () => {
  const input: ReceiptStatementInput = {
    receiptNumber: 'RCP-20261127-ABCDEFGH',
    action: { id: '5F0C2A9E-3B1D-4E6F-8A7B-9C0D1E2F3A4B', type: 'send_email', revision: 1, payloadHash: 'e'.repeat(64) },
    approvals: [{ decidedBy: 'b9a3c1f0-1111-4222-8333-444455556666', decidedAt: new Date('2026-11-27T10:00:00.000Z') }],
    handlerPath: [
      { handler: 'send_email.api', outcome: 'SKIPPED' },
      { handler: 'send_email.smtp', outcome: 'SUCCEEDED' },
    ],
    handler: 'send_email.smtp',
    provider: 'smtp',
    externalRef: '<id@example.com>',
    data: { to: 'a@example.com', accepted: ['a@example.com'] },
    createdAt: new Date('2026-11-27T10:00:01.234Z'),
  };

  it('the statement is canonical JSON of what the receipt binds: same values, same text, whatever the key order or date form', () => {
    const statement = receiptStatement(input);
    expect(JSON.parse(statement)).toEqual({
      receiptNumber: 'RCP-20261127-ABCDEFGH',
      action: { id: '5f0c2a9e-3b1d-4e6f-8a7b-9c0d1e2f3a4b', type: 'send_email', revision: 1, payloadHash: 'e'.repeat(64) },
      approvals: [{ decidedBy: 'b9a3c1f0-1111-4222-8333-444455556666', decidedAt: '2026-11-27T10:00:00.000Z' }],
      handlerPath: [
        { handler: 'send_email.api', outcome: 'SKIPPED' },
        { handler: 'send_email.smtp', outcome: 'SUCCEEDED' },
      ],
      handler: 'send_email.smtp',
      provider: 'smtp',
      externalRef: '<id@example.com>',
      data: { accepted: ['a@example.com'], to: 'a@example.com' },
      createdAt: '2026-11-27T10:00:01.234Z',
    });
    expect(
      receiptStatement({ ...input, data: { accepted: ['a@example.com'], to: 'a@example.com' }, createdAt: '2026-11-27T10:00:01.234Z', approvals: [{ ...input.approvals[0]!, decidedAt: '2026-11-27T10:00:00Z' }] }),
    ).toBe(statement);
  });

  it('a signature verifies with the public key and fails when anything the receipt binds changes', () => {
    const signer = createSigner(keyPair().privateKey);
    const statement = receiptStatement(input);
    const { signature, keyId } = signReceipt(signer, statement);
    expect(keyId).toBe(signer.keyId);
    expect(verifyReceipt(signer.publicKey, statement, signature)).toBe(true);
    const changes: Array<Partial<ReceiptStatementInput>> = [
      { receiptNumber: 'RCP-20261127-ABCDEFGX' },
      { action: { ...input.action, revision: 2 } },
      { action: { ...input.action, payloadHash: 'f'.repeat(64) } },
      { approvals: [] },
      { handlerPath: input.handlerPath.slice(1) },
      { provider: 'other' },
      { externalRef: null },
      { data: { to: 'b@example.com' } },
      { createdAt: new Date('2026-11-27T10:00:01.235Z') },
    ];
    for (const change of changes) expect(verifyReceipt(signer.publicKey, receiptStatement({ ...input, ...change }), signature), JSON.stringify(change)).toBe(false);
  });

  it('a receipt signature and a checkpoint signature can never stand in for each other', () => {
    const signer = createSigner(keyPair().privateKey);
    const hash = 'd'.repeat(64);
    const checkpoint = signCheckpoint(signer, hash);
    expect(verifyCheckpointSignature(signer.publicKey, hash, checkpoint.signature)).toBe(true);
    expect(verifyReceipt(signer.publicKey, hash, checkpoint.signature)).toBe(false);
    const receipt = signReceipt(signer, hash);
    expect(verifyCheckpointSignature(signer.publicKey, hash, receipt.signature)).toBe(false);
    expect(verifySignature(signer.publicKey, hash, receipt.signature)).toBe(false);
  });
});
