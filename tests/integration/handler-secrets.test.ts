import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { defineActionType } from '../../src/engine/action-types.js';
import { createApiKey } from '../../src/engine/api-keys.js';
import { openHandlerSecrets } from '../../src/engine/execution.js';
import { createSecretsBox } from '../../src/engine/secrets.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { createLogger } from '../../src/logger.js';
import { createApiServer, type ApiServer } from '../../src/server.js';
import { startWorker, type ActionWorker } from '../../src/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { deleteRedisPrefix, testRedisUrl, uniqueRedisPrefix } from '../helpers/redis.js';
import { postGraphql } from '../helpers/http.js';

// Distinctive values, searched for in every byte the service stores, answers and logs.
const SECRET = `sk_live_${randomBytes(12).toString('hex')}`;
const SECRET_2 = `whsec_${randomBytes(12).toString('hex')}`;

const received: Array<{ secrets: unknown; settings: unknown }> = [];
const probeType = defineActionType({ type: 'secret_probe', description: 'test', payload: z.strictObject({ provider: z.string() }), reversible: false });
// Configured only with a configuration (the default when a handler declares settings or secrets).
const probeHandler = defineHandler({
  name: 'probe.api',
  kind: 'api',
  types: [probeType],
  repeat: 'provider',
  settings: z.object({ url: z.url() }),
  secrets: z.object({ apiKey: z.string().min(1), signingKey: z.string().min(1) }).partial(),
  async execute(ctx) {
    received.push({ secrets: ctx.secrets, settings: ctx.settings });
    return { status: 'completed', provider: 'probe', data: { ok: true } };
  },
});

const UPSERT = `mutation Upsert($input: HandlerConfigInput!) {
  upsertHandlerConfig(input: $input) {
    config { id handler provider enabled settings hasSecrets secretNames }
    errors { code message field }
  }
}`;
const CONFIGS = `{ handlerConfigs { handler provider enabled settings hasSecrets secretNames } }`;
const AUDIT = `query Audit($filter: AuditFilter) { auditLog(filter: $filter, first: 100) { edges { node { event actor data } } } }`;

let database: TestDatabase;
let dataDir: string;
let redisPrefix: string;
let app: App;
let server: ApiServer;
let worker: ActionWorker;
let url: string;
const logLines: string[] = [];
let admin: string;
let agent: string;

beforeAll(async () => {
  database = await createTestDatabase();
  dataDir = await mkdtemp(path.join(tmpdir(), 'ae-secrets-it-'));
  redisPrefix = uniqueRedisPrefix('secrets');
  const config = loadConfig({
    PORT: '0',
    DATA_DIR: dataDir,
    DATABASE_URL: database.url,
    REDIS_URL: testRedisUrl,
    REDIS_PREFIX: redisPrefix,
    REDIS_AUTOSTART: 'false',
    LOG_LEVEL: 'trace',
    SHUTDOWN_TIMEOUT_MS: '2000',
    RECONCILE_SECONDS: '3600',
  });
  // Everything the service logs at the most verbose level, captured.
  const logger = createLogger({ level: config.logLevel }, { write: (line: string) => void logLines.push(line) });
  app = await createApp(config, logger, {
    migrate: false,
    extraHandlers: [probeHandler],
    extraActionTypes: [probeType],
  });
  worker = startWorker(app);
  server = createApiServer(app);
  url = `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`;
  admin = (await createApiKey(app.db, { role: 'ADMIN', space: 'vault' })).key;
  agent = (await createApiKey(app.db, { role: 'AGENT', space: 'vault', user: 'sam' })).key;
});
afterAll(async () => {
  await worker?.close();
  await server?.close();
  await app?.close();
  await database?.drop();
  await deleteRedisPrefix(redisPrefix);
  await rm(dataDir, { recursive: true, force: true });
});

async function storedRows() {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    return (await client.query('SELECT * FROM "HandlerConfig" ORDER BY "createdAt"')).rows as Array<Record<string, unknown>>;
  } finally {
    await client.end();
  }
}

async function actionStatus(id: string) {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    return (await client.query('SELECT status, error FROM "Action" WHERE id = $1', [id])).rows[0] as { status: string; error: string | null };
  } finally {
    await client.end();
  }
}

async function runProbe(): Promise<string> {
  const created = await postGraphql(
    url,
    agent,
    `mutation { createAction(input: { type: "secret_probe", payload: { provider: "acme" } }) { action { id status } errors { code message } } }`,
    {},
  );
  expect(created.body.data.createAction.errors).toEqual([]);
  const id = created.body.data.createAction.action.id as string;
  const until = Date.now() + 10_000;
  for (;;) {
    const { status, error } = await actionStatus(id);
    if (status === 'COMPLETED' || status === 'FAILED') {
      expect(error).toBeNull();
      return id;
    }
    if (Date.now() > until) throw new Error(`action ${id} still ${status}`);
    await sleep(50);
  }
}

describe('handler secrets (upsertHandlerConfig)', () => {
  it('stores secrets encrypted, never returns them, hands them decrypted to the handler, and audits before/after without them', async () => {
    const saved = await postGraphql(
      url,
      admin,
      UPSERT,
      {
        input: { handler: 'probe.api', provider: 'acme', settings: { url: 'https://acme.test/api' }, secrets: { apiKey: SECRET, signingKey: SECRET_2 } },
      },
    );
    expect(saved.body.data.upsertHandlerConfig).toMatchObject({
      errors: [],
      config: { handler: 'probe.api', provider: 'acme', enabled: true, settings: { url: 'https://acme.test/api' }, hasSecrets: true, secretNames: ['apiKey', 'signingKey'] },
    });
    expect(saved.text).not.toContain(SECRET);

    // At rest: AES-GCM text with a version and key id, no plaintext in any column.
    const [row] = await storedRows();
    expect(row!.secretsCiphertext).toMatch(/^ae-secrets:v1:[0-9a-f]{16}:/);
    expect(JSON.stringify(row)).not.toContain(SECRET);
    expect(JSON.stringify(row)).not.toContain(SECRET_2);

    const listed = await postGraphql(url, admin, CONFIGS, {});
    expect(listed.body.data.handlerConfigs).toEqual([
      { handler: 'probe.api', provider: 'acme', enabled: true, settings: { url: 'https://acme.test/api' }, hasSecrets: true, secretNames: ['apiKey', 'signingKey'] },
    ]);
    expect(listed.text).not.toContain(SECRET);
    expect((await postGraphql(url, agent, CONFIGS, {})).body.errors?.[0]?.message).toBeTruthy();

    // The handler gets them decrypted at execution time.
    received.length = 0;
    await runProbe();
    expect(received).toEqual([{ secrets: { apiKey: SECRET, signingKey: SECRET_2 }, settings: { url: 'https://acme.test/api' } }]);

    // Omitting secrets keeps them (a settings-only change).
    const settingsOnly = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'acme', settings: { url: 'https://acme.test/v2' } } });
    expect(settingsOnly.body.data.upsertHandlerConfig.config).toMatchObject({ hasSecrets: true, secretNames: ['apiKey', 'signingKey'] });
    received.length = 0;
    await runProbe();
    expect(received[0]!.secrets).toEqual({ apiKey: SECRET, signingKey: SECRET_2 });

    // secrets: null removes them.
    const removed = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'acme', secrets: null } });
    expect(removed.body.data.upsertHandlerConfig.config).toMatchObject({ hasSecrets: false, secretNames: [], settings: { url: 'https://acme.test/v2' } });
    expect((await storedRows())[0]!.secretsCiphertext).toBeNull();
    received.length = 0;
    await runProbe();
    // None stored: the handler's schema reads them from {} (all optional here), so it gets none.
    expect(received[0]!.secrets).toEqual({});

    const audit = await postGraphql(url, admin, AUDIT, { filter: { event: ['handler_config.upserted'] } });
    expect(audit.text).not.toContain(SECRET);
    expect(audit.text).not.toContain(SECRET_2);
    const entries = audit.body.data.auditLog.edges.map((e: any) => e.node);
    expect(entries.map((e: any) => e.data)).toEqual([
      {
        configKey: expect.stringMatching(/:probe\.api:acme$/),
        handler: 'probe.api',
        provider: 'acme',
        before: null,
        after: { settings: { url: 'https://acme.test/api' }, enabled: true, hasSecrets: true, secretNames: ['apiKey', 'signingKey'] },
        secretsChanged: true,
      },
      expect.objectContaining({
        before: expect.objectContaining({ settings: { url: 'https://acme.test/api' } }),
        after: { settings: { url: 'https://acme.test/v2' }, enabled: true, hasSecrets: true, secretNames: ['apiKey', 'signingKey'] },
        secretsChanged: false,
      }),
      expect.objectContaining({
        before: expect.objectContaining({ hasSecrets: true }),
        after: { settings: { url: 'https://acme.test/v2' }, enabled: true, hasSecrets: false, secretNames: [] },
        secretsChanged: true,
      }),
    ]);
    expect(entries.every((e: any) => e.actor !== 'system')).toBe(true);
  });

  it('refuses secret-looking settings at any depth with INVALID_INPUT naming the field, and changes nothing', async () => {
    const before = await storedRows();
    for (const [settings, field] of [
      [{ url: 'https://x', password: SECRET }, ['input', 'settings', 'password']],
      [{ auth: { headers: [{ 'X-Api-Key': SECRET }] } }, ['input', 'settings', 'auth', 'headers', '0', 'X-Api-Key']],
      [{ oauth: { client_secret: SECRET } }, ['input', 'settings', 'oauth', 'client_secret']],
    ] as const) {
      const out = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'acme', settings } });
      expect(out.body.data.upsertHandlerConfig.config).toBeNull();
      expect(out.body.data.upsertHandlerConfig.errors).toEqual([
        { code: 'INVALID_INPUT', field, message: expect.stringMatching(/looks like a secret: .*put it in secrets/) },
      ]);
      expect(out.text).not.toContain(SECRET);
    }
    for (const secrets of [[SECRET], SECRET, 42]) {
      const out = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'acme', secrets } });
      expect(out.body.data.upsertHandlerConfig.errors).toEqual([
        { code: 'INVALID_INPUT', field: ['input', 'secrets'], message: expect.stringMatching(/secrets must be a JSON object/) },
      ]);
      expect(out.text).not.toContain(SECRET);
    }
    const nest = (levels: number) => {
      let deep: unknown = SECRET;
      for (let i = 0; i < levels; i += 1) deep = { k: deep };
      return deep;
    };
    // Deeper than secrets may be (20) but within what the JSON scalar takes (32): the engine refuses.
    const tooDeep = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'acme', secrets: { apiKey: nest(25) } } });
    expect(tooDeep.body.data.upsertHandlerConfig.errors).toEqual([
      { code: 'INVALID_INPUT', field: ['input', 'secrets'], message: 'secrets nest deeper than 20 levels' },
    ]);
    expect(tooDeep.text).not.toContain(SECRET);
    // Deeper than any JSON argument may be: refused at the edge, still without echoing the secret.
    const farTooDeep = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'acme', secrets: { apiKey: nest(200) } } });
    expect(farTooDeep.body.data?.upsertHandlerConfig ?? null).toBeNull();
    expect(farTooDeep.body.errors?.[0]?.message).toMatch(/deep|nest/i);
    expect(farTooDeep.text).not.toContain(SECRET);
    const badProvider = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'x'.repeat(101) } });
    expect(badProvider.body.data.upsertHandlerConfig.errors).toEqual([
      { code: 'INVALID_INPUT', field: ['input', 'provider'], message: expect.stringMatching(/provider must be 1 to 100 printable characters/) },
    ]);
    expect(await storedRows()).toEqual(before);
  });

  it('refuses settings and secrets that do not fit what the handler declares, naming the field (never a secret), and stores nothing', async () => {
    const before = await storedRows();
    const badUrl = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'schema-check', settings: { url: 'not a url' } } });
    expect(badUrl.body.data.upsertHandlerConfig.config).toBeNull();
    expect(badUrl.body.data.upsertHandlerConfig.errors).toEqual([
      { code: 'INVALID_INPUT', field: ['input', 'settings', 'url'], message: expect.stringMatching(/^settings\.url does not fit what the handler needs: /) },
    ]);
    const missingUrl = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'schema-check', settings: {} } });
    expect(missingUrl.body.data.upsertHandlerConfig.errors).toEqual([
      { code: 'INVALID_INPUT', field: ['input', 'settings', 'url'], message: expect.stringMatching(/^settings\.url does not fit/) },
    ]);
    const badSecret = await postGraphql(
      url,
      admin,
      UPSERT,
      {
        input: { handler: 'probe.api', provider: 'schema-check', settings: { url: 'https://acme.test' }, secrets: { apiKey: 42, signingKey: SECRET } },
      },
    );
    expect(badSecret.body.data.upsertHandlerConfig.errors).toEqual([
      { code: 'INVALID_INPUT', field: ['input', 'secrets', 'apiKey'], message: 'secrets.apiKey does not fit what the handler needs: must be string' },
    ]);
    expect(badSecret.text).not.toContain(SECRET);
    expect(await storedRows()).toEqual(before);
    expect(logLines.join('\n')).not.toContain(SECRET);
  });

  it('a secret saved in settings before secrets existed is shown and audited redacted, never in clear', async () => {
    const spaceId = (await app.db.space.findUniqueOrThrow({ where: { slug: 'vault' } })).id;
    // A row as the old upsertHandlerConfig could store it: the credential among the settings.
    await app.db.handlerConfig.create({
      data: { configKey: `${spaceId}:probe.api:legacy`, spaceId, handler: 'probe.api', provider: 'legacy', settings: { baseUrl: 'https://legacy.example', apiKey: SECRET_2, auth: `Bearer ${SECRET_2}` } },
    });
    const listed = await postGraphql(url, admin, CONFIGS, {});
    expect(listed.text).not.toContain(SECRET_2);
    const legacy = listed.body.data.handlerConfigs.find((c: { provider: string }) => c.provider === 'legacy');
    expect(legacy.settings).toEqual({ baseUrl: 'https://legacy.example', apiKey: expect.stringMatching(/redacted/), auth: expect.stringMatching(/redacted/) });
    // Changing only `enabled` keeps the stored settings; the audit's before/after show them redacted.
    const updated = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'legacy', enabled: false } });
    expect(updated.body.data.upsertHandlerConfig.errors).toEqual([]);
    expect(updated.text).not.toContain(SECRET_2);
    const audit = await postGraphql(url, admin, AUDIT, { filter: { event: ['handler_config.upserted'] } });
    const entry = audit.body.data.auditLog.edges.map((e: any) => e.node).find((n: any) => n.data.provider === 'legacy');
    expect(entry.data.before.settings.apiKey).toMatch(/redacted/);
    expect(entry.data.after).toMatchObject({ enabled: false, settings: { baseUrl: 'https://legacy.example' } });
    expect(audit.text).not.toContain(SECRET_2);
  });

  it('cannot be opened with another SECRETS_KEY: the handler fails with a clear, permanent error naming the keys', async () => {
    await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'other', secrets: { apiKey: SECRET } } });
    const row = (await app.db.handlerConfig.findMany({ where: { provider: 'other' } }))[0]!;
    expect(openHandlerSecrets(app.engine, row)).toEqual({ apiKey: SECRET });
    const otherKey = createSecretsBox({ key: randomBytes(32), keyFile: path.join(dataDir, 'none'), logger: { warn: () => undefined } });
    let caught: unknown;
    try {
      openHandlerSecrets({ secrets: otherKey }, row);
    } catch (error) {
      caught = error;
    }
    expect((caught as Error).name).toBe('PermanentHandlerError');
    expect((caught as Error).message).toMatch(/encrypted with key [0-9a-f]{16}, but the configured key is [0-9a-f]{16}: set SECRETS_KEY/);
    expect((caught as Error).message).not.toContain(SECRET);
  });

  it('never logs a secret, even at LOG_LEVEL=trace and on a request GraphQL refuses', async () => {
    // An unknown input field: graphql-js echoes the whole input (secrets included) to the caller.
    const refused = await postGraphql(url, admin, UPSERT, { input: { handler: 'probe.api', provider: 'acme', secrets: { apiKey: SECRET }, bogus: 1 } });
    expect(refused.body.errors?.length).toBeGreaterThan(0);
    await postGraphql(url, admin, UPSERT, { input: { handler: 'no.such.handler', provider: 'acme', secrets: { apiKey: SECRET } } });
    await sleep(100);
    const log = logLines.join('');
    expect(logLines.length).toBeGreaterThan(5);
    expect(log).toMatch(/"level":10|"level":20/); // trace/debug lines really were captured
    expect(log).toContain('generated a key for handler secrets');
    expect(log).not.toContain(SECRET);
    expect(log).not.toContain(SECRET_2);
  });
});
