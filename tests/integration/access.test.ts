import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

/** A raw graphql-transport-ws connection: every message and the close code, as the wire has them. */
interface RawWs {
  messages: Array<{ type: string; id?: string; payload?: any }>;
  closed: Promise<{ code: number; reason: string }>;
  closedAt: number | null;
  send(message: unknown): void;
  /** Resolves when a message matching `check` has arrived (or fails after `ms`). */
  until(check: (m: { type: string; id?: string; payload?: any }) => boolean, what: string, ms?: number): Promise<void>;
  close(): void;
}

function rawWs(url: string, init: Record<string, unknown> | null): RawWs {
  const socket = new WebSocket(url, 'graphql-transport-ws');
  const listeners = new Set<() => void>();
  const w: RawWs = {
    messages: [],
    closedAt: null,
    closed: new Promise((resolve) =>
      socket.on('close', (code, reason) => {
        w.closedAt = Date.now();
        resolve({ code, reason: reason.toString() });
      }),
    ),
    send: (message) => {
      if (socket.readyState === socket.CONNECTING) socket.once('open', () => socket.send(JSON.stringify(message)));
      else socket.send(JSON.stringify(message));
    },
    until(check, what, ms = 5000) {
      return new Promise((resolve, reject) => {
        const listener = () => {
          if (w.messages.some(check)) {
            listeners.delete(listener);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(w.messages)}`));
        }, ms);
        listeners.add(listener);
        listener();
      });
    },
    close: () => socket.close(),
  };
  socket.on('message', (data) => {
    w.messages.push(JSON.parse(data.toString()) as { type: string });
    for (const l of [...listeners]) l();
  });
  socket.on('open', () => {
    if (init) w.send({ type: 'connection_init', payload: init });
  });
  return w;
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const STATUS = 'subscription S($id: ID!) { actionStatus(actionId: $id) { status seq } }';

let t: TestServer;
const keys = {} as Record<'admin' | 'agent' | 'approver' | 'otherAdmin', string>;
const ids = {} as Record<keyof typeof keys, string>;

beforeAll(async () => {
  t = await startTestServer({ env: { WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: '3', WS_MAX_CONNECTIONS_PER_KEY: '2', WS_KEY_RECHECK_SECONDS: '600' } });
  for (const [name, role, space, user] of [
    ['admin', 'ADMIN', 'acme', undefined],
    ['agent', 'AGENT', 'acme', 'alice'],
    ['approver', 'APPROVER', 'acme', 'alice'],
    ['otherAdmin', 'ADMIN', 'globex', undefined],
  ] as const) {
    const created = await createApiKey(t.app.db, { role, space, user, email: user ? `${user}@example.com` : undefined });
    keys[name] = created.key;
    ids[name] = created.apiKeyId;
  }
});
afterAll(async () => {
  await t?.close();
});

async function newAgentKey(server: TestServer, user = 'alice') {
  return createApiKey(server.app.db, { role: 'AGENT', space: 'acme', user });
}

async function createMove(server: TestServer, key: string): Promise<string> {
  const { body } = await postGraphql(
    server.url,
    key,
    'mutation { createAction(input: {type: "move_file", payload: {from: "inbox/a.txt", to: "archive/a.txt"}}) { action { id } errors { code message } } }',
  );
  expect(body.data?.createAction.errors).toEqual([]);
  return body.data!.createAction.action.id as string;
}

async function approve(server: TestServer, id: string) {
  const { body } = await postGraphql(server.url, keys.approver, 'mutation A($id: ID!) { approveAction(id: $id) { errors { code } } }', { id });
  expect(body.data?.approveAction.errors).toEqual([]);
}

const REVOKE = 'mutation R($id: ID!) { revokeApiKey(id: $id) { apiKey { id prefix revokedAt } errors { code message field } } }';

describe('revokeApiKey and apiKeys', () => {
  it('an admin revokes a key of its own space: audited with before/after, never the key; the key stops working', async () => {
    const victim = await newAgentKey(t);
    expect((await postGraphql(t.url, victim.key, '{ me { role } }')).body.data).toEqual({ me: { role: 'AGENT' } });
    const { body } = await postGraphql(t.url, keys.admin, REVOKE, { id: victim.apiKeyId });
    expect(body.data.revokeApiKey.errors).toEqual([]);
    expect(body.data.revokeApiKey.apiKey.id).toBe(victim.apiKeyId);
    expect(body.data.revokeApiKey.apiKey.revokedAt).toMatch(/^\d{4}-/);
    const me = await postGraphql(t.url, victim.key, '{ me { role } }');
    expect(me.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');

    const entry = await t.app.db.auditEntry.findFirstOrThrow({ where: { event: 'api_key.revoked', actor: { not: 'x' } }, orderBy: { id: 'desc' } });
    expect(entry.data).toMatchObject({ apiKeyId: victim.apiKeyId, before: { revokedAt: null }, after: { revokedAt: body.data.revokeApiKey.apiKey.revokedAt } });
    const text = JSON.stringify(entry, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    expect(text).not.toContain(victim.key);
    const row = await t.app.db.apiKey.findUniqueOrThrow({ where: { id: victim.apiKeyId } });
    expect(text).not.toContain(row.keyHash);
  });

  it('takes the key prefix apiKeys lists as well as the id; another space\'s prefix is NOT_FOUND', async () => {
    const victim = await newAgentKey(t);
    const prefix = victim.key.slice(0, 10);
    const other = await postGraphql(t.url, keys.otherAdmin, REVOKE, { id: prefix });
    expect(other.body.data.revokeApiKey.errors[0].code).toBe('NOT_FOUND');
    const { body } = await postGraphql(t.url, keys.admin, REVOKE, { id: prefix });
    expect(body.data.revokeApiKey.errors).toEqual([]);
    expect(body.data.revokeApiKey.apiKey.id).toBe(victim.apiKeyId);
    expect((await postGraphql(t.url, victim.key, '{ me { role } }')).body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('refuses other-space and malformed ids (NOT_FOUND), an already revoked key (REVOKED), and non-admins (FORBIDDEN), changing nothing', async () => {
    const victim = await newAgentKey(t);
    const other = await postGraphql(t.url, keys.otherAdmin, REVOKE, { id: victim.apiKeyId });
    expect(other.body.data.revokeApiKey.errors).toEqual([{ code: 'NOT_FOUND', message: `no API key with id ${victim.apiKeyId}`, field: ['id'] }]);
    for (const bad of ['not-a-uuid', 'x'.repeat(100_000), '00000000-0000-4000-8000-000000000000']) {
      const res = await postGraphql(t.url, keys.admin, REVOKE, { id: bad });
      expect(res.body.data.revokeApiKey.errors[0].code).toBe('NOT_FOUND');
      expect(res.body.data.revokeApiKey.errors[0].message.length).toBeLessThan(120);
    }
    const agent = await postGraphql(t.url, keys.agent, REVOKE, { id: victim.apiKeyId });
    expect(agent.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await t.app.db.apiKey.findUniqueOrThrow({ where: { id: victim.apiKeyId } })).revokedAt).toBeNull();

    expect((await postGraphql(t.url, keys.admin, REVOKE, { id: victim.apiKeyId })).body.data.revokeApiKey.errors).toEqual([]);
    const again = await postGraphql(t.url, keys.admin, REVOKE, { id: victim.apiKeyId });
    expect(again.body.data.revokeApiKey.errors[0]).toMatchObject({ code: 'REVOKED', field: ['id'] });
    expect(again.body.data.revokeApiKey.errors[0].message).toMatch(/already revoked/);
    expect(await t.app.db.auditEntry.count({ where: { event: 'api_key.revoked', data: { path: ['apiKeyId'], equals: victim.apiKeyId } } })).toBe(1);
  });

  it('Query.apiKeys lists the keys of the admin\'s space only, revoked ones marked, never a hash; admins only', async () => {
    const { body } = await postGraphql(t.url, keys.admin, '{ apiKeys { id prefix role userHandle createdAt revokedAt } }');
    const listed = body.data.apiKeys as Array<{ id: string; prefix: string; role: string; userHandle: string | null; revokedAt: string | null }>;
    expect(listed.map((k) => k.id)).toContain(ids.agent);
    expect(listed.map((k) => k.id)).not.toContain(ids.otherAdmin);
    expect(listed.find((k) => k.id === ids.agent)).toMatchObject({ role: 'AGENT', userHandle: 'alice', revokedAt: null, prefix: keys.agent.slice(0, 10) });
    const hashes = (await t.app.db.apiKey.findMany({ select: { keyHash: true } })).map((r) => r.keyHash);
    for (const hash of hashes) expect(JSON.stringify(body)).not.toContain(hash);
    expect((await postGraphql(t.url, keys.agent, '{ apiKeys { id } }')).body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    // createApiKey answers with the new key's listing, which revokeApiKey takes.
    const made = await postGraphql(t.url, keys.admin, 'mutation { createApiKey(input: {role: OPERATOR}) { key apiKey { id prefix role revokedAt } errors { code } } }');
    const out = made.body.data.createApiKey;
    expect(out.apiKey).toMatchObject({ prefix: out.key.slice(0, 10), role: 'OPERATOR', revokedAt: null });
    expect((await postGraphql(t.url, keys.admin, REVOKE, { id: out.apiKey.id })).body.data.revokeApiKey.errors).toEqual([]);
  });
});

describe('graphql-ws connection_init', () => {
  it('closes 4401 without a key and 4403 for an unknown, malformed or revoked key, before any subscription', async () => {
    const revoked = await newAgentKey(t);
    await postGraphql(t.url, keys.admin, REVOKE, { id: revoked.apiKeyId });
    const cases: Array<[Record<string, unknown>, number]> = [
      [{}, 4401],
      [{ authorization: '' }, 4401],
      [{ headers: {} }, 4401],
      [bearer('ae_' + 'x'.repeat(43)), 4403],
      [bearer('not a key at all'), 4403],
      [{ authorization: 'Basic Zm9vOmJhcg==' }, 4403],
      // A key that is not a string, or two that disagree: something was sent, and it is refused.
      [{ authorization: 42 }, 4403],
      [{ authorization: [`Bearer ${keys.agent}`] }, 4403],
      [{ headers: { authorization: { value: `Bearer ${keys.agent}` } } }, 4403],
      [{ authorization: `Bearer ${keys.agent}`, Authorization: 'Bearer ae_' + 'z'.repeat(43) }, 4403],
      [{ authorization: `Bearer ${keys.agent}`, headers: { authorization: 'Bearer ae_' + 'z'.repeat(43) } }, 4403],
      [bearer(revoked.key), 4403],
    ];
    for (const [init, code] of cases) {
      const ws = rawWs(t.wsUrl, init);
      const closed = await ws.closed;
      expect(closed.code, JSON.stringify(init)).toBe(code);
      expect(ws.messages, 'no connection_ack').toEqual([]);
    }
    // A subscribe sent right after a refused init reaches nothing.
    const ws = rawWs(t.wsUrl, {});
    ws.send({ id: '1', type: 'subscribe', payload: { query: '{ apiVersion }' } });
    expect((await ws.closed).code).toBe(4401);
    expect(ws.messages).toEqual([]);
  });

  it('accepts the key as authorization in any letter case and as headers.authorization (what GraphiQL sends)', async () => {
    for (const init of [
      { authorization: `Bearer ${keys.agent}` },
      { Authorization: `Bearer ${keys.agent}` },
      { AUTHORIZATION: `bearer ${keys.agent}` },
      { headers: { authorization: `Bearer ${keys.agent}` } },
      { headers: { Authorization: `Bearer ${keys.agent}` } },
      { Headers: { AuThOrIzAtIoN: `Bearer ${keys.agent}` } },
    ]) {
      const ws = rawWs(t.wsUrl, init);
      await ws.until((m) => m.type === 'connection_ack', `ack for ${JSON.stringify(Object.keys(init))}`);
      ws.send({ id: 'me', type: 'subscribe', payload: { query: '{ me { role } }' } });
      await ws.until((m) => m.id === 'me' && m.type === 'next', 'me');
      expect(ws.messages.find((m) => m.type === 'next')!.payload).toEqual({ data: { me: { role: 'AGENT' } } });
      ws.close();
      await ws.closed;
    }
  });

  it('caps operations per connection with an error naming the limit, and connections per key with 4429', async () => {
    const own = await newAgentKey(t);
    const action = await createMove(t, own.key);
    const ws = rawWs(t.wsUrl, bearer(own.key));
    await ws.until((m) => m.type === 'connection_ack', 'ack');
    for (const id of ['a', 'b', 'c', 'd']) ws.send({ id, type: 'subscribe', payload: { query: STATUS, variables: { id: action } } });
    await ws.until((m) => m.id === 'd' && m.type === 'error', 'refusal of the 4th');
    const refusal = ws.messages.find((m) => m.id === 'd')!;
    expect(refusal.payload[0].message).toMatch(/at most 3 .*WS_MAX_SUBSCRIPTIONS_PER_CONNECTION/);
    expect(refusal.payload[0].extensions).toMatchObject({ code: 'TOO_MANY_SUBSCRIPTIONS', limit: 3 });
    await ws.until((m) => m.id === 'c' && m.type === 'next', 'the 3rd still runs');
    // Completing one frees a slot.
    ws.send({ id: 'a', type: 'complete' });
    await sleep(50);
    ws.send({ id: 'e', type: 'subscribe', payload: { query: STATUS, variables: { id: action } } });
    await ws.until((m) => m.id === 'e' && m.type === 'next', 'a new one after completing one');

    const second = rawWs(t.wsUrl, bearer(own.key));
    await second.until((m) => m.type === 'connection_ack', 'second connection');
    const third = rawWs(t.wsUrl, { headers: bearer(own.key) });
    const closed = await third.closed;
    expect(closed.code).toBe(4429);
    expect(closed.reason).toMatch(/at most 2.*WS_MAX_CONNECTIONS_PER_KEY/);
    // Another key is not affected, and a slot frees when a connection closes.
    const other = rawWs(t.wsUrl, bearer(keys.approver));
    await other.until((m) => m.type === 'connection_ack', 'another key');
    second.close();
    await second.closed;
    await sleep(50);
    const again = rawWs(t.wsUrl, bearer(own.key));
    await again.until((m) => m.type === 'connection_ack', 'a slot freed');
    for (const w of [ws, other, again]) w.close();
  });
});

describe('a bad operation on graphql-ws', () => {
  it('gets an error for its own id only; the socket and the other subscriptions carry on', async () => {
    const action = await createMove(t, keys.agent);
    const ws = rawWs(t.wsUrl, bearer(keys.agent));
    await ws.until((m) => m.type === 'connection_ack', 'ack');
    ws.send({ id: 'good', type: 'subscribe', payload: { query: STATUS, variables: { id: action } } });
    await ws.until((m) => m.id === 'good' && m.type === 'next', 'the current state');
    const bad = {
      syntax: { query: 'subscription { actionStatus(' },
      invalid: { query: 'subscription { nope { x } }' },
      'unknown-op': { query: STATUS, operationName: 'Missing', variables: { id: action } },
      'two-ops': { query: `${STATUS} query Q { apiVersion }`, variables: { id: action } },
      'too-many-tokens': { query: `{ ${'apiVersion '.repeat(4000)}}` },
      // graphql-armor's limits, which throw from validation.
      'too-deep': { query: `{ ${'a { '.repeat(15)}b${' }'.repeat(15)} }` },
      'too-many-aliases': { query: `{ ${Array.from({ length: 300 }, (_, i) => `a${i}: apiVersion`).join(' ')} }` },
      'too-many-directives': { query: `{ apiVersion ${'@include(if: true) '.repeat(60)}}` },
      'too-costly': { query: '{ actions(first: 100000000) { edges { node { id receipts { id } executions { id } } } } }' },
    };
    for (const [id, payload] of Object.entries(bad)) {
      ws.send({ id, type: 'subscribe', payload });
      await ws.until((m) => m.id === id && m.type === 'error', `error for ${id}`);
    }
    expect(ws.messages.find((m) => m.id === 'syntax')!.payload[0].message).toMatch(/Syntax Error/);
    expect(ws.messages.find((m) => m.id === 'unknown-op')!.payload[0].message).toMatch(/no operation named "Missing"/);
    expect(ws.closedAt).toBeNull();

    await approve(t, action);
    await ws.until((m) => m.id === 'good' && m.type === 'next' && m.payload.data?.actionStatus.status === 'APPROVED', 'the live event after the bad ones');
    ws.close();
    await ws.closed;
  });
});

describe('introspection', () => {
  it('needs a valid key; apiVersion and __typename stay public', async () => {
    for (const query of ['{ __schema { queryType { name } } }', '{ __type(name: "Action") { name } }', 'query { ...F } fragment F on Query { __schema { types { name } } }']) {
      const anonymous = await postGraphql(t.url, undefined, query);
      expect(anonymous.body.data ?? null).toBeNull();
      expect(anonymous.body.errors?.[0]?.extensions?.code, query).toBe('UNAUTHENTICATED');
      const bogus = await postGraphql(t.url, 'ae_' + 'y'.repeat(43), query);
      expect(bogus.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      const withKey = await postGraphql(t.url, keys.agent, query);
      expect(withKey.body.errors, query).toBeUndefined();
    }
    expect((await postGraphql(t.url, undefined, '{ apiVersion __typename }')).body.errors).toBeUndefined();
  });
});

describe('/metrics', () => {
  it('500 distinct client-chosen operation names leave the series bounded', async () => {
    const series = async () => (await (await fetch(`${t.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('action_engine_graphql_operations_total{')).length;
    const before = await series();
    const run = async (i: number) => {
      await postGraphql(t.url, undefined, `query Anon${i} { apiVersion }`); // unauthenticated
      if (i % 4 === 0) await postGraphql(t.url, keys.agent, `query Known${i} { apiVersion }`); // authenticated, valid: 125 names
      if (i % 10 === 0) await postGraphql(t.url, keys.agent, `query Bad${i} { nope }`); // fails validation
    };
    for (let i = 0; i < 500; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => run(i + j)));
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const after = await series();
    // At most 100 distinct names + other + unauthenticated (+ names seen before), per type and outcome.
    expect(after - before).toBeLessThanOrEqual(102);
    expect(text).toMatch(/action_engine_graphql_operations_total\{type="query",name="unauthenticated",outcome="ok"\} \d+/);
    expect(text).toMatch(/name="other"/);
    expect(text).not.toMatch(/name="Anon\d+"/);
    expect(text).not.toMatch(/name="Bad\d+"/);
  });
});

describe('revocation on every API process', () => {
  it('revoked on B: the subscription socket on A closes 4403 within 5 s with no further event; HTTP on A and B says UNAUTHENTICATED', async () => {
    const b = await startTestServer({ database: 'from-env', env: { DATABASE_URL: t.app.config.databaseUrl!, WS_KEY_RECHECK_SECONDS: '600' }, redisPrefix: t.app.config.redisPrefix });
    try {
      const victim = await newAgentKey(t);
      const action = await createMove(t, victim.key);
      const ws = rawWs(t.wsUrl, bearer(victim.key));
      await ws.until((m) => m.type === 'connection_ack', 'ack');
      ws.send({ id: 's', type: 'subscribe', payload: { query: STATUS, variables: { id: action } } });
      await ws.until((m) => m.id === 's' && m.type === 'next', 'the current state');
      // Both processes have the key in their caches.
      for (const server of [t, b]) expect((await postGraphql(server.url, victim.key, '{ me { role } }')).body.data).toEqual({ me: { role: 'AGENT' } });

      const revokedAt = Date.now();
      expect((await postGraphql(b.url, keys.admin, REVOKE, { id: victim.apiKeyId })).body.data.revokeApiKey.errors).toEqual([]);
      const closed = await ws.closed;
      expect(closed.code).toBe(4403);
      expect(closed.reason).toMatch(/revoked/);
      expect(ws.closedAt! - revokedAt).toBeLessThan(5000);
      const eventsBefore = ws.messages.length;
      await approve(b, action);
      for (const server of [t, b]) {
        const me = await postGraphql(server.url, victim.key, '{ me { role } }');
        expect(me.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      }
      expect(Date.now() - revokedAt).toBeLessThan(5000);
      await sleep(300);
      expect(ws.messages.length).toBe(eventsBefore);
      expect(ws.messages.some((m) => m.payload?.data?.actionStatus?.status === 'APPROVED')).toBe(false);
    } finally {
      await b.close();
    }
  });

  it('caps subscription streams over server-sent events per key like WebSocket connections, and frees a slot when one closes', async () => {
    const own = await newAgentKey(t);
    const action = await createMove(t, own.key);
    const open = () => {
      const controller = new AbortController();
      const response = fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${own.key}` },
        body: JSON.stringify({ query: STATUS, variables: { id: action } }),
        signal: controller.signal,
      });
      return { controller, response };
    };
    const firstText = async (res: Response) => {
      const reader = res.body!.getReader();
      let text = '';
      const until = Date.now() + 5000;
      while (!/PENDING|TOO_MANY_CONNECTIONS/.test(text) && Date.now() < until) {
        const step = await Promise.race([reader.read(), sleep(until - Date.now()).then(() => null)]);
        if (!step || step.done) break;
        text += Buffer.from(step.value).toString();
      }
      return text;
    };
    const a = open();
    const b = open();
    expect(await firstText(await a.response)).toMatch(/PENDING/);
    expect(await firstText(await b.response)).toMatch(/PENDING/);
    const c = open();
    expect(await firstText(await c.response)).toMatch(/TOO_MANY_CONNECTIONS.*|at most 2/);
    a.controller.abort();
    await sleep(300);
    const d = open();
    expect(await firstText(await d.response)).toMatch(/PENDING/);
    b.controller.abort();
    c.controller.abort();
    d.controller.abort();
  });

  it('ends a subscription over server-sent events (HTTP) too, within 5 s, with an UNAUTHENTICATED error', async () => {
    const victim = await newAgentKey(t);
    const action = await createMove(t, victim.key);
    const res = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${victim.key}` },
      body: JSON.stringify({ query: STATUS, variables: { id: action } }),
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (check: () => boolean, ms: number) => {
      const deadline = Date.now() + ms;
      while (!check()) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out; stream so far: ${text}`);
        const step = await Promise.race([reader.read(), sleep(left).then(() => null)]);
        if (!step || step.done) return step?.done ?? false;
        text += Buffer.from(step.value).toString();
      }
      return false;
    };
    await readUntil(() => text.includes('PENDING'), 5000);
    const at = Date.now();
    expect((await postGraphql(t.url, keys.admin, REVOKE, { id: victim.apiKeyId })).body.data.revokeApiKey.errors).toEqual([]);
    await readUntil(() => text.includes('API key revoked'), 5000);
    expect(Date.now() - at).toBeLessThan(5000);
    expect(text).toMatch(/UNAUTHENTICATED/);
    await approve(t, action);
    let ended = false;
    await readUntil(() => ended, 3000).then((done) => (ended = done), () => undefined);
    const step = await Promise.race([reader.read(), sleep(1000).then(() => null)]);
    expect(step?.done ?? true, 'no event after the revocation').toBe(true);
    expect(text).not.toContain('APPROVED');
    await reader.cancel().catch(() => undefined);
  });

  it('a revocation whose announcement is lost (written straight to the database) still ends open sockets at the periodic re-check', async () => {
    const c = await startTestServer({ database: 'from-env', env: { DATABASE_URL: t.app.config.databaseUrl!, WS_KEY_RECHECK_SECONDS: '1' }, redisPrefix: t.app.config.redisPrefix });
    try {
      const victim = await newAgentKey(t);
      const ws = rawWs(c.wsUrl, bearer(victim.key));
      await ws.until((m) => m.type === 'connection_ack', 'ack');
      await t.app.db.apiKey.update({ where: { id: victim.apiKeyId }, data: { revokedAt: new Date() } });
      const at = Date.now();
      expect((await ws.closed).code).toBe(4403);
      expect(Date.now() - at).toBeLessThan(3000);
    } finally {
      await c.close();
    }
  });
});
