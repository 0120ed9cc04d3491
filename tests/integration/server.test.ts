import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { graphql } from '../generated/gql.js';
import { closedPort } from '../helpers/ports.js';
import { executeOverWs, startTestServer, type TestServer } from '../helpers/server.js';

const ApiVersion = graphql(`
  query ApiVersion {
    apiVersion
  }
`);

describe('API server on the real PostgreSQL and Redis', () => {
  let t: TestServer;
  // graphql-ws refuses connection_init without a key, and metrics name only authenticated operations.
  let key: string;
  beforeAll(async () => {
    t = await startTestServer();
    key = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'server-test' })).key;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers /healthz with 200', async () => {
    const res = await fetch(`${t.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers /readyz with 200 when Postgres and Redis both answer', async () => {
    const res = await fetch(`${t.url}/readyz`);
    const body = (await res.json()) as { status: string; checks: Record<string, { ok: boolean }> };
    expect(res.status).toBe(200);
    expect(body.status).toBe('ready');
    expect(body.checks.postgres?.ok).toBe(true);
    expect(body.checks.redis?.ok).toBe(true);
  });

  it('serves GraphiQL on /graphql to a browser', async () => {
    const res = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    const html = await res.text();
    expect(html).toMatch(/graphiql/i);
    expect(html).toMatch(/Action Engine/);
  });

  it('executes a typed operation over HTTP', async () => {
    const result = await t.graphql(ApiVersion);
    expect(result.status).toBe(200);
    expect(result.errors).toBeUndefined();
    expect(result.data?.apiVersion).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('executes the same operation over graphql-ws on the same path', async () => {
    const result = await executeOverWs(t.wsClient({ apiKey: key }), ApiVersion);
    expect(result.errors).toBeUndefined();
    expect(result.data?.apiVersion).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('rejects an invalid document over graphql-ws with a validation error', async () => {
    const client = t.wsClient({ apiKey: key });
    const outcome = await new Promise<unknown>((resolve) => {
      client.subscribe({ query: '{ noSuchField }' }, { next: () => {}, error: resolve, complete: () => resolve('completed') });
    });
    expect(Array.isArray(outcome)).toBe(true);
    expect((outcome as Array<{ message: string }>)[0]?.message).toMatch(/Cannot query field "noSuchField"/);
  });

  it('exports process metrics and GraphQL operation counts and durations on /metrics', async () => {
    await t.graphql(ApiVersion, {}, { apiKey: key });
    const res = await fetch(`${t.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^action_engine_process_cpu_user_seconds_total \d/m);
    const count = text.match(/^action_engine_graphql_operations_total\{type="query",name="ApiVersion",outcome="ok"\} (\d+)/m);
    expect(Number(count?.[1])).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/^action_engine_graphql_operation_duration_seconds_count\{type="query",name="ApiVersion"\} \d+/m);
  });

  it('refuses a request body over MAX_REQUEST_BYTES with 413', async () => {
    const res = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `{ apiVersion }${' '.repeat(1_100_000)}` }),
    });
    expect(res.status).toBe(413);
  });

  it('masks unexpected errors instead of leaking internals', async () => {
    const res = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query": ',
    });
    expect(res.status).toBe(400);
    expect(await res.text()).not.toMatch(/at .*\.ts:\d+/);
  });
});

describe('readiness with PostgreSQL down', () => {
  it('answers /readyz with 503 and says that Postgres does not answer', async () => {
    const port = await closedPort();
    const t = await startTestServer({ database: 'from-env', env: { DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/nothing` } });
    try {
      const res = await fetch(`${t.url}/readyz`);
      const body = (await res.json()) as { status: string; checks: { postgres: { ok: boolean; error: string }; redis: { ok: boolean } } };
      expect(res.status).toBe(503);
      expect(body.status).toBe('unavailable');
      expect(body.checks.postgres.ok).toBe(false);
      // What is down, not where it lives: /readyz answers anyone.
      expect(body.checks.postgres.error).toMatch(/reach database server/);
      expect(body.checks.postgres.error).not.toContain(String(port));
      expect(body.checks.redis.ok).toBe(true);
      // Liveness is not readiness: the process itself is fine.
      expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
