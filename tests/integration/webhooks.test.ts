import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { sweepWebhookDeliveries } from '../../src/engine/webhook-delivery.js';
import { checkWebhookUrl } from '../../src/engine/webhook-endpoints.js';
import { graphql } from '../generated/gql.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const OUTBOUND_TIMEOUT_MS = 6000;
const MAX_FAILURES = 3;
const RETRY_BASE_MS = 150;

const Upsert = graphql(`
  mutation HooksUpsert($input: WebhookEndpointInput!) {
    upsertWebhookEndpoint(input: $input) {
      endpoint {
        id
        url
        events
        enabled
        disabledReason
        consecutiveFailures
        createdAt
        updatedAt
      }
      errors {
        code
        message
        field
      }
    }
  }
`);
const Endpoints = graphql(`
  query HooksEndpoints {
    webhookEndpoints {
      id
      url
      events
      enabled
      disabledReason
      consecutiveFailures
    }
  }
`);
const Deliveries = graphql(`
  query HooksDeliveries($endpointId: ID, $actionId: ID, $first: Int, $after: String) {
    webhookDeliveries(endpointId: $endpointId, actionId: $actionId, first: $first, after: $after) {
      edges {
        node {
          id
          webhookId
          actionId
          status
          seq
          state
          attempts
          lastStatusCode
          lastError
          body
          deliveredAt
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);
const Create = graphql(`
  mutation HooksCreate($input: CreateActionInput!) {
    createAction(input: $input) {
      action {
        id
        status
      }
      errors {
        code
      }
    }
  }
`);

const Reject = graphql(`
  mutation HooksReject($id: ID!, $reason: String) {
    rejectAction(id: $id, reason: $reason) {
      action {
        status
      }
      errors {
        code
      }
    }
  }
`);

/** One request the receiver got. */
interface Received {
  path: string;
  at: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * A real HTTP receiver: `/ok/*` answers 204, `/fail/*` 503, `/flaky/*` 503 for its first two
 * requests then 200, `/hang/*` never answers.
 */
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];
const hanging = new Set<Socket>();
let flakyLeft = 2;

let t: TestServer;
const keys = {} as Record<
  'admin' | 'agent' | 'approver' | 'failAdmin' | 'failAgent' | 'hangAdmin' | 'hangAgent' | 'flakyAdmin' | 'flakyAgent' | 'otherAdmin' | 'lostAdmin' | 'lostAgent',
  string
>;

const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

beforeAll(async () => {
  receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      received.push({ path, at: Date.now(), headers: req.headers as Record<string, string>, body: Buffer.concat(chunks).toString('utf8') });
      if (path.startsWith('/hang')) {
        hanging.add(req.socket);
        return;
      }
      if (path.startsWith('/flaky') && flakyLeft > 0) {
        flakyLeft -= 1;
        res.writeHead(503).end('busy');
        return;
      }
      res.writeHead(path.startsWith('/fail') ? 503 : path.startsWith('/flaky') ? 200 : 204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;

  t = await startTestServer({
    env: {
      ENABLE_NOOP_HANDLER: 'true',
      OUTBOUND_TIMEOUT_MS: String(OUTBOUND_TIMEOUT_MS),
      WEBHOOK_MAX_FAILURES: String(MAX_FAILURES),
      WEBHOOK_RETRY_BASE_MS: String(RETRY_BASE_MS),
    },
    worker: true,
  });
  const key = async (role: 'ADMIN' | 'AGENT', space: string, user?: string) => (await createApiKey(t.app.db, { role, space, ...(user ? { user } : {}) })).key;
  keys.admin = await key('ADMIN', 'hooks');
  keys.agent = await key('AGENT', 'hooks', 'ada');
  keys.approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'hooks', user: 'ada' })).key;
  keys.failAdmin = await key('ADMIN', 'hooks-fail');
  keys.failAgent = await key('AGENT', 'hooks-fail', 'fay');
  keys.hangAdmin = await key('ADMIN', 'hooks-hang');
  keys.hangAgent = await key('AGENT', 'hooks-hang', 'hal');
  keys.flakyAdmin = await key('ADMIN', 'hooks-flaky');
  keys.flakyAgent = await key('AGENT', 'hooks-flaky', 'flo');
  keys.otherAdmin = await key('ADMIN', 'hooks-other');
  keys.lostAdmin = await key('ADMIN', 'hooks-lost');
  keys.lostAgent = await key('AGENT', 'hooks-lost', 'lou');
});
afterAll(async () => {
  for (const socket of hanging) socket.destroy();
  await t?.close();
  await new Promise<void>((resolve) => receiver?.close(() => resolve()));
});

async function register(apiKey: string, input: { url: string; secret: string; events?: Array<'COMPLETED' | 'EXECUTING' | 'APPROVED'>; enabled?: boolean }) {
  const res = await t.graphql(Upsert, { input }, { apiKey });
  expect(res.errors).toBeUndefined();
  expect(res.data!.upsertWebhookEndpoint.errors).toEqual([]);
  return res.data!.upsertWebhookEndpoint.endpoint!;
}

/** Creates a no-op action and waits until it is COMPLETED; returns its id and how long that took. */
async function runAction(apiKey: string): Promise<{ id: string; ms: number }> {
  const started = Date.now();
  const res = await t.graphql(Create, { input: { type: 'noop', payload: {} } }, { apiKey });
  expect(res.data!.createAction.errors).toEqual([]);
  const id = res.data!.createAction.action!.id;
  for (let i = 0; i < 400; i++) {
    const row = await t.app.db.action.findUnique({ where: { id }, select: { status: true } });
    if (row?.status === 'COMPLETED') return { id, ms: Date.now() - started };
    await sleep(10);
  }
  throw new Error(`action ${id} did not complete`);
}

const bodyOf = (r: Received) => JSON.parse(r.body) as { type: string; actionId: string; status: string; seq: number; message: string | null; timestamp: string };
const forAction = (prefix: string, actionId: string) => received.filter((r) => r.path.startsWith(prefix) && bodyOf(r).actionId === actionId);

describe('outbound event webhooks', () => {
  it('an endpoint receives every status change of an action, signed per Standard Webhooks (verified by the library), in order of seq; a status filter gets only its statuses', async () => {
    const secret = newSecret();
    const all = await register(keys.admin, { url: `${receiverUrl}/ok/all`, secret });
    const filteredSecret = newSecret();
    const filtered = await register(keys.admin, { url: `${receiverUrl}/ok/completed-only`, secret: filteredSecret, events: ['COMPLETED'] });
    expect(all.events).toEqual([]);
    expect(filtered.events).toEqual(['COMPLETED']);

    const { id } = await runAction(keys.agent);
    const updates = await t.app.db.statusUpdate.findMany({ where: { actionId: id }, orderBy: { seq: 'asc' } });
    expect(updates.map((u) => u.status)).toContain('EXECUTING');
    expect(updates.at(-1)!.status).toBe('COMPLETED');

    const got = await waitFor('every status update at /ok/all', () => {
      const r = forAction('/ok/all', id);
      return r.length >= updates.length && r;
    }, 10_000);
    // Exactly the status updates, once each, in the order of seq, as the body contract says.
    expect(got.map(bodyOf)).toEqual(
      updates.map((u) => ({ type: 'action.status', actionId: id, status: u.status, seq: u.seq, message: u.message, timestamp: u.createdAt.toISOString() })),
    );
    const wh = new Webhook(secret);
    for (const r of got) {
      expect(r.headers['webhook-id']).toMatch(/^msg_[0-9a-f]{32}$/);
      expect(r.headers['content-type']).toBe('application/json');
      // Throws unless the signature and timestamp verify with the endpoint's secret.
      expect(() => wh.verify(r.body, r.headers)).not.toThrow();
      expect(() => new Webhook(filteredSecret).verify(r.body, r.headers)).toThrow();
    }
    expect(new Set(got.map((r) => r.headers['webhook-id'])).size).toBe(got.length);

    // The filtered endpoint: the COMPLETED update only.
    const only = await waitFor('the COMPLETED update at /ok/completed-only', () => forAction('/ok/completed-only', id).length > 0 && forAction('/ok/completed-only', id), 10_000);
    await sleep(300);
    expect(forAction('/ok/completed-only', id).map((r) => bodyOf(r).status)).toEqual(['COMPLETED']);
    expect(() => new Webhook(filteredSecret).verify(only[0]!.body, only[0]!.headers)).not.toThrow();

    // The delivery log: one DELIVERED row per update, one attempt, the answer's status code.
    const log = await t.graphql(Deliveries, { endpointId: all.id, actionId: id, first: 50 }, { apiKey: keys.admin });
    expect(log.errors).toBeUndefined();
    const nodes = log.data!.webhookDeliveries.edges.map((e) => e.node);
    expect(nodes.map((n) => n.seq)).toEqual(updates.map((u) => u.seq).reverse());
    for (const n of nodes) {
      expect(n).toMatchObject({ state: 'DELIVERED', attempts: 1, lastStatusCode: 204, lastError: null });
      expect(got.find((r) => r.headers['webhook-id'] === n.webhookId)?.body).toBe(n.body);
    }
  });

  it("status changes made by the API (an action created PENDING, then rejected by the user's approver) are delivered too, in order", async () => {
    const created = await t.graphql(Create, { input: { type: 'move_file', payload: { from: 'inbox/a.txt', to: 'archive/a.txt' } } }, { apiKey: keys.agent });
    expect(created.data!.createAction.action!.status).toBe('PENDING');
    const id = created.data!.createAction.action!.id;
    const rejected = await t.graphql(Reject, { id, reason: 'not today' }, { apiKey: keys.approver });
    expect(rejected.data!.rejectAction).toEqual({ action: { status: 'REJECTED' }, errors: [] });
    const updates = await t.app.db.statusUpdate.findMany({ where: { actionId: id }, orderBy: { seq: 'asc' } });
    expect(updates[0]!.status).toBe('PENDING');
    expect(updates.at(-1)!.status).toBe('REJECTED');
    const got = await waitFor('both updates at /ok/all', () => forAction('/ok/all', id).length >= updates.length && forAction('/ok/all', id), 10_000);
    expect(got.map((r) => [bodyOf(r).seq, bodyOf(r).status, bodyOf(r).message])).toEqual(updates.map((u) => [u.seq, u.status, u.message]));
    // The COMPLETED-only endpoint got neither.
    expect(forAction('/ok/completed-only', id)).toEqual([]);
  });

  it('an endpoint that fails at first gets its deliveries retried with backoff, and still in order of seq, nothing lost', async () => {
    const secret = newSecret();
    const endpoint = await register(keys.flakyAdmin, { url: `${receiverUrl}/flaky`, secret });
    const { id } = await runAction(keys.flakyAgent);
    const updates = await t.app.db.statusUpdate.findMany({ where: { actionId: id }, orderBy: { seq: 'asc' } });
    const accepted = await waitFor('every update accepted', async () => {
      const log = await t.graphql(Deliveries, { endpointId: endpoint.id, first: 50 }, { apiKey: keys.flakyAdmin });
      const nodes = log.data!.webhookDeliveries.edges.map((e) => e.node);
      return nodes.length === updates.length && nodes.every((n) => n.state === 'DELIVERED') && nodes;
    }, 10_000);
    const got = forAction('/flaky', id);
    // Two 503s for the first update, then every update once, in order.
    expect(got.map((r) => bodyOf(r).seq)).toEqual([1, 1, ...updates.map((u) => u.seq)]);
    expect(new Set(got.slice(0, 3).map((r) => r.headers['webhook-id'])).size).toBe(1);
    expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(RETRY_BASE_MS - 20);
    expect(got[2]!.at - got[1]!.at).toBeGreaterThanOrEqual(2 * RETRY_BASE_MS - 20);
    const first = accepted.find((n) => n.seq === 1)!;
    expect(first).toMatchObject({ attempts: 3, lastStatusCode: 200 });
    for (const r of got) expect(() => new Webhook(secret).verify(r.body, r.headers)).not.toThrow();
    const [row] = await t.app.db.webhookEndpoint.findMany({ where: { id: endpoint.id } });
    expect(row).toMatchObject({ enabled: true, consecutiveFailures: 0 });
  });

  it('a failing endpoint (HTTP 503) is retried, then disabled with a reason and an audit entry; the delivery log shows attempts and status codes; the action is not slowed', async () => {
    const endpoint = await register(keys.failAdmin, { url: `${receiverUrl}/fail`, secret: newSecret() });
    const { id, ms } = await runAction(keys.failAgent);
    expect(ms).toBeLessThan(OUTBOUND_TIMEOUT_MS / 2);

    const disabled = await waitFor('the endpoint disabled', async () => {
      const res = await t.graphql(Endpoints, {}, { apiKey: keys.failAdmin });
      const e = res.data!.webhookEndpoints.find((x) => x.id === endpoint.id)!;
      return !e.enabled && e;
    }, 10_000);
    expect(disabled.consecutiveFailures).toBe(MAX_FAILURES);
    expect(disabled.disabledReason).toContain(`${MAX_FAILURES} failed delivery attempts in a row`);
    expect(disabled.disabledReason).toContain('HTTP 503');

    const got = forAction('/fail', id);
    expect(got).toHaveLength(MAX_FAILURES);
    expect(got.every((r) => bodyOf(r).seq === 1)).toBe(true);

    const log = await t.graphql(Deliveries, { endpointId: endpoint.id, first: 50 }, { apiKey: keys.failAdmin });
    const nodes = log.data!.webhookDeliveries.edges.map((e) => e.node);
    const updates = await t.app.db.statusUpdate.count({ where: { actionId: id } });
    expect(nodes).toHaveLength(updates);
    expect(nodes.every((n) => n.state === 'FAILED')).toBe(true);
    const first = nodes.find((n) => n.seq === 1)!;
    expect(first).toMatchObject({ attempts: MAX_FAILURES, lastStatusCode: 503, lastError: 'the endpoint answered HTTP 503' });
    for (const n of nodes.filter((n) => n.seq !== 1)) expect(n).toMatchObject({ attempts: 0, lastStatusCode: null, lastError: 'not sent: the endpoint was disabled' });

    const audit = await t.app.db.auditEntry.findMany({ where: { event: 'webhook_endpoint.disabled' } });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actor: 'system', data: expect.objectContaining({ endpointId: endpoint.id, consecutiveFailures: MAX_FAILURES }) });

    // Disabled: later actions write no deliveries for it; enabling it again clears the failures.
    const later = await runAction(keys.failAgent);
    expect(await t.app.db.webhookDelivery.count({ where: { actionId: later.id } })).toBe(0);
    const again = await register(keys.failAdmin, { url: `${receiverUrl}/fail`, secret: newSecret(), enabled: true });
    expect(again).toMatchObject({ enabled: true, consecutiveFailures: 0, disabledReason: null });
    await register(keys.failAdmin, { url: `${receiverUrl}/fail`, secret: newSecret(), enabled: false });
  });

  it('an action completes at normal speed while its endpoint hangs (well before the outbound timeout would have elapsed)', async () => {
    const endpoint = await register(keys.hangAdmin, { url: `${receiverUrl}/hang`, secret: newSecret() });
    const { id, ms } = await runAction(keys.hangAgent);
    // The endpoint got the first update and is holding it while the action completed.
    await waitFor('the hanging request', () => forAction('/hang', id).length > 0, 10_000);
    expect(ms).toBeLessThan(OUTBOUND_TIMEOUT_MS / 2);
    const pending = await t.app.db.webhookDelivery.findMany({ where: { endpointId: endpoint.id }, orderBy: { position: 'asc' } });
    expect(pending[0]!.state).toBe('PENDING');
    // The hang ends in a recorded timeout, not a stuck worker.
    const timedOut = await waitFor(
      'the timeout recorded',
      async () => (await t.app.db.webhookDelivery.findFirst({ where: { endpointId: endpoint.id, actionId: id, seq: 1, attempts: { gte: 1 } } })) ?? undefined,
      OUTBOUND_TIMEOUT_MS + 5000,
    );
    expect(timedOut.lastError).toContain('no answer within');
    expect(timedOut.lastStatusCode).toBeNull();
  });

  it('a send job lost after commit (Redis refusing the enqueue) loses nothing: the deliveries wait, and the sweeper sends them in order', async () => {
    const secret = newSecret();
    const endpoint = await register(keys.lostAdmin, { url: `${receiverUrl}/ok/lost`, secret });
    const queue = t.app.engine.webhooks!;
    const wake = queue.wake;
    // Fault injection: every enqueue after commit fails, as it would with Redis away.
    queue.wake = () => Promise.reject(new Error('Redis is away'));
    let id: string;
    try {
      ({ id } = await runAction(keys.lostAgent));
      await sleep(400);
    } finally {
      queue.wake = wake;
    }
    const updates = await t.app.db.statusUpdate.findMany({ where: { actionId: id }, orderBy: { seq: 'asc' } });
    expect(forAction('/ok/lost', id)).toEqual([]);
    const waiting = await t.app.db.webhookDelivery.findMany({ where: { endpointId: endpoint.id }, orderBy: { position: 'asc' } });
    expect(waiting.map((d) => [d.seq, d.state])).toEqual(updates.map((u) => [u.seq, 'PENDING']));

    expect(await sweepWebhookDeliveries({ db: t.app.db, clock: () => new Date(), webhooks: queue })).toBeGreaterThanOrEqual(1);
    const got = await waitFor('the swept deliveries', () => forAction('/ok/lost', id).length >= updates.length && forAction('/ok/lost', id), 10_000);
    expect(got.map((r) => bodyOf(r).seq)).toEqual(updates.map((u) => u.seq));
    for (const r of got) expect(() => new Webhook(secret).verify(r.body, r.headers)).not.toThrow();
  });

  it('only admins register endpoints or read them and their log; another space sees none of them', async () => {
    const before = await t.app.db.webhookEndpoint.count();
    const upsert = await t.graphql(Upsert, { input: { url: `${receiverUrl}/ok/agent`, secret: newSecret() } }, { apiKey: keys.agent });
    expect(upsert.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    expect(await t.app.db.webhookEndpoint.count()).toBe(before);
    const list = await t.graphql(Endpoints, {}, { apiKey: keys.agent });
    expect(list.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    const log = await t.graphql(Deliveries, { first: 5 }, { apiKey: keys.agent });
    expect(log.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');

    const mine = (await t.graphql(Endpoints, {}, { apiKey: keys.admin })).data!.webhookEndpoints;
    expect(mine.length).toBeGreaterThan(0);
    const other = await t.graphql(Endpoints, {}, { apiKey: keys.otherAdmin });
    expect(other.data!.webhookEndpoints).toEqual([]);
    const otherLog = await t.graphql(Deliveries, { endpointId: mine[0]!.id, first: 5 }, { apiKey: keys.otherAdmin });
    expect(otherLog.data!.webhookDeliveries.edges).toEqual([]);
  });

  it('the secret is write-only: never in an answer, the audit trail or the stored row', async () => {
    const secret = newSecret();
    const res = await t.graphql(Upsert, { input: { url: `${receiverUrl}/ok/secret`, secret } }, { apiKey: keys.admin });
    expect(res.data!.upsertWebhookEndpoint.errors).toEqual([]);
    const changed = await t.graphql(Upsert, { input: { url: `${receiverUrl}/ok/secret`, secret: newSecret(), events: ['COMPLETED'] } }, { apiKey: keys.admin });
    const list = await t.graphql(Endpoints, {}, { apiKey: keys.admin });
    const base64 = secret.slice('whsec_'.length);
    for (const text of [JSON.stringify(res), JSON.stringify(changed), JSON.stringify(list)]) expect(text).not.toContain(base64);
    const row = await t.app.db.webhookEndpoint.findFirstOrThrow({ where: { url: `${receiverUrl}/ok/secret` } });
    expect(row.secretCiphertext).not.toContain(base64);
    const audit = await t.app.db.auditEntry.findMany({ where: { event: 'webhook_endpoint.upserted', data: { path: ['endpointId'], equals: row.id } }, orderBy: { id: 'asc' } });
    expect(audit).toHaveLength(2);
    expect(JSON.stringify(audit.map((a) => a.data))).not.toContain(base64);
    expect(audit[0]!.data).toMatchObject({ before: null, secretChanged: true, after: { events: [], enabled: true } });
    expect(audit[1]!.data).toMatchObject({ secretChanged: true, before: { events: [] }, after: { events: ['COMPLETED'] } });
  });

  it('a bad URL or secret is refused with INVALID_INPUT naming the field (never echoing the secret), and nothing is stored', async () => {
    const endpoints = await t.app.db.webhookEndpoint.count();
    const audits = await t.app.db.auditEntry.count({ where: { event: 'webhook_endpoint.upserted' } });
    const cases: Array<{ url: string; secret: string; field: string }> = [
      { url: 'ftp://files.example/hook', secret: newSecret(), field: 'url' },
      { url: 'not a url', secret: newSecret(), field: 'url' },
      { url: 'http://user:pw@hooks.example/in', secret: newSecret(), field: 'url' },
      { url: `${receiverUrl}/ok/bad`, secret: 'just-a-password', field: 'secret' },
      { url: `${receiverUrl}/ok/bad`, secret: `whsec_${randomBytes(8).toString('base64')}`, field: 'secret' },
      { url: `${receiverUrl}/ok/bad`, secret: 'whsec_***not base64***', field: 'secret' },
    ];
    for (const c of cases) {
      const res = await t.graphql(Upsert, { input: { url: c.url, secret: c.secret } }, { apiKey: keys.admin });
      expect(res.errors).toBeUndefined();
      const payload = res.data!.upsertWebhookEndpoint;
      expect(payload.endpoint).toBeNull();
      expect(payload.errors).toHaveLength(1);
      expect(payload.errors[0]).toMatchObject({ code: 'INVALID_INPUT', field: ['input', c.field] });
      expect(payload.errors[0]!.message).not.toContain(c.secret);
    }
    expect(await t.app.db.webhookEndpoint.count()).toBe(endpoints);
    expect(await t.app.db.auditEntry.count({ where: { event: 'webhook_endpoint.upserted' } })).toBe(audits);
    // OUTBOUND_BLOCK_PRIVATE refuses loopback and private targets, naming the field.
    await expect(checkWebhookUrl('http://127.0.0.1:9/hook', { blockPrivate: true })).rejects.toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'url'] });
    await expect(checkWebhookUrl('http://10.1.2.3/hook', { blockPrivate: true })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(checkWebhookUrl('http://127.0.0.1:9/hook', { blockPrivate: false })).resolves.toBe('http://127.0.0.1:9/hook');
  });

  it('malformed ids and cursors in webhookDeliveries answer NOT_FOUND or INVALID_INPUT, never an internal error', async () => {
    const byEndpoint = await t.graphql(Deliveries, { endpointId: 'not-an-id', first: 5 }, { apiKey: keys.admin });
    expect(byEndpoint.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    const byAction = await t.graphql(Deliveries, { actionId: "1' OR 1=1", first: 5 }, { apiKey: keys.admin });
    expect(byAction.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    const cursor = await t.graphql(Deliveries, { after: 'garbage', first: 5 }, { apiKey: keys.admin });
    expect(cursor.errors?.[0]?.extensions?.['code']).toBe('INVALID_INPUT');
  });
});
