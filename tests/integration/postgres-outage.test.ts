import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineActionType } from '../../src/engine/action-types.js';
import { createApiKey } from '../../src/engine/api-keys.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { startOwnPostgres, type OwnPostgres } from '../helpers/own-services.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphqlTimed } from '../helpers/http.js';
import { Client as PgClient } from 'pg';

// PostgreSQL of this file's own, stopped on purpose; the server and an in-process worker use it.
let pg: OwnPostgres;
let t: TestServer;

/** Handler runs, by idempotency key (a run interrupted by the outage may be repeated under the same key). */
const calls = new Map<string, number>();
const outageType = defineActionType({ type: 'test_outage_effect', description: 'test', payload: z.strictObject({ ms: z.number().optional() }), reversible: false });
const outageHandler = defineHandler({
  name: 'test.outage-effect',
  kind: 'api',
  types: [outageType],
  repeat: 'provider',
  async execute(ctx) {
    calls.set(ctx.idempotencyKey, (calls.get(ctx.idempotencyKey) ?? 0) + 1);
    await sleep(ctx.payload.ms ?? 0);
    return { status: 'completed', provider: 'test', data: { done: true } };
  },
});

beforeAll(async () => {
  pg = await startOwnPostgres();
  t = await startTestServer({
    database: 'from-env',
    env: { DATABASE_URL: pg.url, RECONCILE_SECONDS: '1', RETRY_BACKOFF_MS: '200' },
    worker: true,
    app: {
      extraHandlers: [outageHandler],
      extraActionTypes: [outageType],
    },
  });
}, 60_000);
afterAll(async () => {
  await pg?.start().catch(() => {});
  await t?.close();
  await pg?.close();
});

const post = (key: string, query: string, variables?: Record<string, unknown>) => postGraphqlTimed(t.url, key, query, variables, 20_000);

const CREATE = 'mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message retryAfterSeconds } } }';

describe('PostgreSQL outage', () => {
  it('actions in flight when PostgreSQL stops for 5 s all end COMPLETED once it is back, with one receipt each and no attempt used up by the outage', async () => {
    const { key } = await createApiKey(t.app.db, { role: 'AGENT', space: 'pg-outage', user: 'lena' });
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const { body } = await post(key, CREATE, { input: { type: 'test_outage_effect', payload: { ms: 300 + 100 * (i % 5) } } });
      ids.push(body.data.createAction.action.id);
    }
    // Some are executing (handlers running), others queued, when the database goes away.
    for (let i = 0; i < 100; i++) {
      if ((await t.app.db.action.count({ where: { id: { in: ids }, status: 'EXECUTING' } })) > 0) break;
      await sleep(20);
    }
    await pg.stop();
    await sleep(5000);
    await pg.start();

    const until = Date.now() + 45_000;
    let statuses: string[] = [];
    while (Date.now() < until) {
      statuses = (await t.app.db.action.findMany({ where: { id: { in: ids } }, select: { status: true } }).catch(() => [])).map((a) => a.status);
      if (statuses.length === ids.length && statuses.every((s) => s === 'COMPLETED')) break;
      await sleep(250);
    }
    expect(statuses.sort()).toEqual(ids.map(() => 'COMPLETED'));
    for (const id of ids) {
      // It ran (perhaps again, under the same idempotency key, after the outage cut it short) and
      // completed exactly once: one receipt.
      expect(calls.get(`action:${id}`)).toBeGreaterThanOrEqual(1);
      expect(await t.app.db.receipt.count({ where: { actionId: id } })).toBe(1);
    }
    // An outage used up no attempt: none of them was counted beyond the first.
    const attempts = await t.app.db.execution.findMany({ where: { actionId: { in: ids } }, select: { attempt: true } });
    expect(Math.max(...attempts.map((e) => e.attempt))).toBe(1);
  }, 90_000);

  it('answers every request during the outage with a retryable code within a few seconds, never "Unexpected error."', async () => {
    const { key } = await createApiKey(t.app.db, { role: 'AGENT', space: 'pg-down', user: 'mona' });
    const admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'pg-down' })).key;
    // One request while it is up, so the key may be in the authenticator's cache (both paths are checked).
    expect((await post(key, CREATE, { input: { type: 'test_outage_effect', payload: {} } })).status).toBe(200);
    await pg.stop();
    try {
      const answers = [
        await post(key, CREATE, { input: { type: 'test_outage_effect', payload: {} } }),
        await post(key, CREATE, { input: { type: 'test_outage_effect', payload: {} }, idem: 1 }),
        await post(key, '{ actions(first: 5) { edges { node { id } } } }'),
        await post(admin, CREATE, { input: { type: 'test_outage_effect', payload: {} } }),
        await post(admin, '{ action(id: "00000000-0000-4000-8000-000000000000") { id } }'),
      ];
      for (const answer of answers) {
        const text = JSON.stringify(answer.body);
        expect(answer.ms).toBeLessThan(5000);
        expect(text).not.toMatch(/Unexpected error/);
        expect(text).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|prisma/i);
        const payloadError = answer.body.data?.createAction?.errors?.[0];
        if (payloadError) {
          expect(['SAFETY_UNAVAILABLE', 'UNAVAILABLE']).toContain(payloadError.code);
          expect(payloadError.retryAfterSeconds).toBeGreaterThan(0);
        } else {
          const error = answer.body.errors?.[0];
          expect(error?.extensions?.code, text).toBe('UNAVAILABLE');
          expect(error.extensions.retryAfterSeconds).toBeGreaterThan(0);
          expect(answer.status).toBe(503);
        }
      }
      const ready = await fetch(`${t.url}/readyz`);
      expect(ready.status).toBe(503);
      // It says what is down, not where it lives.
      const readyText = await ready.text();
      expect(readyText).toMatch(/postgres/);
      expect(readyText).not.toMatch(/127\.0\.0\.1|:\d{4,5}\b/);
      // An approval link followed during the outage: retryable, not an internal error.
      const page = await fetch(`${t.url}/approvals/${randomBytes(32).toString('base64url')}`);
      expect(page.status).toBe(503);
      expect(page.headers.get('retry-after')).toBe('2');
    } finally {
      await pg.start();
    }
    // Back: the same request succeeds.
    let answer = await post(key, CREATE, { input: { type: 'test_outage_effect', payload: {} } });
    for (let i = 0; i < 20 && !answer.body.data?.createAction?.action; i++) {
      await sleep(250);
      answer = await post(key, CREATE, { input: { type: 'test_outage_effect', payload: {} } });
    }
    expect(answer.body.data.createAction.action.status).toBe('APPROVED');
  }, 60_000);

  it('gives back the rate-limit unit of a request whose write PostgreSQL dropped, idempotency key or not', async () => {
    const { key, userId } = await createApiKey(t.app.db, { role: 'AGENT', space: 'pg-quota', user: 'nils' });
    const current = async () =>
      (await post(key, 'query($u: ID!) { rateLimits(userId: $u, type: "create_document") { current } }', { u: userId })).body.data.rateLimits.map(
        (r: { current: number }) => r.current,
      );
    expect(await current()).toEqual([0]);
    // The insert of this user's actions sleeps, so PostgreSQL can go away in the middle of it:
    // after the safety rules were read and the unit was counted.
    const admin = new PgClient({ connectionString: pg.url });
    await admin.connect();
    await admin.query(`CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$`);
    await admin.query(`CREATE TRIGGER slow_insert BEFORE INSERT ON "Action" FOR EACH ROW WHEN (NEW."userId" = '${userId}') EXECUTE FUNCTION slow_insert()`);
    await admin.end();
    const doc = (i: number) => ({ type: 'create_document', payload: { title: `Doc ${i}`, content: 'x' } });
    const answers = Promise.all([post(key, CREATE, { input: doc(1) }), post(key, CREATE, { input: { ...doc(2), idempotencyKey: 'nils-2' } })]);
    await sleep(1000);
    await pg.stop();
    let settled;
    try {
      settled = await answers;
    } finally {
      await pg.start();
    }
    for (const answer of settled) expect(answer.body.data.createAction.errors[0].code).toMatch(/UNAVAILABLE/);
    const admin2 = new PgClient({ connectionString: pg.url });
    for (let i = 0; i < 40; i++) {
      try {
        await admin2.connect();
        break;
      } catch {
        await sleep(250);
      }
    }
    await admin2.query('DROP TRIGGER slow_insert ON "Action"');
    await admin2.end();
    expect(await t.app.db.action.count({ where: { userId: userId! } })).toBe(0);
    expect(await current()).toEqual([0]);
  }, 60_000);
});
