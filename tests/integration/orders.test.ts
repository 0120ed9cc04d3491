import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { SMTPServer } from 'smtp-server';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { graphqlData } from '../helpers/http.js';
import { waitFor, waitForActionStatus } from '../helpers/wait.js';

// Real peers, started here on free ports: a provider's HTTP server (ordering API, webhooks) and
// an SMTP server. The engine runs in process with its worker, over its own database and Redis.

interface Received {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}
type Responder = (req: Received) => { status: number; body?: unknown } | Promise<{ status: number; body?: unknown }>;

/** A provider: requests under `/<name>/…` go to the responder registered for `name`, and are recorded. */
class Provider {
  readonly received: Received[] = [];
  readonly #routes = new Map<string, Responder>();
  #server!: Server;
  url = '';

  async start(): Promise<void> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const got: Received = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
    this.received.push(got);
    const name = got.path.split('/')[1] ?? '';
    const route = this.#routes.get(name);
    const answer = route ? await route(got) : { status: 404, body: { error: 'no such route' } };
    const text = answer.body === undefined ? '' : JSON.stringify(answer.body);
    res.writeHead(answer.status, { 'content-type': 'application/json' });
    res.end(text);
  }

  route(name: string, responder: Responder): string {
    this.#routes.set(name, responder);
    return `${this.url}/${name}`;
  }

  to(name: string): Received[] {
    return this.received.filter((r) => r.path.split('/')[1] === name);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

interface Mail {
  from: string;
  to: string[];
  raw: string;
}
const mails: Mail[] = [];
let smtp: SMTPServer;
let smtpPort: number;

const provider = new Provider();
let t: TestServer;
let admin: string;
let agent: string;
let approver: string;
let userId: string;

const whsec = () => `whsec_${randomBytes(24).toString('base64')}`;

beforeAll(async () => {
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  smtpPort = (smtp.server.address() as AddressInfo).port;
  await provider.start();

  t = await startTestServer({
    env: { RETRY_BACKOFF_MS: '20', RECONCILE_SECONDS: '3600', SMTP_URL: `smtp://127.0.0.1:${smtpPort}`, MAIL_FROM: 'engine@example.test' },
    worker: true,
  });
  const a = await createApiKey(t.app.db, { role: 'ADMIN', space: 'orders' });
  admin = a.key;
  agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'orders', user: 'pat', email: 'pat@example.com' })).key;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'orders', user: 'pat' })).key;
  userId = (await t.app.db.user.findFirstOrThrow({ where: { handle: 'pat' } })).id;
  // Orders here run without the default approval (it is tested elsewhere); purchases and payments keep theirs.
  await graphqlData(t.url, admin, `mutation { upsertSafetyRule(input: { actionType: "order", kind: REQUIRES_APPROVAL, enabled: false }) { errors { code } } }`, {});
});
afterAll(async () => {
  await t?.close();
  await provider.close();
  await new Promise<void>((resolve) => smtp?.close(() => resolve()));
});

async function configure(handler: string, providerName: string, settings: Record<string, unknown>, secrets?: Record<string, unknown>, key = admin, server = t) {
  const out = await graphqlData(
    server.url,
    key,
    `mutation($input: HandlerConfigInput!) { upsertHandlerConfig(input: $input) { config { handler provider } errors { code message } } }`,
    { input: { handler, provider: providerName, settings, ...(secrets ? { secrets } : {}) } },
  );
  expect(out.upsertHandlerConfig.errors).toEqual([]);
}

async function create(type: string, payload: Record<string, unknown>, key = agent, server = t) {
  const out = (
    await graphqlData(
      server.url,
      key,
      `mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message } } }`,
      { input: { type, payload } },
    )
  ).createAction;
  expect(out.errors).toEqual([]);
  return out.action as { id: string; status: string };
}

const orderPayload = (providerName: string) => ({
  provider: providerName,
  items: [
    { name: 'Latte', price: 3.5, quantity: 2, modifications: ['oat milk'] },
    { name: 'Croissant', price: 2.2 },
  ],
  pickup_time: '12:30',
  customer_name: 'Ada Lovelace',
  customer_phone: '+49 30 1234567',
  special_instructions: 'Extra napkins, please',
});

/** The action as the API shows it: executions, status updates, audit log, receipts. */
async function look(id: string, key = admin, server = t) {
  const out = await graphqlData(
    server.url,
    key,
    `query($id: ID!) { action(id: $id) {
      status error
      executions { handler status error externalRef attempt }
      statusUpdates { seq status message }
      auditLog { event data }
      receipts { handler provider externalRef data }
    } }`,
    { id },
  );
  return out.action as {
    status: string;
    error: string | null;
    executions: Array<{ handler: string; status: string; error: string | null; externalRef: string | null; attempt: number }>;
    statusUpdates: Array<{ seq: number; status: string; message: string | null }>;
    auditLog: Array<{ event: string; data: any }>;
    receipts: Array<{ handler: string; provider: string; externalRef: string | null; data: any }>;
  };
}

/** A signed callback as the provider would send it. */
function signedCallback(callbackUrl: string, secret: string, body: unknown, msgId = `msg_${randomBytes(8).toString('hex')}`) {
  const text = JSON.stringify(body);
  const at = new Date();
  const url = new URL(callbackUrl);
  return {
    path: url.pathname,
    init: {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'webhook-id': msgId,
        'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
        'webhook-signature': new Webhook(secret).sign(msgId, at, text),
      },
      body: text,
    },
  };
}

/** Posts to the engine's own server (BASE_URL in tests names port 0, so only the path of the callback URL is used). */
function postToEngine(path: string, init: RequestInit) {
  return fetch(`${t.url}${path}`, init);
}

/** The text of a raw message, quoted-printable decoded. */
function decodedMail(raw: string): string {
  const joined = raw.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < joined.length; i++) {
    if (joined[i] === '=' && /^[0-9A-F]{2}$/.test(joined.slice(i + 1, i + 3))) {
      bytes.push(parseInt(joined.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(...Buffer.from(joined[i]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

describe('order.api', () => {
  it('places the order through the API: the Idempotency-Key is the action\'s, the reference lands in the receipt', async () => {
    const apiKey = `key-${randomBytes(8).toString('hex')}`;
    const base = provider.route('cafe-api', (req) => {
      if (req.method === 'POST' && req.path === '/cafe-api/orders') return { status: 201, body: { reference: 'CAFE-1001', eta: '12:25' } };
      return { status: 404 };
    });
    await configure('order.api', 'cafe-api', { baseUrl: base }, { apiKey });

    const { id } = await create('order', orderPayload('cafe-api'));
    await waitForActionStatus(t.app.db, id, ['COMPLETED']);

    const [sent, ...more] = provider.to('cafe-api');
    expect(more).toEqual([]);
    expect(sent!.headers['idempotency-key']).toBe(`action:${id}`);
    expect(sent!.headers.authorization).toBe(`Bearer ${apiKey}`);
    expect(JSON.parse(sent!.body)).toEqual({
      actionId: id,
      items: [
        { name: 'Latte', price: 3.5, quantity: 2, modifications: ['oat milk'] },
        { name: 'Croissant', price: 2.2, quantity: 1 },
      ],
      pickup_time: '12:30',
      customer_name: 'Ada Lovelace',
      customer_phone: '+49 30 1234567',
      special_instructions: 'Extra napkins, please',
    });

    const seen = await look(id);
    expect(seen.receipts).toEqual([{ handler: 'order.api', provider: 'cafe-api', externalRef: 'CAFE-1001', data: { reference: 'CAFE-1001', eta: '12:25', via: 'api' } }]);
    expect(seen.executions).toEqual([expect.objectContaining({ handler: 'order.api', status: 'SUCCEEDED', externalRef: 'CAFE-1001' })]);
    expect(seen.statusUpdates.map((u) => u.message)).toContain('Placing order with cafe-api…');
    // The API key is a secret: never in a status message, an error or the audit trail.
    expect(JSON.stringify(seen)).not.toContain(apiKey);
  });

  it('5xx twice, then 200: retried with backoff under the same Idempotency-Key, and completes', async () => {
    let calls = 0;
    const base = provider.route('busy-cafe', () => (++calls <= 2 ? { status: 503, body: { error: 'kitchen overloaded' } } : { status: 200, body: { reference: 'BUSY-7' } }));
    await configure('order.api', 'busy-cafe', { baseUrl: base }, { apiKey: 'k' });

    const { id } = await create('order', orderPayload('busy-cafe'));
    await waitForActionStatus(t.app.db, id, ['COMPLETED', 'FAILED']);

    const sent = provider.to('busy-cafe');
    expect(sent).toHaveLength(3);
    expect(new Set(sent.map((r) => r.headers['idempotency-key']))).toEqual(new Set([`action:${id}`]));
    const seen = await look(id);
    expect(seen.status).toBe('COMPLETED');
    expect(seen.executions.map((e) => [e.handler, e.status, e.attempt])).toEqual([
      ['order.api', 'FAILED', 1],
      ['order.api', 'FAILED', 2],
      ['order.api', 'SUCCEEDED', 3],
    ]);
    expect(seen.executions[0]!.error).toBe("busy-cafe's ordering API answered 503: kitchen overloaded");
    expect(seen.statusUpdates.map((u) => u.message)).toContain("Attempt 1 of 3 failed: busy-cafe's ordering API answered 503: kitchen overloaded; retrying");
    expect(seen.receipts[0]).toMatchObject({ provider: 'busy-cafe', externalRef: 'BUSY-7' });
  });

  it('a provider that never stops answering 5xx: the action fails after 3 attempts, never falls through to a second ordering route', async () => {
    const base = provider.route('down-cafe', () => ({ status: 500 }));
    const hook = provider.route('down-cafe-hook', () => ({ status: 200, body: { reference: 'SHOULD-NOT' } }));
    await configure('order.api', 'down-cafe', { baseUrl: base }, { apiKey: 'k' });
    await configure('order.webhook', 'down-cafe', { url: hook }, { secret: whsec() });

    const { id } = await create('order', orderPayload('down-cafe'));
    const row = await waitForActionStatus(t.app.db, id, ['FAILED', 'COMPLETED']);
    expect(row.status).toBe('FAILED');
    expect(row.error).toBe("Failed after 3 attempts: down-cafe's ordering API answered 500");
    expect(provider.to('down-cafe')).toHaveLength(3);
    expect(provider.to('down-cafe-hook')).toHaveLength(0);
  });

  it('a 5xx, then a 4xx on the retry: the first attempt may have placed it, so the action fails instead of ordering again by webhook', async () => {
    let calls = 0;
    const base = provider.route('flaky-cafe', () => (++calls === 1 ? { status: 503 } : { status: 422, body: { error: 'duplicate order' } }));
    const hook = provider.route('flaky-cafe-hook', () => ({ status: 200, body: { reference: 'SHOULD-NOT' } }));
    await configure('order.api', 'flaky-cafe', { baseUrl: base }, { apiKey: 'k' });
    await configure('order.webhook', 'flaky-cafe', { url: hook }, { secret: whsec() });
    const { id } = await create('order', orderPayload('flaky-cafe'));
    const row = await waitForActionStatus(t.app.db, id, ['FAILED', 'COMPLETED']);
    expect(row.status).toBe('FAILED');
    expect(row.error).toMatch(/answered 422: duplicate order; an earlier attempt may have reached the provider, so no other route is tried/);
    expect(provider.to('flaky-cafe-hook')).toHaveLength(0);
    expect(await t.app.db.manualTask.count({ where: { actionId: id, status: 'OPEN' } })).toBe(0);
  });

  it('a 2xx without a reference: the provider took it, so the action fails naming the missing field and no other route places it again', async () => {
    const base = provider.route('mute-cafe', () => ({ status: 200, body: { ok: true } }));
    const hook = provider.route('mute-cafe-hook', () => ({ status: 200, body: { reference: 'SHOULD-NOT' } }));
    await configure('order.api', 'mute-cafe', { baseUrl: base }, { apiKey: 'k' });
    await configure('order.webhook', 'mute-cafe', { url: hook }, { secret: whsec() });
    const { id } = await create('order', orderPayload('mute-cafe'));
    const row = await waitForActionStatus(t.app.db, id, ['FAILED', 'COMPLETED']);
    expect(row.status).toBe('FAILED');
    expect(row.error).toMatch(/without a reference \(the field "reference" must be a non-empty string\)/);
    expect(provider.to('mute-cafe')).toHaveLength(1);
    expect(provider.to('mute-cafe-hook')).toHaveLength(0);
  });

  it('rolls back through the API\'s cancel endpoint', async () => {
    const base = provider.route('undo-cafe', (req) => {
      if (req.path === '/undo-cafe/orders') return { status: 200, body: { reference: 'UNDO/42' } };
      if (req.path === '/undo-cafe/orders/UNDO%2F42/cancel') return { status: 200, body: { cancelled: true } };
      return { status: 404 };
    });
    await configure('order.api', 'undo-cafe', { baseUrl: `${base}/` }, { apiKey: 'undo-key' });
    const { id } = await create('order', orderPayload('undo-cafe'));
    await waitForActionStatus(t.app.db, id, ['COMPLETED']);

    const out = await graphqlData(t.url, admin, `mutation($id: ID!) { rollbackAction(id: $id, reason: "customer changed their mind") { action { status } errors { code message } } }`, { id });
    expect(out.rollbackAction).toEqual({ action: { status: 'ROLLED_BACK' }, errors: [] });
    const cancel = provider.to('undo-cafe').at(-1)!;
    expect(cancel.method).toBe('POST');
    expect(cancel.path).toBe('/undo-cafe/orders/UNDO%2F42/cancel');
    expect(cancel.headers.authorization).toBe('Bearer undo-key');
  });
});

describe('order.webhook and the callback route', () => {
  it('a 4xx from the API falls through to the webhook, whose Standard Webhooks signature verifies on the receiving side', async () => {
    const secret = whsec();
    const base = provider.route('picky-cafe', () => ({ status: 422, body: { error: 'we do not take oat milk orders by API' } }));
    const verified: unknown[] = [];
    const hook = provider.route('picky-hook', (req) => {
      verified.push(new Webhook(secret).verify(req.body, req.headers as Record<string, string>));
      return { status: 200, body: { reference: 'HOOK-9' } };
    });
    await configure('order.api', 'picky-cafe', { baseUrl: base }, { apiKey: 'k' });
    await configure('order.webhook', 'picky-cafe', { url: hook }, { secret });

    const { id } = await create('order', orderPayload('picky-cafe'));
    await waitForActionStatus(t.app.db, id, ['COMPLETED']);

    expect(provider.to('picky-cafe')).toHaveLength(1);
    const [delivery] = provider.to('picky-hook');
    expect(delivery!.headers['webhook-id']).toBe(`action:${id}`);
    expect(verified).toHaveLength(1);
    expect(verified[0]).toMatchObject({
      type: 'order.requested',
      actionId: id,
      payload: {
        ...orderPayload('picky-cafe'),
        items: [
          { name: 'Latte', price: 3.5, quantity: 2, modifications: ['oat milk'] },
          { name: 'Croissant', price: 2.2, quantity: 1 },
        ],
      },
      callbackUrl: expect.stringMatching(/\/callbacks\/order\.webhook\/[A-Za-z0-9_-]{43}$/),
    });
    // A wrong secret does not verify what was sent.
    expect(() => new Webhook(whsec()).verify(delivery!.body, delivery!.headers as Record<string, string>)).toThrow();

    const seen = await look(id);
    expect(seen.executions.map((e) => [e.handler, e.status])).toEqual([
      ['order.api', 'FAILED'],
      ['order.webhook', 'SUCCEEDED'],
    ]);
    expect(seen.statusUpdates.map((u) => u.message)).toContain(
      "order.api cannot do this: picky-cafe's ordering API answered 422: we do not take oat milk orders by API; trying order.webhook…",
    );
    expect(seen.auditLog.filter((e) => e.event === 'execution.attempt_failed').map((e) => [e.data.handler, e.data.permanent])).toEqual([['order.api', true]]);
    expect(seen.receipts).toEqual([{ handler: 'order.webhook', provider: 'picky-cafe', externalRef: 'HOOK-9', data: { reference: 'HOOK-9', via: 'webhook' } }]);
  });

  it('a 202 waits; forged, mistargeted and malformed callbacks are refused and change nothing; a signed one completes it; a replay is refused', async () => {
    const secret = whsec();
    const hook = provider.route('later-cafe', () => ({ status: 202 }));
    await configure('order.webhook', 'later-cafe', { url: hook }, { secret });

    const { id } = await create('order', orderPayload('later-cafe'));
    const waiting = await waitFor('the webhook execution to wait', async () =>
      t.app.db.execution.findFirst({ where: { actionId: id, handler: 'order.webhook', status: 'WAITING' } }),
    );
    const { callbackUrl } = JSON.parse(provider.to('later-cafe')[0]!.body) as { callbackUrl: string };
    const token = callbackUrl.split('/').at(-1)!;
    // Only a hash of the token is stored.
    expect(waiting.waitKey).not.toContain(token);
    expect((await look(id)).statusUpdates.map((u) => u.message)).toContain('Waiting for later-cafe to confirm the order…');

    const before = await look(id);
    const good = { reference: 'LATER-5', status: 'confirmed' };

    const forged = signedCallback(callbackUrl, whsec(), good);
    const forgedRes = await postToEngine(forged.path, forged.init);
    expect(forgedRes.status).toBe(401);
    expect(await forgedRes.json()).toEqual({ error: expect.stringContaining('signature does not verify') });

    const unsigned = await postToEngine(new URL(callbackUrl).pathname, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(good) });
    expect(unsigned.status).toBe(401);

    const otherToken = signedCallback(callbackUrl.replace(token, randomBytes(32).toString('base64url')), secret, good);
    expect((await postToEngine(otherToken.path, otherToken.init)).status).toBe(404);
    const wrongHandler = signedCallback(callbackUrl.replace('order.webhook', 'payment.webhook'), secret, good);
    expect((await postToEngine(wrongHandler.path, wrongHandler.init)).status).toBe(404);

    const stale = signedCallback(callbackUrl, secret, good);
    const staleAt = new Date(Date.now() - 10 * 60_000);
    const staleHeaders = stale.init.headers as Record<string, string>;
    staleHeaders['webhook-timestamp'] = String(Math.floor(staleAt.getTime() / 1000));
    staleHeaders['webhook-signature'] = new Webhook(secret).sign(staleHeaders['webhook-id']!, staleAt, stale.init.body);
    expect((await postToEngine(stale.path, stale.init)).status).toBe(401);

    const malformed = signedCallback(callbackUrl, secret, { reference: 'LATER-5', status: 'maybe' });
    const malformedRes = await postToEngine(malformed.path, malformed.init);
    expect(malformedRes.status).toBe(400);
    expect(await malformedRes.json()).toMatchObject({ field: 'status', error: expect.stringMatching(/^status: /) });
    const noReference = signedCallback(callbackUrl, secret, { status: 'confirmed' });
    const noReferenceRes = await postToEngine(noReference.path, noReference.init);
    expect(await noReferenceRes.json()).toEqual({ field: 'reference', error: 'reference: is required' });

    expect((await postToEngine(new URL(callbackUrl).pathname, { method: 'GET' })).status).toBe(405);
    const tooLarge = await postToEngine(new URL(callbackUrl).pathname, { method: 'POST', body: 'x'.repeat(t.app.config.maxRequestBytes + 1) });
    expect(tooLarge.status).toBe(413);

    // Nothing changed.
    expect(await look(id)).toEqual(before);
    expect(before.status).toBe('EXECUTING');

    const signed = signedCallback(callbackUrl, secret, good);
    const ok = await postToEngine(signed.path, signed.init);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ ok: true, actionId: id, outcome: 'completed' });
    const done = await look(id);
    expect(done.status).toBe('COMPLETED');
    expect(done.receipts).toEqual([
      { handler: 'order.webhook', provider: 'later-cafe', externalRef: 'LATER-5', data: { reference: 'LATER-5', via: 'webhook', confirmedBy: 'callback' } },
    ]);
    expect(done.executions).toEqual([expect.objectContaining({ handler: 'order.webhook', status: 'SUCCEEDED', externalRef: 'LATER-5' })]);
    // The operator's fallback task opened with the wait is cancelled once the callback settled it.
    expect((await t.app.db.manualTask.findMany({ where: { actionId: id } })).map((task) => task.status)).toEqual(['CANCELLED']);

    // The same request again, and a fresh signed one: refused, nothing changes.
    const replay = await postToEngine(signed.path, signed.init);
    expect(replay.status).toBe(409);
    const again = signedCallback(callbackUrl, secret, { reference: 'LATER-6', status: 'rejected', reason: 'too late' });
    expect((await postToEngine(again.path, again.init)).status).toBe(409);
    expect(await look(id)).toEqual(done);
  });

  it('a rejected callback fails the action with the provider\'s reason', async () => {
    const secret = whsec();
    const hook = provider.route('sold-out-cafe', () => ({ status: 202 }));
    await configure('order.webhook', 'sold-out-cafe', { url: hook }, { secret });
    const { id } = await create('order', orderPayload('sold-out-cafe'));
    await waitFor('the webhook execution to wait', () => t.app.db.execution.findFirst({ where: { actionId: id, status: 'WAITING' } }));
    const { callbackUrl } = JSON.parse(provider.to('sold-out-cafe')[0]!.body) as { callbackUrl: string };

    const rejected = signedCallback(callbackUrl, secret, { reference: 'SO-1', status: 'rejected', reason: 'croissants are sold out' });
    const res = await postToEngine(rejected.path, rejected.init);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, actionId: id, outcome: 'failed' });

    const seen = await look(id);
    expect(seen.status).toBe('FAILED');
    expect(seen.error).toBe('Failed: sold-out-cafe rejected it: croissants are sold out (reference SO-1)');
    expect(seen.executions).toEqual([expect.objectContaining({ handler: 'order.webhook', status: 'FAILED', error: 'sold-out-cafe rejected it: croissants are sold out (reference SO-1)' })]);
    expect(seen.receipts).toEqual([]);
    expect(seen.auditLog.map((e) => e.event)).toContain('execution.failed');
    // The fallback task opened with the wait is cancelled: nothing is left for an operator.
    expect(await t.app.db.manualTask.count({ where: { actionId: id, status: 'OPEN' } })).toBe(0);
    expect(await t.app.db.manualTask.count({ where: { actionId: id, status: 'CANCELLED' } })).toBe(1);
  });

  it('rolls back through the webhook with type "order.cancelled"', async () => {
    const secret = whsec();
    const bodies: any[] = [];
    const hook = provider.route('hook-undo', (req) => {
      bodies.push(new Webhook(secret).verify(req.body, req.headers as Record<string, string>));
      return { status: 200, body: { reference: 'HU-1' } };
    });
    await configure('order.webhook', 'hook-undo', { url: hook }, { secret });
    const { id } = await create('order', orderPayload('hook-undo'));
    await waitForActionStatus(t.app.db, id, ['COMPLETED']);
    const out = await graphqlData(t.url, admin, `mutation($id: ID!) { rollbackAction(id: $id, reason: "wrong cafe") { action { status } errors { code } } }`, { id });
    expect(out.rollbackAction).toEqual({ action: { status: 'ROLLED_BACK' }, errors: [] });
    expect(bodies.map((b) => b.type)).toEqual(['order.requested', 'order.cancelled']);
    expect(bodies[1]).toEqual({ type: 'order.cancelled', actionId: id, reference: 'HU-1' });
  });
});

describe('order.email and manual', () => {
  it('with only an email address, the provider gets a structured order mail and the receipt says so', async () => {
    await configure('order.email', 'mail-cafe', { email: 'orders@mail-cafe.example' });
    const { id } = await create('order', orderPayload('mail-cafe'));
    await waitForActionStatus(t.app.db, id, ['COMPLETED']);

    const mail = mails.find((m) => m.to.includes('orders@mail-cafe.example'));
    expect(mail).toBeDefined();
    const text = decodedMail(mail!.raw);
    for (const expected of ['2 × Latte — oat milk', '1 × Croissant', 'Pickup time: 12:30', 'Customer name: Ada Lovelace', 'Customer phone: +49 30 1234567', 'Special instructions: Extra napkins, please', id]) {
      expect(text).toContain(expected);
    }
    const messageId = /^Message-ID:\s*(<[^>]+>)/im.exec(mail!.raw)![1];

    const seen = await look(id);
    expect(seen.receipts).toEqual([
      {
        handler: 'order.email',
        provider: 'mail-cafe',
        externalRef: messageId,
        data: { via: 'email', sentTo: 'orders@mail-cafe.example', messageId, note: 'The order was sent to mail-cafe by email (orders@mail-cafe.example).' },
      },
    ]);
    const messages = seen.statusUpdates.map((u) => u.message);
    expect(messages).toContain('No integration configured for mail-cafe (order.api), trying order.webhook…');
    expect(messages).toContain('No webhook configured for mail-cafe (order.webhook), trying order.email…');
    expect(messages).toContain('Emailing the order to mail-cafe…');
    expect(seen.auditLog.filter((e) => e.event === 'execution.completed').map((e) => e.data.handler)).toEqual(['order.email']);
    // The signed receipt binds the handlers skipped on the way.
    const receipt = await t.app.db.receipt.findFirstOrThrow({ where: { actionId: id } });
    expect(JSON.parse(receipt.statement ?? '{}').handlerPath).toEqual([
      { handler: 'order.api', outcome: 'SKIPPED' },
      { handler: 'order.webhook', outcome: 'SKIPPED' },
      { handler: 'order.email', outcome: 'SUCCEEDED' },
    ]);
  });

  it('with nothing configured, the chain ends at an operator task', async () => {
    const { id } = await create('order', orderPayload('unknown-cafe'));
    const task = await waitFor('the operator task', () => t.app.db.manualTask.findFirst({ where: { actionId: id, status: 'OPEN' } }));
    expect(task.instructions).toContain('Place this order with unknown-cafe');
    const seen = await look(id);
    expect(seen.status).toBe('EXECUTING');
    expect(seen.executions.map((e) => [e.handler, e.status])).toEqual([['manual', 'WAITING']]);
    const messages = seen.statusUpdates.map((u) => u.message);
    expect(messages).toContain('No integration configured for unknown-cafe (order.api), trying order.webhook…');
    expect(messages).toContain('No email route configured for unknown-cafe (order.email), trying manual…');
  });
});

describe('make_purchase through the order-style chain', () => {
  it('keeps its KYC rule and approval, then goes to the merchant\'s ordering API', async () => {
    const base = provider.route('lamp-shop', () => ({ status: 200, body: { reference: 'LAMP-77' } }));
    await configure('order.api', 'Lamp Shop', { baseUrl: base }, { apiKey: 'lamp' });
    const purchase = { items: [{ name: 'Desk lamp', price: 20, quantity: 2 }], merchant: 'Lamp Shop', total: 40, currency: 'EUR' };

    const refused = (
      await graphqlData(t.url, agent, `mutation($input: CreateActionInput!) { createAction(input: $input) { action { status } errors { code } } }`, { input: { type: 'make_purchase', payload: purchase } })
    ).createAction;
    expect(refused.action?.status ?? refused.errors[0]?.code).toMatch(/BLOCKED|KYC_REQUIRED/);
    expect(provider.to('lamp-shop')).toHaveLength(0);

    const kyc = await graphqlData(t.url, admin, `mutation($id: ID!) { setKycStatus(userId: $id, status: VERIFIED) { errors { code } } }`, { id: userId });
    expect(kyc.setKycStatus.errors).toEqual([]);
    const { id, status } = await create('make_purchase', purchase);
    expect(status).toBe('PENDING');
    await sleep(300);
    expect(provider.to('lamp-shop')).toHaveLength(0);

    const approved = await graphqlData(t.url, approver, `mutation($id: ID!) { approveAction(id: $id) { errors { code } } }`, { id });
    expect(approved.approveAction.errors).toEqual([]);
    await waitForActionStatus(t.app.db, id, ['COMPLETED']);
    const [sent] = provider.to('lamp-shop');
    expect(JSON.parse(sent!.body)).toEqual({ actionId: id, items: [{ name: 'Desk lamp', price: 20, quantity: 2 }], merchant: 'Lamp Shop', total: 40, currency: 'EUR' });
    expect(sent!.headers['idempotency-key']).toBe(`action:${id}`);
    expect((await look(id)).receipts).toEqual([expect.objectContaining({ handler: 'order.api', provider: 'Lamp Shop', externalRef: 'LAMP-77' })]);
  });
});

describe('payment.webhook', () => {
  it('completes only for an approved payment, through the payment webhook (amount and currency in the body), via a signed callback', async () => {
    const secret = whsec();
    const verified: any[] = [];
    const hook = provider.route('bank', (req) => {
      verified.push(new Webhook(secret).verify(req.body, req.headers as Record<string, string>));
      return { status: 202 };
    });
    await configure('payment.webhook', '*', { url: hook }, { secret });
    // A rule change alone (the default block switched off) does not let a payment run.
    const off = await graphqlData(t.url, admin, `mutation { upsertSafetyRule(input: { actionType: "make_payment", kind: BLOCKED, enabled: false }) { errors { code } } }`, {});
    expect(off.upsertSafetyRule.errors).toEqual([]);

    const { id, status } = await create('make_payment', { amount: 42.5, currency: 'EUR', recipient: 'ACME Ltd', memo: 'Invoice 7' });
    expect(status).toBe('PENDING');
    await sleep(500);
    expect(provider.to('bank')).toHaveLength(0);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('PENDING');

    const approved = await graphqlData(t.url, approver, `mutation($id: ID!) { approveAction(id: $id) { errors { code } } }`, { id });
    expect(approved.approveAction.errors).toEqual([]);
    await waitFor('the payment webhook', () => provider.to('bank').length === 1 && t.app.db.execution.findFirst({ where: { actionId: id, status: 'WAITING' } }));
    expect(verified[0]).toMatchObject({
      type: 'payment.requested',
      actionId: id,
      payload: { amount: 42.5, currency: 'EUR', recipient: 'ACME Ltd', memo: 'Invoice 7' },
      callbackUrl: expect.stringMatching(/\/callbacks\/payment\.webhook\/[A-Za-z0-9_-]{43}$/),
    });
    expect(provider.to('bank')[0]!.headers['webhook-id']).toBe(`action:${id}`);

    const cb = signedCallback(verified[0].callbackUrl, secret, { reference: 'PAY-123', status: 'confirmed' });
    expect((await postToEngine(cb.path, cb.init)).status).toBe(200);
    const seen = await look(id);
    expect(seen.status).toBe('COMPLETED');
    expect(seen.receipts).toEqual([expect.objectContaining({ handler: 'payment.webhook', externalRef: 'PAY-123', provider: new URL(hook).host })]);
  });

  it('without a configured payment handler, an approved payment fails saying so: no operator task', async () => {
    const s = await startTestServer({ env: { RETRY_BACKOFF_MS: '20', RECONCILE_SECONDS: '3600' }, worker: true });
    try {
      const adminKey = (await createApiKey(s.app.db, { role: 'ADMIN', space: 'no-bank' })).key;
      const agentKey = (await createApiKey(s.app.db, { role: 'AGENT', space: 'no-bank', user: 'quinn' })).key;
      const approverKey = (await createApiKey(s.app.db, { role: 'APPROVER', space: 'no-bank', user: 'quinn' })).key;
      await graphqlData(s.url, adminKey, `mutation { upsertSafetyRule(input: { actionType: "make_payment", kind: BLOCKED, enabled: false }) { errors { code } } }`, {});
      const { id } = await create('make_payment', { amount: 10, currency: 'EUR', recipient: 'ACME Ltd' }, agentKey, s);
      await graphqlData(s.url, approverKey, `mutation($id: ID!) { approveAction(id: $id) { errors { code } } }`, { id });
      const row = await waitForActionStatus(s.app.db, id, ['FAILED', 'COMPLETED']);
      expect(row.status).toBe('FAILED');
      expect(row.error).toBe('Failed: no handler could carry it out (none configured)');
      expect(await s.app.db.manualTask.count({ where: { actionId: id } })).toBe(0);
      const seen = await look(id, adminKey, s);
      expect(seen.statusUpdates.map((u) => u.message)).toContain('No webhook configured for make_payment (payment.webhook)');
    } finally {
      await s.close();
    }
  });
});
