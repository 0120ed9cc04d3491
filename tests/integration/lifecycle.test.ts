import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expireOverdueApprovals } from '../../src/engine/approvals.js';
import { Redis } from 'ioredis';
import { createApiKey } from '../../src/engine/api-keys.js';
import { createAction } from '../../src/engine/create-action.js';
import { createRateLimiter } from '../../src/engine/rate-limiter.js';
import { closedPort } from '../helpers/ports.js';
import { graphql } from '../generated/gql.js';
import { approvalToken, readOutbox } from '../helpers/outbox.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

const CreateAction = graphql(`
  mutation CreateAction($input: CreateActionInput!) {
    createAction(input: $input) {
      requiresApproval
      action {
        id
        status
        type
        userId
        requestedBy
        error
        statusUpdates {
          status
          message
        }
      }
      errors {
        code
        message
        field
        retryAfterSeconds
      }
    }
  }
`);

const Approve = graphql(`
  mutation Approve($id: ID!) {
    approveAction(id: $id, comment: "fine") {
      action {
        id
        status
      }
      errors {
        code
        message
      }
    }
  }
`);

const Reject = graphql(`
  mutation Reject($id: ID!) {
    rejectAction(id: $id, reason: "no") {
      action {
        id
        status
      }
      errors {
        code
        message
      }
    }
  }
`);

const GetAction = graphql(`
  query GetAction($id: ID!) {
    action(id: $id) {
      id
      status
    }
  }
`);

const Me = graphql(`
  query Me {
    me {
      principalId
      role
      user {
        id
      }
    }
  }
`);

const RateLimits = graphql(`
  query RateLimits($userId: ID!, $type: String!) {
    rateLimits(userId: $userId, type: $type) {
      rule
      current
      limit
      windowSeconds
      resetsAt
    }
  }
`);

const CreateKey = graphql(`
  mutation CreateKey($input: ApiKeyInput!) {
    createApiKey(input: $input) {
      key
      userId
      errors {
        code
        message
        field
      }
    }
  }
`);

const SetKyc = graphql(`
  mutation SetKyc($userId: ID!) {
    setKycStatus(userId: $userId, status: VERIFIED) {
      user {
        kycStatus
      }
      errors {
        code
      }
    }
  }
`);

const AuditLog = graphql(`
  query AuditLog($actionId: ID, $first: Int, $after: String, $filter: AuditFilter) {
    auditLog(actionId: $actionId, first: $first, after: $after, filter: $filter) {
      edges {
        node {
          id
          event
          actor
          hash
          prevHash
          chain
          chainSeq
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

let t: TestServer;
const keys = {} as Record<'agent' | 'approver' | 'admin' | 'analyst' | 'otherAgent' | 'otherApprover' | 'bobAgent', string>;
let aliceId = '';
let bobId = '';

beforeAll(async () => {
  t = await startTestServer();
  const make = async (name: keyof typeof keys, role: 'AGENT' | 'APPROVER' | 'ADMIN' | 'ANALYST', space: string, user?: string, email?: string) => {
    const k = await createApiKey(t.app.db, { role, space, user, email });
    keys[name] = k.key;
    return k;
  };
  aliceId = (await make('agent', 'AGENT', 'acme', 'alice', 'alice@example.com')).userId!;
  await make('approver', 'APPROVER', 'acme', 'alice');
  await make('admin', 'ADMIN', 'acme');
  await make('analyst', 'ANALYST', 'acme');
  bobId = (await make('bobAgent', 'AGENT', 'acme', 'bob')).userId!;
  await make('otherAgent', 'AGENT', 'globex', 'carol', 'carol@example.com');
  await make('otherApprover', 'APPROVER', 'globex', 'carol');
});
afterAll(async () => {
  await t?.close();
});

const create = (key: string, input: { type: string; payload: unknown; idempotencyKey?: string }) =>
  t.graphql(CreateAction, { input }, { apiKey: key });

const payloads = {
  send_email: { to: ['bob@example.com'], subject: 'Hello', body: 'Hi Bob' },
  create_calendar_event: { title: 'Sync', start_time: '2026-12-01T10:00:00Z', end_time: '2026-12-01T11:00:00Z' },
  move_file: { from: 'inbox/a.txt', to: 'archive/a.txt' },
  create_document: { title: 'Notes', content: '# Notes' },
  make_payment: { amount: 10, currency: 'EUR', recipient: 'ACME Ltd' },
  make_purchase: { items: [{ name: 'Chair', price: 50, quantity: 2 }], merchant: 'Shop', total: 100, currency: 'EUR' },
  order: { provider: 'downtown-cafe', items: [{ name: 'Latte', price: 5.5, quantity: 1 }] },
};

describe('identity', () => {
  it('refuses an operation without an API key with an authentication error', async () => {
    const result = await t.graphql(Me);
    expect(result.errors?.[0]?.message).toMatch(/authentication required/);
    expect(result.data?.me ?? null).toBeNull();
  });

  it('refuses an unknown key the same way', async () => {
    const result = await t.graphql(Me, undefined, { apiKey: 'ae_' + 'x'.repeat(43) });
    expect(result.errors?.[0]?.message).toMatch(/authentication required/);
  });

  it('creates keys for one new space and user from concurrent callers without a conflict', async () => {
    const made = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        createApiKey(t.app.db, { role: i % 2 ? 'AGENT' : 'APPROVER', space: 'race-space', user: 'race-user', email: 'race@example.com' }),
      ),
    );
    expect(new Set(made.map((m) => m.spaceId)).size).toBe(1);
    expect(new Set(made.map((m) => m.userId)).size).toBe(1);
    expect(await t.app.db.space.count({ where: { slug: 'race-space' } })).toBe(1);
  });

  it('lets an admin create a working key in its own space, shown once, and refuses others', async () => {
    const made = (await t.graphql(CreateKey, { input: { role: 'AGENT', userHandle: 'hank', email: 'hank@example.com' } }, { apiKey: keys.admin }))
      .data!.createApiKey;
    expect(made.errors).toEqual([]);
    const me = (await t.graphql(Me, undefined, { apiKey: made.key! })).data!.me;
    expect(me.role).toBe('AGENT');
    expect(me.user?.id).toBe(made.userId);
    const noUser = (await t.graphql(CreateKey, { input: { role: 'AGENT' } }, { apiKey: keys.admin })).data!.createApiKey;
    expect(noUser.errors[0]).toMatchObject({ code: 'INVALID_INPUT', field: ['input', 'userHandle'] });
    const denied = await t.graphql(CreateKey, { input: { role: 'ADMIN' } }, { apiKey: keys.approver });
    expect(denied.errors?.[0]?.message).toMatch(/forbidden/);
  });

  it('resolves the caller over graphql-ws from connectionParams', async () => {
    const client = t.wsClient({ apiKey: keys.agent });
    const result = await new Promise<{ data?: { me?: { role: string } } }>((resolve, reject) => {
      let last: unknown;
      client.subscribe({ query: '{ me { role } }' }, { next: (v) => (last = v), error: reject, complete: () => resolve(last as never) });
    });
    expect(result.data?.me?.role).toBe('AGENT');
  });
});

describe('createAction', () => {
  it('creates each built-in type with the status its default safety rules give', async () => {
    const expected: Record<string, [string, string | null]> = {
      send_email: ['APPROVED', null],
      create_calendar_event: ['APPROVED', null],
      move_file: ['PENDING', null],
      create_document: ['APPROVED', null],
      make_payment: ['BLOCKED', 'BLOCKED'],
      make_purchase: ['BLOCKED', 'KYC_REQUIRED'],
      order: ['PENDING', null],
    };
    for (const [type, payload] of Object.entries(payloads)) {
      const result = await create(keys.agent, { type, payload });
      const out = result.data!.createAction;
      expect(out.action?.status, type).toBe(expected[type]![0]);
      expect(out.errors.map((e) => e.code), type).toEqual(expected[type]![1] ? [expected[type]![1]] : []);
      expect(out.action?.userId).toBe(aliceId);
      expect(out.requiresApproval, type).toBe(['move_file', 'order', 'make_purchase'].includes(type));
      expect(out.action?.statusUpdates[0]?.status).toBe(expected[type]![0]);
    }
  });

  it('lets a purchase through to approval once an admin has verified the user\'s KYC', async () => {
    const kyc = await t.graphql(SetKyc, { userId: bobId }, { apiKey: keys.admin });
    expect(kyc.data?.setKycStatus.user?.kycStatus).toBe('VERIFIED');
    const result = await create(keys.bobAgent, { type: 'make_purchase', payload: payloads.make_purchase });
    expect(result.data?.createAction.action?.status).toBe('PENDING');
    expect(result.data?.createAction.errors).toEqual([]);
  });

  it('refuses wrong payloads naming the field, and records nothing', async () => {
    const cases: Array<[string, unknown, string[], RegExp]> = [
      ['send_email', { to: ['not-an-email'], subject: 's', body: 'b' }, ['payload', 'to', '0'], /email address/],
      ['send_email', { subject: 's', body: 'b' }, ['payload', 'to'], /required/],
      ['create_calendar_event', { ...payloads.create_calendar_event, end_time: '2026-12-01T09:00:00Z' }, ['payload', 'end_time'], /after start_time/],
      ['move_file', { from: '../../etc/passwd', to: 'x' }, ['payload', 'from'], /\.\./],
      ['make_payment', { amount: -1, currency: 'EUR', recipient: 'x' }, ['payload', 'amount'], /more than 0/],
    ];
    const before = await t.app.db.action.count();
    for (const [type, payload, field, message] of cases) {
      const out = (await create(keys.agent, { type, payload })).data!.createAction;
      expect(out.action).toBeNull();
      expect(out.errors[0]?.code).toBe('INVALID_PAYLOAD');
      expect(out.errors[0]?.field).toEqual(field);
      expect(out.errors[0]?.message).toMatch(message);
    }
    expect(await t.app.db.action.count()).toBe(before);
  });

  it('refuses an unknown type with UNKNOWN_TYPE on the type field', async () => {
    const out = (await create(keys.agent, { type: 'launch_rocket', payload: {} })).data!.createAction;
    expect(out.errors).toEqual([expect.objectContaining({ code: 'UNKNOWN_TYPE', field: ['type'] })]);
  });

  it('lets only agents create actions', async () => {
    const out = (await create(keys.approver, { type: 'send_email', payload: payloads.send_email })).data!.createAction;
    expect(out.errors[0]?.code).toBe('FORBIDDEN');
  });

  it('returns the first result for a repeated idempotencyKey and refuses the key with a different input', async () => {
    const first = (await create(keys.agent, { type: 'create_document', payload: payloads.create_document, idempotencyKey: 'doc-1' })).data!.createAction;
    const again = (await create(keys.agent, { type: 'create_document', payload: payloads.create_document, idempotencyKey: 'doc-1' })).data!.createAction;
    expect(again.action?.id).toBe(first.action?.id);
    expect(await t.app.db.action.count({ where: { idempotencyKey: 'doc-1' } })).toBe(1);
    const other = (await create(keys.agent, { type: 'create_document', payload: { ...payloads.create_document, title: 'Other' }, idempotencyKey: 'doc-1' }))
      .data!.createAction;
    expect(other.action).toBeNull();
    expect(other.errors[0]).toMatchObject({ code: 'IDEMPOTENCY_CONFLICT', field: ['idempotencyKey'] });
  });
});

describe('rate limits', () => {
  it('lets exactly 50 of 60 concurrent send_email creations through, refuses 10 with retryAfterSeconds, and reports 50/50', async () => {
    const { key, userId } = await createApiKey(t.app.db, { role: 'AGENT', space: 'acme', user: 'dave' });
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => create(key, { type: 'send_email', payload: { ...payloads.send_email, subject: `n${i}` } })),
    );
    const outs = results.map((r) => r.data!.createAction);
    const accepted = outs.filter((o) => o.action?.status === 'APPROVED');
    const limited = outs.filter((o) => o.errors[0]?.code === 'RATE_LIMITED');
    expect(accepted).toHaveLength(50);
    expect(limited).toHaveLength(10);
    for (const o of limited) {
      expect(o.action).toBeNull();
      expect(o.errors[0]!.retryAfterSeconds).toBeGreaterThan(0);
      expect(o.errors[0]!.retryAfterSeconds).toBeLessThanOrEqual(3600);
    }
    expect(await t.app.db.action.count({ where: { userId: userId! } })).toBe(50);
    const limits = (await t.graphql(RateLimits, { userId: userId!, type: 'send_email' }, { apiKey: key })).data!.rateLimits;
    expect(limits.map((l) => [l.windowSeconds, l.current, l.limit])).toEqual([
      [3600, 50, 50],
      [86400, 50, 500],
    ]);
  });
});

describe('failing closed', () => {
  it('refuses with SAFETY_UNAVAILABLE and records nothing when the rate-limit counters cannot be reached', async () => {
    const port = await closedPort();
    const deadRedis = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    deadRedis.on('error', () => {});
    try {
      const engine = { ...t.app.engine, rateLimiter: createRateLimiter(deadRedis, { prefix: 'unreachable', timeoutMs: 500 }) };
      const principal = await t.app.auth.authenticate(`Bearer ${keys.agent}`);
      const before = await t.app.db.action.count();
      await expect(createAction(engine, principal!, { id: principal!.id }, { type: 'send_email', payload: payloads.send_email })).rejects.toMatchObject({
        code: 'SAFETY_UNAVAILABLE',
      });
      expect(await t.app.db.action.count()).toBe(before);
    } finally {
      deadRedis.disconnect();
    }
  });
});

describe('approval by API', () => {
  it('keeps a move_file PENDING, refuses the requesting agent and another space, and lets the user\'s approver approve', async () => {
    const id = (await create(keys.agent, { type: 'move_file', payload: payloads.move_file })).data!.createAction.action!.id;
    const self = (await t.graphql(Approve, { id }, { apiKey: keys.agent })).data!.approveAction;
    expect(self.errors[0]?.code).toBe('FORBIDDEN');
    expect(self.errors[0]?.message).toMatch(/requested an action cannot decide it/);

    expect((await t.graphql(GetAction, { id }, { apiKey: keys.otherApprover })).data!.action).toBeNull();
    const foreign = (await t.graphql(Approve, { id }, { apiKey: keys.otherApprover })).data!.approveAction;
    expect(foreign.errors[0]?.code).toBe('NOT_FOUND');

    expect((await t.graphql(GetAction, { id }, { apiKey: keys.approver })).data!.action?.status).toBe('PENDING');
    const ok = (await t.graphql(Approve, { id }, { apiKey: keys.approver })).data!.approveAction;
    expect(ok.errors).toEqual([]);
    expect(ok.action?.status).toBe('APPROVED');

    const again = (await t.graphql(Reject, { id }, { apiKey: keys.approver })).data!.rejectAction;
    expect(again.errors[0]?.code).toBe('INVALID_TRANSITION');
  });

  it('resolves approve and reject fired together to exactly one winner', async () => {
    for (let round = 0; round < 5; round++) {
      const id = (await create(keys.agent, { type: 'move_file', payload: payloads.move_file })).data!.createAction.action!.id;
      const [a, r] = await Promise.all([
        t.graphql(Approve, { id }, { apiKey: keys.approver }),
        t.graphql(Reject, { id }, { apiKey: keys.approver }),
      ]);
      const outcomes = [a.data!.approveAction, r.data!.rejectAction];
      expect(outcomes.filter((o) => o.errors.length === 0)).toHaveLength(1);
      expect(outcomes.filter((o) => o.errors[0]?.code === 'INVALID_TRANSITION')).toHaveLength(1);
      const final = await t.app.db.action.findUniqueOrThrow({ where: { id }, include: { statusUpdates: true } });
      expect(['APPROVED', 'REJECTED']).toContain(final.status);
      expect(final.statusUpdates.filter((u) => u.status === 'APPROVED' || u.status === 'REJECTED')).toHaveLength(1);
    }
  });
});

describe('approval by email link', () => {
  it('mails a link; GET shows the page and changes nothing; POST rejects; the link is then used up; a forged token is refused', async () => {
    const outbox = t.app.config.outboxDir;
    const before = (await readOutbox(outbox)).length;
    const created = (await create(keys.agent, { type: 'order', payload: payloads.order })).data!.createAction.action!;
    const mails = (await readOutbox(outbox)).slice(before);
    expect(mails).toHaveLength(1);
    expect(mails[0]!.to).toContain('alice@example.com');
    const token = approvalToken(mails[0]!);

    const page = await fetch(`${t.url}/approvals/${token}`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('downtown-cafe');
    expect(html).toMatch(/<form[^>]+method="post"/i);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id: created.id } })).status).toBe('PENDING');

    const post = (body: string) =>
      fetch(`${t.url}/approvals/${token}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    const rejected = await post('decision=reject&reason=too+expensive');
    expect(rejected.status).toBe(200);
    const action = await t.app.db.action.findUniqueOrThrow({ where: { id: created.id } });
    expect(action.status).toBe('REJECTED');
    expect(action.decidedBy).toMatch(/^email-link:/);

    const second = await post('decision=approve');
    expect(second.status).toBeGreaterThanOrEqual(400);
    expect(second.status).toBeLessThan(500);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id: created.id } })).status).toBe('REJECTED');

    const forged = await fetch(`${t.url}/approvals/${'A'.repeat(43)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'decision=approve',
    });
    expect(forged.status).toBe(404);
  });

  it('needs the separately mailed one-time code to approve a purchase by link', async () => {
    const outbox = t.app.config.outboxDir;
    const before = (await readOutbox(outbox)).length;
    const { key } = await createApiKey(t.app.db, { role: 'AGENT', space: 'acme', user: 'bob', email: 'bob@example.com' });
    const id = (await create(key, { type: 'make_purchase', payload: payloads.make_purchase })).data!.createAction.action!.id;
    const mails = (await readOutbox(outbox)).slice(before);
    expect(mails).toHaveLength(2);
    const token = approvalToken(mails.find((m) => /\/approvals\//.test(m.text))!);
    // The code stands alone on its own line (headers hold uuid-like ids that could look like one).
    const code = /^[ \t]+(\d{4} \d{4})[ \t]*\r?$/m.exec(mails.find((m) => !/\/approvals\//.test(m.text))!.text)![1]!.replace(/\D/g, '');
    const post = (body: string) =>
      fetch(`${t.url}/approvals/${token}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });

    expect((await post('decision=approve')).status).toBe(403);
    expect((await post('decision=approve&code=00000000')).status).toBe(403);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('PENDING');
    expect((await post(`decision=approve&code=${code}`)).status).toBe(200);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('APPROVED');
  });
});

describe('expiry', () => {
  it('moves a PENDING action past its approval window to EXPIRED with an audit entry, without anyone calling anything', async () => {
    const id = (await create(keys.agent, { type: 'move_file', payload: payloads.move_file })).data!.createAction.action!.id;
    const later = new Date(Date.now() + 25 * 3600 * 1000);
    expect(await expireOverdueApprovals({ ...t.app.engine, clock: () => later })).toBeGreaterThanOrEqual(1);
    const action = await t.app.db.action.findUniqueOrThrow({ where: { id }, include: { auditEntries: true } });
    expect(action.status).toBe('EXPIRED');
    expect(action.auditEntries.map((e) => e.event)).toContain('action.expired');
  });
});

describe('audit log', () => {
  it('records the lifecycle as a chain analysts can page through, and agents cannot read', async () => {
    const id = (await create(keys.agent, { type: 'move_file', payload: payloads.move_file })).data!.createAction.action!.id;
    await t.graphql(Approve, { id }, { apiKey: keys.approver });
    const page1 = (await t.graphql(AuditLog, { actionId: id, first: 2 }, { apiKey: keys.analyst })).data!.auditLog;
    expect(page1.edges.map((e) => e.node.event)).toEqual(['action.created', 'approval.requested']);
    expect(page1.pageInfo.hasNextPage).toBe(true);
    const page2 = (await t.graphql(AuditLog, { actionId: id, first: 10, after: page1.pageInfo.endCursor }, { apiKey: keys.analyst })).data!
      .auditLog;
    expect(page2.edges.map((e) => e.node.event)).toEqual(['action.approved', 'action.queued']);
    // The action's own chain: 1, 2, 3, 4, each linked to the one before.
    const chain = [...page1.edges, ...page2.edges].map((e) => e.node);
    expect(chain.map((e) => [e.chain, e.chainSeq])).toEqual([1, 2, 3, 4].map((n) => [id, n]));
    expect(chain.slice(1).every((e, i) => e.prevHash === chain[i]!.hash)).toBe(true);
    const approverId = (await t.graphql(Me, undefined, { apiKey: keys.approver })).data!.me.principalId;
    expect(page2.edges[0]!.node.actor).toBe(approverId);
    const filtered = (await t.graphql(AuditLog, { filter: { event: ['action.approved'], actor: approverId }, first: 50 }, { apiKey: keys.analyst }))
      .data!.auditLog;
    expect(filtered.edges.length).toBeGreaterThanOrEqual(1);
    expect(filtered.edges.every((e) => e.node.event === 'action.approved')).toBe(true);
    const denied = await t.graphql(AuditLog, { actionId: id }, { apiKey: keys.agent });
    expect(denied.errors?.[0]?.message).toMatch(/forbidden|not authorized/i);
  });

  it('is refused UPDATE by the database', async () => {
    const client = new pg.Client(t.app.config.databaseUrl);
    await client.connect();
    try {
      await expect(client.query(`update "AuditEntry" set actor = 'someone-else'`)).rejects.toThrow(/append-only/);
    } finally {
      await client.end();
    }
  });
});

describe('GraphQL hardening', () => {
  it('refuses a 40-level-deep query and keeps serving', async () => {
    let selection = 'id';
    for (let i = 0; i < 20; i++) selection = `action { receipts { ${selection} } }`;
    const { body } = await postGraphql(t.url, keys.agent, `{ actions { edges { node { receipts { ${selection} } } } } }`);
    expect(body.errors?.map((e) => e.message).join('\n')).toMatch(/(depth|Cost) limit of \d+ exceeded/);
    const me = await t.graphql(Me, undefined, { apiKey: keys.agent });
    expect(me.data?.me.role).toBe('AGENT');
  });

  it('refuses a query deeper than 12 levels even when it is cheap', async () => {
    let selection = 'id';
    for (let i = 0; i < 7; i++) selection = `action { executions { ${selection} } }`;
    const { body } = await postGraphql(t.url, keys.agent, `{ action(id: "00000000-0000-0000-0000-000000000000") { executions { ${selection} } } }`);
    expect(body.errors?.map((e) => e.message).join('\n')).toMatch(/Query depth limit of 12 exceeded/);
  });
});
