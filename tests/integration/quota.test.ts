import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { ruleKey } from '../../src/engine/safety.js';
import { approvalToken, readOutbox } from '../helpers/outbox.js';
import { startOwnRedis, type OwnRedis } from '../helpers/own-services.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

const acceptGraphqlResponse = { headers: { accept: 'application/graphql-response+json, application/json' } };

/*
 * Quota and approval abuse (issue #7): units are consumed only by recorded actions, counters
 * survive a Redis restart, approval requests per user are limited, and the one-time-code lock
 * on approval links holds under concurrency. Real server, PostgreSQL and Redis throughout.
 */

const CREATE = `mutation Create($input: CreateActionInput!) {
  createAction(input: $input) {
    requiresApproval
    action { id status }
    errors { code message field retryAfterSeconds }
  }
}`;

const RATE_LIMITS = `query RateLimits($userId: ID!, $type: String!) {
  rateLimits(userId: $userId, type: $type) { current limit windowSeconds }
}`;

interface CreateResult {
  requiresApproval: boolean;
  action: { id: string; status: string } | null;
  errors: Array<{ code: string; message: string; field: string[] | null; retryAfterSeconds: number | null }>;
}

async function create(t: TestServer, apiKey: string, input: Record<string, unknown>) {
  return postGraphql<{ createAction: CreateResult }>(t.url, apiKey, CREATE, { input }, acceptGraphqlResponse).then((r) => r.body);
}

async function current(t: TestServer, apiKey: string, userId: string, type: string): Promise<number[]> {
  const res = (await postGraphql<{ rateLimits: Array<{ current: number; limit: number; windowSeconds: number }> }>(t.url, apiKey, RATE_LIMITS, { userId, type }, acceptGraphqlResponse)).body;
  if (!res.data) throw new Error(`rateLimits failed: ${JSON.stringify(res.errors)}`);
  return res.data.rateLimits.map((r) => r.current);
}

/** An agent (and its user, with an email address) in a space of its own, plus an admin there. */
async function agentIn(t: TestServer, space: string) {
  const agent = await createApiKey(t.app.db, { role: 'AGENT', space, user: 'alice', email: `alice@${space}.example.com` });
  const admin = await createApiKey(t.app.db, { role: 'ADMIN', space });
  const user = await t.app.db.user.findUniqueOrThrow({ where: { id: agent.userId! }, select: { id: true, spaceId: true } });
  return { key: agent.key, admin: admin.key, userId: user.id, spaceId: user.spaceId };
}

/** A space's own rate limit (replacing the default in the same slot). */
async function rateRule(t: TestServer, spaceId: string, actionType: string, limit: number, windowSeconds: number) {
  const rule = { spaceId, actionType, kind: 'RATE_LIMIT' as const, windowSeconds };
  await t.app.db.safetyRule.create({ data: { ...rule, ruleKey: ruleKey(rule), limit } });
}

const email = (subject: string) => ({ type: 'send_email', payload: { to: ['bob@example.com'], subject, body: 'Hi' } });
const post = (t: TestServer, token: string, body: string) =>
  fetch(`${t.url}/approvals/${token}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });

describe('quota on the shared services', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('100 concurrent identical requests with one idempotencyKey all answer with the same action and consume ONE unit', async () => {
    const a = await agentIn(t, 'idem-race');
    const results = await Promise.all(Array.from({ length: 100 }, () => create(t, a.key, { ...email('once'), idempotencyKey: 'k-1' })));
    const ids = new Set(results.map((r) => r.data?.createAction.action?.id));
    expect(results.every((r) => r.data?.createAction.errors.length === 0)).toBe(true);
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(await t.app.db.action.count({ where: { userId: a.userId } })).toBe(1);
    // send_email: 50 per hour and 500 per day.
    expect(await current(t, a.key, a.userId, 'send_email')).toEqual([1, 1]);
    // A later repeat is a replay, and a new key is a new unit.
    expect((await create(t, a.key, { ...email('once'), idempotencyKey: 'k-1' })).data!.createAction.action!.id).toBe([...ids][0]);
    await create(t, a.key, { ...email('twice'), idempotencyKey: 'k-2' });
    expect(await current(t, a.key, a.userId, 'send_email')).toEqual([2, 2]);
  });

  it('racing requests with one idempotencyKey and different inputs: one action, the others IDEMPOTENCY_CONFLICT, one unit', async () => {
    const a = await agentIn(t, 'idem-conflict');
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => create(t, a.key, { ...email(`variant ${i % 2}`), idempotencyKey: 'k' })));
    const codes = results.map((r) => r.data?.createAction.errors[0]?.code ?? (r.data?.createAction.action ? 'OK' : JSON.stringify(r.errors)));
    expect(codes.every((c) => c === 'OK' || c === 'IDEMPOTENCY_CONFLICT')).toBe(true);
    expect(codes.filter((c) => c === 'IDEMPOTENCY_CONFLICT').length).toBeGreaterThanOrEqual(1);
    expect(await t.app.db.action.count({ where: { userId: a.userId } })).toBe(1);
    expect(await current(t, a.key, a.userId, 'send_email')).toEqual([1, 1]);
  });

  it('a request that fails after the limiter (the insert fails) gives its unit back and records nothing', async () => {
    const a = await agentIn(t, 'insert-fails');
    await create(t, a.key, email('fine'));
    expect(await current(t, a.key, a.userId, 'send_email')).toEqual([1, 1]);
    // A real failure of the real database: a trigger refuses this one insert.
    await t.app.db.$executeRawUnsafe(`
      CREATE OR REPLACE FUNCTION quota_test_refuse() RETURNS trigger AS $$
      BEGIN
        IF NEW.payload->>'subject' = 'refused-by-trigger' THEN RAISE EXCEPTION 'refused by test trigger'; END IF;
        RETURN NEW;
      END $$ LANGUAGE plpgsql`);
    await t.app.db.$executeRawUnsafe(`CREATE TRIGGER quota_test_refuse BEFORE INSERT ON "Action" FOR EACH ROW EXECUTE FUNCTION quota_test_refuse()`);
    try {
      for (const idempotencyKey of [undefined, 'with-key']) {
        const failed = await create(t, a.key, { ...email('refused-by-trigger'), ...(idempotencyKey ? { idempotencyKey } : {}) });
        expect(failed.data?.createAction.action ?? null).toBeNull();
        expect(failed.errors?.length ?? failed.data?.createAction.errors.length).toBeGreaterThan(0);
      }
    } finally {
      await t.app.db.$executeRawUnsafe(`DROP TRIGGER quota_test_refuse ON "Action"`);
    }
    expect(await t.app.db.action.count({ where: { userId: a.userId } })).toBe(1);
    expect(await current(t, a.key, a.userId, 'send_email')).toEqual([1, 1]);
    // The idempotency key whose request failed is free: a retry records the action and pays once.
    const retried = await create(t, a.key, { ...email('refused-by-trigger'), idempotencyKey: 'with-key' });
    expect(retried.data!.createAction.action!.status).toBe('APPROVED');
    expect(await current(t, a.key, a.userId, 'send_email')).toEqual([2, 2]);
  });

  it('limits approval requests per user and type (default 20 per hour): the 21st PENDING-bound request of a burst is refused with RATE_LIMITED, nothing recorded, 20 mails, and its type unit given back', async () => {
    const a = await agentIn(t, 'approval-flood');
    // move_file needs approval; give it a rate limit too, to see the refused request give that unit back.
    await rateRule(t, a.spaceId, 'move_file', 1000, 3600);
    const outbox = t.app.config.outboxDir;
    const before = (await readOutbox(outbox)).filter((m) => m.to.includes('approval-flood')).length;
    const results = await Promise.all(
      Array.from({ length: 21 }, (_, i) => create(t, a.key, { type: 'move_file', payload: { from: `inbox/${i}.txt`, to: `archive/${i}.txt` } })),
    );
    const pending = results.filter((r) => r.data?.createAction.action?.status === 'PENDING');
    const refused = results.filter((r) => r.data?.createAction.errors[0]?.code === 'RATE_LIMITED');
    expect(pending).toHaveLength(20);
    expect(refused).toHaveLength(1);
    const refusal = refused[0]!.data!.createAction;
    expect(refusal.action).toBeNull();
    expect(refusal.errors[0]!.message).toMatch(/20 move_file approval requests per hour/);
    expect(refusal.errors[0]!.retryAfterSeconds).toBeGreaterThan(3500);
    expect(refusal.errors[0]!.retryAfterSeconds).toBeLessThanOrEqual(3600);
    expect(await t.app.db.action.count({ where: { userId: a.userId } })).toBe(20);
    const mails = (await readOutbox(outbox)).filter((m) => m.to.includes('approval-flood'));
    expect(mails.length - before).toBe(20);
    // rateLimits shows both: the rule's window and the approval-request limit.
    expect(await current(t, a.key, a.userId, 'move_file')).toEqual([20, 20]);
    const shown = (await postGraphql<{ rateLimits: Array<{ current: number; limit: number; windowSeconds: number }> }>(t.url, a.key, RATE_LIMITS, { userId: a.userId, type: 'move_file' }, acceptGraphqlResponse)).body;
    expect(shown.data!.rateLimits[1]).toEqual({ current: 20, limit: 20, windowSeconds: 3600 });
    // Still refused afterwards; each type that needs approval has its own limit; other types are not affected.
    const again = await create(t, a.key, { type: 'move_file', payload: { from: 'inbox/x.txt', to: 'archive/x.txt' } });
    expect(again.data!.createAction.errors[0]!.code).toBe('RATE_LIMITED');
    const order = await create(t, a.key, { type: 'order', payload: { provider: 'cafe', items: [{ name: 'Tea', price: 2, quantity: 1 }] } });
    expect(order.data!.createAction.action!.status).toBe('PENDING');
    expect((await create(t, a.key, email('not an approval'))).data!.createAction.action!.status).toBe('APPROVED');
    expect(await t.app.db.action.count({ where: { userId: a.userId, type: 'move_file' } })).toBe(20);
  });

  it('the one-time code lock is atomic: of 30 concurrent wrong codes exactly 5 are counted, each audited, the link locks, and the right code is refused afterwards', async () => {
    const a = await agentIn(t, 'code-burst');
    await t.app.db.user.update({ where: { id: a.userId }, data: { kycStatus: 'VERIFIED' } });
    const outbox = t.app.config.outboxDir;
    const before = (await readOutbox(outbox)).length;
    const created = await create(t, a.key, {
      type: 'make_purchase',
      payload: { items: [{ name: 'Chair', price: 50, quantity: 2 }], merchant: 'Shop', total: 100, currency: 'EUR' },
    });
    const id = created.data!.createAction.action!.id;
    const mails = (await readOutbox(outbox)).slice(before);
    const token = approvalToken(mails.find((m) => /\/approvals\//.test(m.text))!);
    const code = /^[ \t]+(\d{4} \d{4})[ \t]*\r?$/m.exec(mails.find((m) => !/\/approvals\//.test(m.text))!.text)![1]!.replace(/\D/g, '');
    const wrong = (i: number) => String((Number(code) + 1 + i) % 100_000_000).padStart(8, '0');

    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => post(t, token, `decision=approve&code=${wrong(i)}`)));
    const statuses = answers.map((r) => r.status);
    expect(statuses.every((s) => s === 403 || s === 429)).toBe(true);
    expect(statuses.filter((s) => s === 403).length).toBeLessThanOrEqual(4);

    const row = await t.app.db.approvalToken.findFirstOrThrow({ where: { actionId: id } });
    expect(row.codeAttempts).toBe(5);
    expect(row.voidedAt).not.toBeNull();
    const audit = await t.app.db.auditEntry.findMany({ where: { actionId: id }, orderBy: { id: 'asc' } });
    const rejected = audit.filter((e) => e.event === 'approval.code_rejected');
    expect(rejected).toHaveLength(5);
    expect(rejected.map((e) => (e.data as { attemptsLeft: number }).attemptsLeft)).toEqual([4, 3, 2, 1, 0]);
    expect(audit.filter((e) => e.event === 'approval.locked')).toHaveLength(1);

    const right = await post(t, token, `decision=approve&code=${code}`);
    expect(right.status).toBe(429);
    expect(await right.text()).toMatch(/This link is locked/);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('PENDING');
    const page = await fetch(`${t.url}/approvals/${token}`);
    expect(page.status).toBe(429);
    const html = await page.text();
    expect(html).toMatch(/This link is locked/);
    expect(html).toMatch(/another way/);
    expect(html).not.toMatch(/<form/);
  });

  it('after a wrong code the page keeps the form and says how many tries are left; a right code then approves', async () => {
    const a = await agentIn(t, 'code-retry');
    await t.app.db.user.update({ where: { id: a.userId }, data: { kycStatus: 'VERIFIED' } });
    const outbox = t.app.config.outboxDir;
    const before = (await readOutbox(outbox)).length;
    const id = (await create(t, a.key, { type: 'make_purchase', payload: { items: [{ name: 'Pen', price: 2, quantity: 1 }], merchant: 'Shop', total: 2, currency: 'EUR' } }))
      .data!.createAction.action!.id;
    const mails = (await readOutbox(outbox)).slice(before);
    const token = approvalToken(mails.find((m) => /\/approvals\//.test(m.text))!);
    const code = /^[ \t]+(\d{4} \d{4})[ \t]*\r?$/m.exec(mails.find((m) => !/\/approvals\//.test(m.text))!.text)![1]!.replace(/\D/g, '');
    const wrong = String((Number(code) + 1) % 100_000_000).padStart(8, '0');

    const first = await post(t, token, `decision=approve&code=${wrong}`);
    expect(first.status).toBe(403);
    const html = await first.text();
    expect(html).toMatch(/That code is not right/);
    expect(html).toMatch(/4 tries are left/);
    expect(html).toMatch(new RegExp(`<form method="post" action="/approvals/${token}"`));
    expect(html).toMatch(/name="code"/);
    const second = await (await post(t, token, `decision=approve&code=${wrong}`)).text();
    expect(second).toMatch(/3 tries are left/);
    // No code at all is not a guess.
    expect(await (await post(t, token, 'decision=approve')).text()).toMatch(/3 tries are left/);
    expect((await post(t, token, `decision=approve&code=${code}`)).status).toBe(200);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('APPROVED');
    expect((await t.app.db.approvalToken.findFirstOrThrow({ where: { actionId: id } })).codeAttempts).toBe(3);
  });
});

describe('code guesses racing a decision through the API', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('wrong codes posted while an approver approves by API: the approval wins once, every guess gets a clear page, never a 500', async () => {
    for (let round = 0; round < 3; round++) {
      const a = await agentIn(t, `code-race-${round}`);
      const approver = await createApiKey(t.app.db, { role: 'APPROVER', space: `code-race-${round}`, user: 'alice' });
      await t.app.db.user.update({ where: { id: a.userId }, data: { kycStatus: 'VERIFIED' } });
      const before = (await readOutbox(t.app.config.outboxDir)).length;
      const id = (await create(t, a.key, { type: 'make_purchase', payload: { items: [{ name: 'Pen', price: 2, quantity: 1 }], merchant: 'Shop', total: 2, currency: 'EUR' } }))
        .data!.createAction.action!.id;
      const mails = (await readOutbox(t.app.config.outboxDir)).slice(before);
      const token = approvalToken(mails.find((m) => /\/approvals\//.test(m.text))!);
      const [api, ...pages] = await Promise.all([
        postGraphql<{ approveAction: { action: { status: string } | null; errors: unknown[] } }>(t.url, approver.key, 'mutation($id: ID!) { approveAction(id: $id) { action { status } errors { code } } }', { id }, acceptGraphqlResponse).then((r) => r.body),
        ...Array.from({ length: 8 }, (_, i) => post(t, token, `decision=approve&code=0000000${i}`)),
      ]);
      expect(api.data!.approveAction.action!.status).toBe('APPROVED');
      for (const page of pages) expect([403, 409, 410, 429]).toContain(page.status);
      const row = await t.app.db.approvalToken.findFirstOrThrow({ where: { actionId: id } });
      expect(row.codeAttempts).toBeLessThanOrEqual(5);
      expect(row.usedAt).toBeNull();
    }
  });
});

describe('rate limits across a Redis restart (a Redis of this test\'s own)', () => {
  let redis: OwnRedis;
  let t: TestServer;
  beforeAll(async () => {
    redis = await startOwnRedis();
    t = await startTestServer({ env: { REDIS_URL: redis.url, APPROVAL_REQUESTS_PER_HOUR: '3' } });
  });
  afterAll(async () => {
    await t?.close();
    await redis?.close();
  });

  it('limit 5/hour: 5 pass, Redis restarts empty, the 6th is still refused and the counts are rebuilt from the database', async () => {
    const a = await agentIn(t, 'redis-restart');
    await rateRule(t, a.spaceId, 'send_email', 5, 3600);
    for (let i = 0; i < 5; i++) expect((await create(t, a.key, email(`m${i}`))).data!.createAction.action!.status).toBe('APPROVED');
    // A refused (blocked) action of the same type must not count when the windows are rebuilt.
    await t.app.db.action.create({
      data: {
        spaceId: a.spaceId,
        userId: a.userId,
        requestedById: (await t.app.db.principal.findFirstOrThrow({ where: { userId: a.userId, role: 'AGENT' } })).id,
        type: 'send_email',
        payload: {},
        payloadHash: 'x',
        status: 'BLOCKED',
        statusSeq: 1,
      },
    });
    expect((await create(t, a.key, email('sixth'))).data!.createAction.errors[0]!.code).toBe('RATE_LIMITED');
    // And the approval-request limit (3 per hour here).
    const move = (i: number) => create(t, a.key, { type: 'move_file', payload: { from: `in/${i}.txt`, to: `out/${i}.txt` } });
    for (let i = 0; i < 3; i++) expect((await move(i)).data!.createAction.action!.status).toBe('PENDING');
    expect((await move(3)).data!.createAction.errors[0]!.code).toBe('RATE_LIMITED');

    await redis.stop();
    await redis.start();
    // Wait until the service's Redis connection is back (a retryable refusal meanwhile).
    let answer: CreateResult | undefined;
    for (let i = 0; i < 100; i++) {
      answer = (await create(t, a.key, email('after restart'))).data?.createAction;
      if (answer?.errors[0]?.code !== 'SAFETY_UNAVAILABLE') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(answer!.errors[0]!.code).toBe('RATE_LIMITED');
    expect(answer!.errors[0]!.retryAfterSeconds).toBeGreaterThan(3500);
    expect(answer!.action).toBeNull();
    // send_email: this space's 5 per hour, and the default 500 per day.
    expect(await current(t, a.key, a.userId, 'send_email')).toEqual([5, 5]);
    // Concurrent attempts after the rebuild: still none through, counts unchanged.
    const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => create(t, a.key, email(`burst${i}`))));
    expect(burst.every((r) => r.data?.createAction.errors[0]?.code === 'RATE_LIMITED')).toBe(true);
    expect(await current(t, a.key, a.userId, 'send_email')).toEqual([5, 5]);
    const moveAfter = (await move(4)).data!.createAction;
    expect(moveAfter.errors[0]!.code).toBe('RATE_LIMITED');
    expect(moveAfter.errors[0]!.message).toMatch(/3 move_file approval requests per hour/);
    expect(await t.app.db.action.count({ where: { userId: a.userId, type: 'send_email', status: { not: 'BLOCKED' } } })).toBe(5);
    expect(await t.app.db.action.count({ where: { userId: a.userId, type: 'move_file' } })).toBe(3);
  });
});
