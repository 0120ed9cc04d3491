import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrismaClient } from '../../src/db/prisma-client.js';
import { createApiKey } from '../../src/engine/api-keys.js';
import { receiptStatement, signReceipt, verifyReceipt } from '../../src/engine/receipts.js';
import { createSigner, publicKeysFromJwks, type SigningJwk } from '../../src/engine/signing.js';
import { startService } from '../helpers/cli.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { deleteRedisPrefix, testRedisUrl, uniqueRedisPrefix } from '../helpers/redis.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

describe('GET /.well-known/action-engine-keys', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it("serves the engine's Ed25519 public key as a JWK set, to anyone, cacheable; other methods get 405", async () => {
    const res = await fetch(`${server.url}/.well-known/action-engine-keys`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/jwk-set+json; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('public, max-age=60');
    const body = (await res.json()) as { keys: SigningJwk[] };
    expect(body.keys).toEqual([
      { kid: server.app.signer.keyId, kty: 'OKP', crv: 'Ed25519', x: server.app.signer.publicKey, alg: 'EdDSA', use: 'sig', createdAt: expect.any(String) },
    ]);
    expect(JSON.stringify(body)).not.toMatch(/"d"/);

    const head = await fetch(`${server.url}/.well-known/action-engine-keys`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await fetch(`${server.url}/.well-known/action-engine-keys`, { method: 'POST', body: '{}' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('lists every key ever recorded, older ones too (oldest first), within the 5 s the process keeps the list', async () => {
    const previous = createSigner(generateKeyPairSync('ed25519').privateKey);
    const old = { keyId: previous.keyId, publicKey: previous.publicKey };
    await server.app.db.signingKey.create({ data: { ...old, createdAt: new Date('2020-01-01T00:00:00Z') } });
    // The process keeps the list for up to 5 s.
    let kids: string[] = [];
    for (const until = Date.now() + 8000; Date.now() < until && kids.length < 2; await new Promise((r) => setTimeout(r, 250))) {
      kids = ((await (await fetch(`${server.url}/.well-known/action-engine-keys`)).json()) as { keys: SigningJwk[] }).keys.map((k) => k.kid);
    }
    expect(kids).toEqual([old.keyId, server.app.signer.keyId]);
  });

  it('a receipt signed by the engine verifies with the served key; Receipt.signature and keyId are exposed, empty for an unsigned receipt', async () => {
    const { app } = server;
    const admin = await createApiKey(app.db, { role: 'ADMIN', space: 'receipts', name: 'admin', actor: 'system:test' });
    const space = await app.db.space.findUniqueOrThrow({ where: { slug: 'receipts' } });
    const user = await app.db.user.create({ data: { spaceId: space.id, handle: 'alice' } });
    const action = await app.db.action.create({
      data: { spaceId: space.id, userId: user.id, requestedById: admin.principalId, type: 'send_email', payload: {}, payloadHash: 'e'.repeat(64), status: 'COMPLETED' },
    });
    const createdAt = new Date();
    const statement = receiptStatement({
      receiptNumber: 'RCP-20261127-SIGNED00',
      action: { id: action.id, type: action.type, revision: 1, payloadHash: action.payloadHash },
      approvals: [],
      handlerPath: [{ handler: 'send_email.smtp', outcome: 'SUCCEEDED' }],
      handler: 'send_email.smtp',
      provider: 'smtp',
      externalRef: null,
      data: { ok: true },
      createdAt,
    });
    const signed = signReceipt(app.engine.signer, statement);
    const common = { spaceId: space.id, actionId: action.id, provider: 'smtp', handler: 'send_email.smtp', data: { ok: true } };
    await app.db.receipt.create({ data: { ...common, receiptNumber: 'RCP-20261127-SIGNED00', createdAt, ...signed } });
    await app.db.receipt.create({ data: { ...common, receiptNumber: 'RCP-20261127-LEGACY00', createdAt: new Date(createdAt.getTime() - 1000) } });

    const { body } = await postGraphql(server.url, admin.key, '{ receipts(first: 5) { edges { node { receiptNumber signature keyId } } } }');
    expect(body.data.receipts.edges.map((e: { node: unknown }) => e.node)).toEqual([
      { receiptNumber: 'RCP-20261127-SIGNED00', signature: signed.signature, keyId: app.signer.keyId },
      { receiptNumber: 'RCP-20261127-LEGACY00', signature: '', keyId: '' },
    ]);

    const served = publicKeysFromJwks(await (await fetch(`${server.url}/.well-known/action-engine-keys`)).json());
    const key = served.find((k) => k.keyId === body.data.receipts.edges[0]!.node.keyId)!;
    expect(verifyReceipt(key.publicKey, statement, body.data.receipts.edges[0]!.node.signature)).toBe(true);
    expect(verifyReceipt(key.publicKey, statement.replace('"ok":true', '"ok":false'), signed.signature)).toBe(false);
  });
});

describe('the sealer in the service processes', () => {
  it('`action-engine start` seals the audit log (the bootstrap key entry) within a second with the key it serves, and stops cleanly', async () => {
    const database = await createTestDatabase();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'ae-seal-start-'));
    const redisPrefix = uniqueRedisPrefix('seal');
    const db = createPrismaClient({ connection: database.connection, poolMax: 1 });
    const service = await startService(['start'], {
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: redisPrefix,
      REDIS_AUTOSTART: 'false',
      AUDIT_SEAL_INTERVAL_MS: '100',
    });
    let code: number | null = null;
    try {
      const entry = await db.auditEntry.findFirstOrThrow({ where: { event: 'api_key.created' } });
      let checkpoint = null;
      for (const until = Date.now() + 5000; !checkpoint && Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
        checkpoint = await db.auditCheckpoint.findFirst({ where: { entries: { contains: `${entry.id} ${entry.hash}` } } });
      }
      expect(checkpoint, 'no checkpoint sealed the bootstrap key entry').not.toBeNull();
      expect(checkpoint!.createdAt.getTime() - entry.createdAt.getTime()).toBeLessThan(1000);
      const served = publicKeysFromJwks(await (await fetch(`${service.url}/.well-known/action-engine-keys`)).json());
      expect(served.map((k) => k.keyId)).toContain(checkpoint!.keyId);
      expect(service.logs.some((l) => String(l.msg).includes('SIGNING_KEY is not set: generated'))).toBe(true);
    } finally {
      code = await service.stop('SIGTERM');
      await db.$disconnect();
      await database.drop();
      await deleteRedisPrefix(redisPrefix);
      await rm(dataDir, { recursive: true, force: true });
    }
    expect(code).toBe(0);
  }, 60_000);
});
