import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startOwnRedis, type OwnRedis } from '../helpers/own-services.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphqlTimed } from '../helpers/http.js';
import { waitForActionStatus } from '../helpers/wait.js';

// A Redis of this file's own, stopped on purpose (it comes back empty, as after a crash).
let redis: OwnRedis;
let t: TestServer;

beforeAll(async () => {
  redis = await startOwnRedis();
  t = await startTestServer({ env: { REDIS_URL: redis.url, RECONCILE_SECONDS: '1', ENABLE_NOOP_HANDLER: 'true' }, worker: true });
}, 60_000);
afterAll(async () => {
  await t?.close();
  await redis?.close();
});

const post = (key: string, query: string, variables?: Record<string, unknown>) => postGraphqlTimed(t.url, key, query, variables, 30_000);

const CREATE = 'mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message retryAfterSeconds } } }';
const CANCEL = 'mutation($id: ID!) { cancelAction(id: $id, reason: "not now") { action { status } errors { code message } } }';

interface Received {
  events: Array<{ status: string; seq: number }>;
  errors: Array<{ message: string; extensions?: Record<string, unknown> }>;
  completed: boolean;
}

function watch(key: string, query: string, variables: Record<string, unknown>): Received {
  const received: Received = { events: [], errors: [], completed: false };
  t.wsClient({ apiKey: key }).subscribe<Record<string, { status: string; seq: number }>>(
    { query, variables },
    {
      next: (value) => {
        if (value.errors) received.errors.push(...(value.errors as Received['errors']));
        const event = value.data && Object.values(value.data)[0];
        if (event) received.events.push(event);
      },
      error: (error) => received.errors.push({ message: String((error as Error)?.message ?? error) }),
      complete: () => {
        received.completed = true;
      },
    },
  );
  return received;
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await sleep(50);
  }
  return check();
}

describe('Redis outage', () => {
  it('answers createAction within 3 s while Redis is down (APPROVED, or SAFETY_UNAVAILABLE when a rate limit is needed), /readyz says redis, and the committed action completes once Redis is back', async () => {
    const agent = await createApiKey(t.app.db, { role: 'AGENT', space: 'redis-down', user: 'nora' });
    const limited = await createApiKey(t.app.db, { role: 'AGENT', space: 'redis-limited', user: 'otto' });
    await t.app.db.safetyRule.create({
      data: { ruleKey: `${limited.spaceId}:create_document:RATE_LIMIT:3600`, spaceId: limited.spaceId, actionType: 'create_document', kind: 'RATE_LIMIT', limit: 100, windowSeconds: 3600 },
    });
    await redis.stop();
    let restarted = false;
    try {
      // noop has no rate limit: nothing on its way needs Redis before the commit.
      const created = await post(agent.key, CREATE, { input: { type: 'noop', payload: { note: 'during the outage' } } });
      expect(created.ms).toBeLessThan(3000);
      expect(created.body.data.createAction.errors).toEqual([]);
      expect(created.body.data.createAction.action.status).toBe('APPROVED');
      const id = created.body.data.createAction.action.id as string;

      const refused = await post(limited.key, CREATE, { input: { type: 'create_document', payload: { title: 'Needs the limiter', content: 'x' } } });
      expect(refused.ms).toBeLessThan(3000);
      expect(refused.body.data.createAction.action).toBeNull();
      expect(refused.body.data.createAction.errors[0].code).toBe('SAFETY_UNAVAILABLE');
      expect(refused.body.data.createAction.errors[0].retryAfterSeconds).toBeGreaterThan(0);

      // A new subscription cannot be confirmed by Redis: a clear, retryable error within a few seconds.
      const subscribedAt = Date.now();
      const refusedStream = watch(agent.key, 'subscription($id: ID!) { actionStatus(actionId: $id) { status } }', { id });
      expect(await until(() => refusedStream.errors.length > 0 || refusedStream.completed, 5000)).toBe(true);
      expect(Date.now() - subscribedAt).toBeLessThan(4000);
      expect(refusedStream.errors[0]?.extensions?.code).toBe('UNAVAILABLE');

      const started = Date.now();
      const ready = await fetch(`${t.url}/readyz`);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(ready.status).toBe(503);
      const report = (await ready.json()) as { checks: { redis: { ok: boolean; error: string }; postgres: { ok: boolean } } };
      expect(report.checks.postgres.ok).toBe(true);
      expect(report.checks.redis.ok).toBe(false);
      expect(report.checks.redis.error).toMatch(/queue/);

      await redis.start();
      restarted = true;
      // Redis came back empty: the job is gone; the reconciler queues the committed action.
      expect((await waitForActionStatus(t.app.db, id, 'COMPLETED', 15_000)).status).toBe('COMPLETED');
      let readyAgain = 0;
      for (let i = 0; i < 50 && readyAgain !== 200; i++) {
        readyAgain = (await fetch(`${t.url}/readyz`)).status;
        if (readyAgain !== 200) await sleep(200);
      }
      expect(readyAgain).toBe(200);
    } finally {
      if (!restarted) await redis.start();
    }
  }, 60_000);

  it('an open actionStatus stream receives the status changed during the outage once Redis is back; an actionEvents stream ends with STREAM_INTERRUPTED', async () => {
    const agent = await createApiKey(t.app.db, { role: 'AGENT', space: 'redis-stale', user: 'paul' });
    const later = new Date(Date.now() + 3600_000).toISOString();
    const created = await post(agent.key, CREATE, { input: { type: 'create_document', payload: { title: 'Later', content: 'x' }, scheduledFor: later } });
    const id = created.body.data.createAction.action.id as string;
    expect(created.body.data.createAction.action.status).toBe('APPROVED');

    const status = watch(agent.key, 'subscription($id: ID!) { actionStatus(actionId: $id) { status seq } }', { id });
    const all = watch(agent.key, 'subscription { actionEvents { status seq } }', {});
    expect(await until(() => status.events.length === 1, 5000)).toBe(true);
    expect(status.events[0]!.status).toBe('APPROVED');
    // Let actionEvents' subscription be confirmed before Redis goes away.
    await sleep(300);

    await redis.stop();
    // Changed through the database while the publish cannot go out.
    const cancelled = await post(agent.key, CANCEL, { id });
    expect(cancelled.ms).toBeLessThan(3000);
    expect(cancelled.body.data.cancelAction.action.status).toBe('CANCELLED');
    await sleep(1000);
    expect(status.events).toHaveLength(1);

    await redis.start();
    expect(await until(() => status.events.length === 2, 10_000)).toBe(true);
    expect(status.events[1]).toEqual({ status: 'CANCELLED', seq: 2 });
    expect(await until(() => status.completed, 2000)).toBe(true);

    expect(await until(() => all.completed, 10_000)).toBe(true);
    expect(all.errors.map((e) => e.extensions?.code)).toContain('STREAM_INTERRUPTED');
  }, 60_000);
});
