import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { parse } from 'graphql';
import { executeOverWs, startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

const acceptJson = { headers: { accept: 'application/json' } };

let t: TestServer;
let agent: string;
let approver: string;
let admin: string;
let operator: string;
let analyst: string;
let userId: string;

/** A JSON value nested `depth` levels deep, as text (JSON.stringify itself overflows on it). */
const DEEP = (depth: number) => `${'{"a":'.repeat(depth)}"leaf"${'}'.repeat(depth)}`;

async function actionCount() {
  return t.app.db.action.count();
}

beforeAll(async () => {
  t = await startTestServer({ env: { MAX_REQUEST_BYTES: '1000000' } });
  const a = await createApiKey(t.app.db, { role: 'AGENT', space: 'bad-input', user: 'alice' });
  agent = a.key;
  userId = a.userId!;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'bad-input', user: 'alice' })).key;
  admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'bad-input' })).key;
  operator = (await createApiKey(t.app.db, { role: 'OPERATOR', space: 'bad-input' })).key;
  analyst = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'bad-input' })).key;
});
afterAll(async () => {
  await t?.close();
});

const HUGE = 'x'.repeat(100_000);

/** POSTs 3 MB as a chunked body (no Content-Length), as fast as the server reads it. */
function postChunked3MB(path: string, contentType: string, prefix: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${t.url}${path}`, { method: 'POST', headers: { 'content-type': contentType, 'transfer-encoding': 'chunked' } });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', (error) => reject(error));
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let sent = 0;
    const pump = () => {
      while (sent < 3 * 1024 * 1024) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    req.write(prefix);
    pump();
  });
}

describe('malformed ids', () => {
  // Every argument that takes an id, in a query or in a mutation (payload errors).
  const queries: Array<[string, string, string, string[]]> = [
    ['action(id)', 'query($v: ID!) { action(id: $v) { id } }', 'approver', ['v']],
    ['actions(filter.userId)', 'query($v: ID) { actions(filter: { userId: $v }) { edges { node { id } } } }', 'approver', ['filter', 'userId']],
    ['receipts(actionId)', 'query($v: ID) { receipts(actionId: $v) { edges { node { id } } } }', 'approver', ['actionId']],
    ['auditLog(actionId)', 'query($v: ID) { auditLog(actionId: $v) { edges { node { id } } } }', 'analyst', ['actionId']],
    ['rateLimits(userId)', 'query($v: ID!) { rateLimits(userId: $v, type: "send_email") { current } }', 'approver', ['userId']],
  ];
  const keys = () => ({ agent, approver, admin, operator, analyst }) as Record<string, string>;

  for (const [name, query, role, field] of queries) {
    for (const [label, value] of [
      ['not a UUID', 'not-a-uuid'],
      ['100 kB long', HUGE],
    ] as const) {
      it(`${name} answers NOT_FOUND naming the argument for an id that is ${label}, with a short message`, async () => {
        const out = await postGraphql(t.url, keys()[role], query.replace(/\$v/g, '$v'), { v: value }, acceptJson);
        expect(out.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
        expect(out.body.errors?.[0]?.extensions?.field).toEqual(field.map((f) => (f === 'v' ? 'id' : f)));
        expect(out.body.errors?.[0]?.message).not.toMatch(/Unexpected error/);
        expect(JSON.stringify(out).length).toBeLessThan(2000);
      });
    }
  }

  const mutations: Array<[string, string, string, string[]]> = [
    ['approveAction(id)', 'mutation($v: ID!) { approveAction(id: $v) { errors { code field message } } }', 'approver', ['id']],
    ['rejectAction(id)', 'mutation($v: ID!) { rejectAction(id: $v) { errors { code field message } } }', 'approver', ['id']],
    ['cancelAction(id)', 'mutation($v: ID!) { cancelAction(id: $v) { errors { code field message } } }', 'agent', ['id']],
    ['rollbackAction(id)', 'mutation($v: ID!) { rollbackAction(id: $v, reason: "r") { errors { code field message } } }', 'admin', ['id']],
    ['completeManualTask(id)', 'mutation($v: ID!) { completeManualTask(id: $v) { errors { code field message } } }', 'operator', ['id']],
    ['setKycStatus(userId)', 'mutation($v: ID!) { setKycStatus(userId: $v, status: VERIFIED) { errors { code field message } } }', 'admin', ['userId']],
    [
      'createAction(input.userId)',
      'mutation($v: ID) { createAction(input: { type: "send_email", payload: {}, userId: $v }) { requiresApproval errors { code field message } } }',
      'agent',
      ['input', 'userId'],
    ],
  ];
  for (const [name, query, role, field] of mutations) {
    it(`${name} answers a malformed or 100 kB id with a NOT_FOUND UserError naming the field, changing nothing`, async () => {
      const before = await actionCount();
      for (const value of ['not-a-uuid', HUGE]) {
        const out = await postGraphql(t.url, keys()[role], query, { v: value }, acceptJson);
        expect(out.body.errors).toBeUndefined();
        const payload = Object.values(out.body.data!)[0] as { errors: Array<{ code: string; field: string[]; message: string }> };
        expect(payload.errors).toEqual([expect.objectContaining({ code: 'NOT_FOUND', field })]);
        expect(payload.errors[0]!.message.length).toBeLessThan(200);
      }
      expect(await actionCount()).toBe(before);
    });
  }

  it('a malformed id in a literal argument is refused the same way as in a variable', async () => {
    const out = await postGraphql(t.url, approver, '{ action(id: "nope") { id } }', {}, acceptJson);
    expect(out.body.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND', field: ['id'] });
    expect(out.body.errors?.[0]?.message).toBe('no action with id nope');
    const task = await postGraphql(t.url, operator, 'mutation { completeManualTask(id: "nope") { errors { message } } }', {}, acceptJson);
    expect(task.body.data!.completeManualTask.errors[0].message).toBe('no manual task with id nope');
  });

  it('actionStatus(actionId) and actionEvents(filter.userId) refuse malformed ids over graphql-ws with NOT_FOUND', async () => {
    const client = t.wsClient({ apiKey: approver });
    const outcome = (query: string) =>
      new Promise<unknown>((resolve) => {
        client.subscribe({ query }, { next: resolve, error: resolve, complete: () => resolve('completed') });
      });
    const a = (await outcome(`subscription { actionStatus(actionId: "${'y'.repeat(5000)}") { status } }`)) as any;
    const errorsA = Array.isArray(a) ? a : a.errors;
    expect(errorsA[0].extensions?.code ?? errorsA[0].message).toMatch(/NOT_FOUND|no action/);
    const b = (await outcome('subscription { actionEvents(filter: { userId: "no such user!" }) { status } }')) as any;
    const errorsB = Array.isArray(b) ? b : b.errors;
    expect(errorsB[0].message).toMatch(/no user/);
  });

  it('a cursor that was never given out is refused as INVALID_INPUT, not an internal error', async () => {
    const out = await postGraphql(t.url, approver, 'query($c: String) { actions(first: 2, after: $c) { edges { node { id } } } }', { c: 'garbage' }, acceptJson);
    expect(out.body.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['after'] });
  });
});

describe('users by handle', () => {
  it('rateLimits, actions(filter) and createAction accept the user\'s handle as well as the id', async () => {
    const byHandle = await postGraphql(t.url, approver, '{ rateLimits(userId: "alice", type: "send_email") { current limit } }', {}, acceptJson);
    const byId = await postGraphql(t.url, approver, `{ rateLimits(userId: "${userId}", type: "send_email") { current limit } }`, {}, acceptJson);
    expect(byHandle.body.errors).toBeUndefined();
    expect(byHandle.body.data).toEqual(byId.body.data);

    const created = await postGraphql(
      t.url,
      agent,
      'mutation { createAction(input: { type: "create_document", userId: "alice", payload: { title: "By handle", content: "x" } }) { action { id userId } errors { code field message } } }',
      {},
      acceptJson,
    );
    expect(created.body.data!.createAction.errors).toEqual([]);
    expect(created.body.data!.createAction.action.userId).toBe(userId);

    const listed = await postGraphql(t.url, approver, '{ actions(filter: { userId: "alice" }) { edges { node { id } } } }', {}, acceptJson);
    expect(listed.body.data!.actions.edges.map((e: { node: { id: string } }) => e.node.id)).toContain(created.body.data!.createAction.action.id);
  });

  it('setKycStatus takes a handle; an unknown handle is NOT_FOUND naming userId', async () => {
    const ok = await postGraphql(t.url, admin, 'mutation { setKycStatus(userId: "alice", status: PENDING) { user { id kycStatus } errors { code } } }', {}, acceptJson);
    expect(ok.body.data!.setKycStatus).toEqual({ user: { id: userId, kycStatus: 'PENDING' }, errors: [] });
    const missing = await postGraphql(t.url, admin, 'mutation { setKycStatus(userId: "bob", status: PENDING) { user { id } errors { code field } } }', {}, acceptJson);
    expect(missing.body.data!.setKycStatus).toEqual({ user: null, errors: [{ code: 'NOT_FOUND', field: ['userId'] }] });
  });
});

describe('createApiKey input', () => {
  it('refuses a 100 kB userHandle, email or name with INVALID_INPUT naming the field, a short message, and no principal created', async () => {
    const before = await t.app.db.principal.count();
    const create = 'mutation($input: ApiKeyInput!) { createApiKey(input: $input) { key errors { code field message } } }';
    for (const [input, field] of [
      [{ role: 'AGENT', userHandle: HUGE }, 'userHandle'],
      [{ role: 'AGENT', userHandle: 'carol', email: `${HUGE}@example.com` }, 'email'],
      [{ role: 'OPERATOR', name: HUGE }, 'name'],
      // A handle shaped like a user id could never be reached: wherever a user is named, the id wins.
      [{ role: 'AGENT', userHandle: userId }, 'userHandle'],
      [{ role: 'AGENT', userHandle: '00000000-0000-0000-0000-000000000000' }, 'userHandle'],
    ] as const) {
      const out = await postGraphql(t.url, admin, create, { input }, acceptJson);
      const errors = out.body.data!.createApiKey.errors as Array<{ code: string; field: string[]; message: string }>;
      expect(out.body.data!.createApiKey.key).toBeNull();
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ code: 'INVALID_INPUT', field: ['input', field] });
      expect(errors[0]!.message.length).toBeLessThan(200);
    }
    expect(await t.app.db.principal.count()).toBe(before);
  });
});

describe('strings, dates and depth at the edge', () => {
  const create = 'mutation($input: CreateActionInput!) { createAction(input: $input) { action { id } errors { code field message } } }';

  it('refuses NUL characters and unpaired surrogates in variables and literals with INVALID_INPUT naming the field; nothing is written', async () => {
    const before = await actionCount();
    for (const bad of ['a\u0000b', 'a\ud800b', 'x\udc00']) {
      const out = await postGraphql(t.url, agent, create, { input: { type: 'create_document', payload: { title: bad, content: 'c' } } }, acceptJson);
      expect(out.body.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'payload', 'title'] });
    }
    const literal = await postGraphql(t.url, agent, 'mutation { cancelAction(id: "00000000-0000-4000-8000-000000000000", reason: "a\\u0000b") { errors { code } } }', {}, acceptJson);
    expect(literal.body.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['reason'] });
    expect(literal.body.errors?.[0]?.message).toMatch(/cancelAction\(reason\).*NUL/);
    expect(await actionCount()).toBe(before);
  });

  it('refuses a NUL character in variables over graphql-ws too, naming the field', async () => {
    const before = await actionCount();
    const result = await executeOverWs(t.wsClient({ apiKey: agent }), parse(create), {
      input: { type: 'create_document', payload: { title: 'a\u0000b', content: 'c' } },
    } as never);
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'payload', 'title'] });
    expect(await actionCount()).toBe(before);
  });

  it('createAction refuses control characters (C0 but TAB/LF/CR, DEL, C1) with INVALID_INPUT naming the field, and line breaks or bidi controls in single-line fields with INVALID_PAYLOAD; nothing is written', async () => {
    const before = await actionCount();
    const email = (subject: string, body = 'b') => ({ input: { type: 'send_email', payload: { to: ['a@b.co'], subject, body } } });
    // In a variable, anywhere in the payload (keys too), and in other arguments.
    for (const c of ['\u0001', '\u0008', '\u000b', '\u001b', '\u007f', '\u0080', '\u009f']) {
      const out = await postGraphql(t.url, agent, create, email('s', `x${c}y`), acceptJson);
      expect(out.body.errors?.[0]?.extensions, JSON.stringify(c)).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'payload', 'body'] });
      expect(out.body.errors?.[0]?.message).toMatch(/control character U\+00[0-9A-F]{2}, which is not allowed/);
    }
    const key = await postGraphql(t.url, agent, create, { input: { type: 'create_document', payload: { title: 't', content: 'c', ['x\u0007']: 1 } } }, acceptJson);
    expect(key.body.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'payload', 'x\u0007'] });
    const idem = await postGraphql(t.url, agent, create, { input: { type: 'create_document', payload: { title: 't', content: 'c' }, idempotencyKey: 'k\u001b' } }, acceptJson);
    expect(idem.body.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'idempotencyKey'] });
    // Written in the query as a literal.
    const literal = await postGraphql(t.url, agent, 'mutation { createAction(input: { type: "create_document", payload: { title: "a\\u0085b", content: "c" } }) { errors { code } } }', {}, acceptJson);
    expect(literal.body.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'payload', 'title'] });
    // In the other JSON arguments (settings, outcome).
    const settings = await postGraphql(
      t.url,
      admin,
      'mutation($s: JSON!) { upsertHandlerConfig(input: { handler: "manual", provider: "*", settings: $s }) { errors { code } } }',
      { s: { note: 'a\u007fb' } },
      acceptJson,
    );
    expect(settings.body.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['s', 'note'] });
    const outcome = await postGraphql(
      t.url,
      operator,
      'mutation { completeManualTask(id: "00000000-0000-4000-8000-000000000000", outcome: { note: "a\\u0002b" }) { errors { code } } }',
      {},
      acceptJson,
    );
    expect(outcome.body.errors?.[0]?.extensions).toMatchObject({ code: 'INVALID_INPUT', field: ['outcome', 'note'] });

    // Header injection in a single-line field: a payload error naming the field and what is not allowed.
    const injected = await postGraphql(t.url, agent, create, email('hi\r\nBcc: evil@x.co'), acceptJson);
    expect(injected.body.errors).toBeUndefined();
    expect(injected.body.data!.createAction).toEqual({
      action: null,
      errors: [
        {
          code: 'INVALID_PAYLOAD',
          field: ['payload', 'subject'],
          message: 'payload.subject: must be a single line: contains a line break (U+000D CR); CR, LF, U+2028 and U+2029 are not allowed here',
        },
      ],
    });
    const bidi = await postGraphql(t.url, agent, create, { input: { type: 'create_document', payload: { title: 'invoice\u202Efdp.exe', content: 'c' } } }, acceptJson);
    expect(bidi.body.data!.createAction.errors).toEqual([
      expect.objectContaining({ code: 'INVALID_PAYLOAD', field: ['payload', 'title'], message: expect.stringMatching(/U\+202E; override and isolate characters/) }),
    ]);
    expect(await actionCount()).toBe(before);

    // Multi-line fields keep CR, LF and TAB.
    const ok = await postGraphql(t.url, agent, create, email('Report', 'line 1\r\nline 2\n\tindented'), acceptJson);
    expect(ok.body.data!.createAction.errors).toEqual([]);
    expect(await actionCount()).toBe(before + 1);
  });

  it('upsertSafetyRule refuses a RATE_LIMIT window over 366 days or a limit over 1,000,000 with INVALID_INPUT naming the field; no rule is written', async () => {
    const upsert = 'mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { rule { id } errors { code field message } } }';
    const before = await t.app.db.safetyRule.count();
    for (const [limit, windowSeconds, field] of [
      [10, 366 * 86_400 + 1, 'windowSeconds'],
      [10, 0, 'windowSeconds'],
      [1_000_001, 3600, 'limit'],
      [0, 3600, 'limit'],
    ] as const) {
      const out = await postGraphql(t.url, admin, upsert, { input: { actionType: 'send_email', kind: 'RATE_LIMIT', limit, windowSeconds } }, acceptJson);
      expect(out.body.data!.upsertSafetyRule, `${limit}/${windowSeconds}`).toEqual({
        rule: null,
        errors: [{ code: 'INVALID_INPUT', field: ['input', field], message: expect.stringMatching(field === 'limit' ? /limit from 1 to 1,000,000/ : /windowSeconds from 1 to 31,622,400 \(366 days\)/) }],
      });
    }
    expect(await t.app.db.safetyRule.count()).toBe(before);
    const notRate = await postGraphql(t.url, admin, upsert, { input: { actionType: 'send_email', kind: 'BLOCKED', windowSeconds: 60 } }, acceptJson);
    expect(notRate.body.data!.upsertSafetyRule.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', field: ['input', 'windowSeconds'] })]);
    expect(await t.app.db.safetyRule.count()).toBe(before);
    const edge = await postGraphql(t.url, admin, upsert, { input: { actionType: 'send_email', kind: 'RATE_LIMIT', limit: 1_000_000, windowSeconds: 366 * 86_400 } }, acceptJson);
    expect(edge.body.data!.upsertSafetyRule.errors).toEqual([]);
  });

  it('refuses impossible dates (2030-02-31, year 0000, hour 24) in DateTime arguments', async () => {
    for (const when of ['2030-02-31T10:00:00Z', '0000-01-01T00:00:00Z', '2030-01-01T24:00:00Z']) {
      const out = await postGraphql(t.url, agent, create, { input: { type: 'create_document', payload: { title: 't', content: 'c' }, scheduledFor: when } }, acceptJson);
      expect(out.body.errors?.[0]?.message).toMatch(/scheduledFor/);
      expect(out.body.errors?.[0]?.message).not.toMatch(/Unexpected error/);
    }
    const literal = await postGraphql(t.url, analyst, '{ auditLog(filter: { from: "2030-02-31T00:00:00Z" }) { edges { node { id } } } }', {}, acceptJson);
    expect(literal.body.errors?.[0]?.message).toMatch(/no day 31/);
    const leap = await postGraphql(t.url, agent, create, { input: { type: 'create_document', payload: { title: 'leap', content: 'c' }, scheduledFor: '2028-02-29T10:00:00Z' } }, acceptJson);
    expect(leap.body.errors).toBeUndefined();
  });

  it('refuses impossible dates in payload date fields (start_time/end_time) naming the field', async () => {
    const out = await postGraphql(
      t.url,
      agent,
      create,
      {
        input: { type: 'create_calendar_event', payload: { title: 'x', start_time: '2030-02-31T10:00:00Z', end_time: '0000-03-01T10:00:00Z' } },
      },
      acceptJson,
    );
    const errors = out.body.data!.createAction.errors as Array<{ code: string; field: string[] }>;
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: 'INVALID_PAYLOAD', field: ['payload', 'start_time'] }),
        expect.objectContaining({ code: 'INVALID_PAYLOAD', field: ['payload', 'end_time'] }),
      ]),
    );
  });

  it('refuses 5,000-deep JSON in payload, settings and outcome with a clear error, quickly', async () => {
    const deep = DEEP(5000);
    const before = await actionCount();
    const started = Date.now();
    const out = await postGraphql(t.url, agent, create, `{"input":{"type":"create_document","payload":{"title":"t","content":"c","folder":${deep}}}}`, acceptJson);
    expect(out.body.errors?.[0]?.extensions?.code).toBe('INVALID_INPUT');
    expect(out.body.errors?.[0]?.message).toMatch(/nested more than/);
    const settings = await postGraphql(
      t.url,
      admin,
      'mutation($s: JSON!) { upsertHandlerConfig(input: { handler: "manual", provider: "*", settings: $s }) { errors { code } } }',
      `{"s":${deep}}`,
      acceptJson,
    );
    expect(settings.body.errors?.[0]?.message).toMatch(/nested more than/);
    const outcome = await postGraphql(
      t.url,
      operator,
      'mutation($o: JSON) { completeManualTask(id: "00000000-0000-4000-8000-000000000000", outcome: $o) { errors { code } } }',
      `{"o":${deep}}`,
      acceptJson,
    );
    expect(outcome.body.errors?.[0]?.message).toMatch(/nested more than/);
    // 33 levels inside the JSON scalar: refused by the scalar, naming where.
    let d33: unknown = 1;
    for (let i = 0; i < 33; i++) d33 = [d33];
    const scalar = await postGraphql(
      t.url,
      operator,
      'mutation($o: JSON) { completeManualTask(id: "00000000-0000-4000-8000-000000000000", outcome: $o) { errors { code } } }',
      { o: d33 },
      acceptJson,
    );
    expect(scalar.body.errors?.[0]?.message).toMatch(/\$o.*nested more than 32 levels/s);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await actionCount()).toBe(before);
  });
});

describe('HTTP edge', () => {
  it('answers malformed percent-encodings with 404/400, never 500', async () => {
    for (const path of ['/approvals/%E0%A4%A', '/approvals/%', '/approvals/%ZZ']) {
      const res = await fetch(`${t.url}${path}`);
      expect([400, 404]).toContain(res.status);
      await res.text();
    }
    const gqlGet = await fetch(`${t.url}/graphql?query=%E0%A4%A`, { headers: { accept: 'application/json', authorization: `Bearer ${agent}` } });
    expect([400, 404]).toContain(gqlGet.status);
    const other = await fetch(`${t.url}/nothing/%E0%A4%A`);
    expect(other.status).toBe(404);
  });

  it('enforces MAX_REQUEST_BYTES on the bytes read: a 3 MB chunked body without Content-Length gets 413', async () => {
    const { status, body } = await postChunked3MB('/graphql', 'application/json', '{"query":"');
    expect(status).toBe(413);
    expect(body).toMatch(/larger than 1000000 bytes/);
    // The server still answers afterwards.
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  });

  it('a malformed JSON body gets 400 naming the problem, without echoing the body or library details', async () => {
    const res = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${agent}` },
      body: '{"query": "{ apiVersion }", "variables": {"secretish": "echo-me-not" ',
    });
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(text).toMatch(/POST body sent invalid JSON/);
    expect(text).not.toMatch(/echo-me-not|SyntaxError|position \d+|at JSON\.parse/);
  });

  it('still accepts a small chunked body', async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked', authorization: `Bearer ${agent}` },
      });
      req.on('response', (r) => {
        let text = '';
        r.on('data', (d: Buffer) => (text += d.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.write('{"query":"{ apiVer');
      req.end('sion }"}');
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).data.apiVersion).toMatch(/\d/);
  });
});

describe('payload errors through createAction', () => {
  const create = 'mutation($input: CreateActionInput!) { createAction(input: $input) { action { id } requiresApproval errors { code field message } } }';

  it('reports every problem of a payload, one UserError each, with its field and what was expected; nothing is recorded', async () => {
    const before = await actionCount();
    const out = await postGraphql(t.url, agent, create, { input: { type: 'send_email', payload: { to: 5, subject: 3, extra: true } } }, acceptJson);
    expect(out.body.errors).toBeUndefined();
    expect(out.body.data!.createAction.action).toBeNull();
    expect(out.body.data!.createAction.errors).toEqual([
      { code: 'INVALID_PAYLOAD', field: ['payload', 'to'], message: 'payload.to: expected an array, got a whole number' },
      { code: 'INVALID_PAYLOAD', field: ['payload', 'subject'], message: 'payload.subject: expected a string, got a whole number' },
      { code: 'INVALID_PAYLOAD', field: ['payload', 'body'], message: 'payload.body: is required' },
      { code: 'INVALID_PAYLOAD', field: ['payload', 'extra'], message: 'payload.extra: unknown field "extra"' },
    ]);
    expect(await actionCount()).toBe(before);
  });

  it('refuses a purchase without a currency, or whose total is not the sum of its items, naming payload.total with both numbers', async () => {
    const items = [{ name: 'Chair', price: 50, quantity: 2 }];
    const noCurrency = await postGraphql(t.url, agent, create, { input: { type: 'make_purchase', payload: { items, merchant: 'Shop', total: 100 } } }, acceptJson);
    expect(noCurrency.body.data!.createAction.errors).toEqual([expect.objectContaining({ code: 'INVALID_PAYLOAD', field: ['payload', 'currency'] })]);
    const wrongTotal = await postGraphql(t.url, agent, create, { input: { type: 'make_purchase', payload: { items, merchant: 'Shop', total: 90, currency: 'EUR' } } }, acceptJson);
    expect(wrongTotal.body.data!.createAction.errors).toEqual([
      expect.objectContaining({ code: 'INVALID_PAYLOAD', field: ['payload', 'total'], message: expect.stringMatching(/90\.00.*100\.00/) }),
    ]);
  });

  it('actionTypes publishes the checks in the JSON Schema and derives reversible from the handler chain', async () => {
    const out = await postGraphql(t.url, agent, '{ actionTypes { type reversible handlers payloadSchema } }', {}, acceptJson);
    const byType = Object.fromEntries((out.body.data!.actionTypes as Array<{ type: string }>).map((t) => [t.type, t])) as Record<string, any>;
    expect(byType.move_file.handlers).toEqual(['move_file.filesystem', 'manual']);
    expect(byType.move_file.reversible).toBe(true);
    expect(byType.create_document.reversible).toBe(true);
    expect(byType.send_email.reversible).toBe(false);
    expect(byType.move_file.payloadSchema.properties.from.pattern).toBeTruthy();
    expect(byType.create_calendar_event.payloadSchema.properties.end_time.description).toMatch(/after start_time/);
    expect(byType.make_purchase.payloadSchema.required).toContain('currency');
  });

  it('rollbackAction answers NOT_REVERSIBLE for a move_file completed by an operator (the manual handler cannot undo it)', async () => {
    const created = await postGraphql(t.url, agent, create, { input: { type: 'move_file', payload: { from: 'a.txt', to: 'b.txt' } } }, acceptJson);
    const id = created.body.data!.createAction.action.id as string;
    // As if an operator had carried it out (the manual handler completes it).
    await t.app.db.action.update({ where: { id }, data: { status: 'COMPLETED' } });
    const out = await postGraphql(t.url, admin, `mutation { rollbackAction(id: "${id}", reason: "undo") { errors { code message } } }`, {}, acceptJson);
    expect(out.body.data!.rollbackAction.errors).toEqual([expect.objectContaining({ code: 'NOT_REVERSIBLE' })]);
  });
});

describe('approval form body limit', () => {
  it('a 3 MB chunked POST to an approval link is refused on the bytes read, with an answer and a clean close', async () => {
    const { status } = await postChunked3MB('/approvals/sometoken', 'application/x-www-form-urlencoded', 'decision=approve&x=');
    expect(status).toBe(413);
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  });
});
