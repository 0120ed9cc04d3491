import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startService } from '../helpers/cli.js';
import { closedPort } from '../helpers/ports.js';
import { createEmptyDatabase, createTestDatabase } from '../helpers/postgres.js';
import { testRedisUrl, uniqueRedisPrefix, deleteRedisPrefix } from '../helpers/redis.js';
import { postGraphql } from '../helpers/http.js';

const redisPrefix = uniqueRedisPrefix('cli');
let dataDir: string;
const baseEnv = () => ({ DATA_DIR: dataDir, REDIS_URL: testRedisUrl, REDIS_PREFIX: redisPrefix, REDIS_AUTOSTART: 'false' });

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'ae-cli-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
  await deleteRedisPrefix(redisPrefix);
});

describe('action-engine start', () => {
  it('with no DATABASE_URL runs on the embedded database, migrated, ready, prints a working bootstrap admin key, and stops cleanly on SIGTERM', async () => {
    const service = await startService(['start'], baseEnv());
    let code: number | null = null;
    try {
      const ready = await fetch(`${service.url}/readyz`);
      const body = (await ready.json()) as { checks: unknown };
      expect(ready.status, JSON.stringify(body)).toBe(200);
      const graphiql = await fetch(`${service.url}/graphql`, { headers: { accept: 'text/html' } });
      expect(graphiql.status).toBe(200);
      expect(await graphiql.text()).toMatch(/graphiql/i);
      expect(service.logs.some((l) => String(l.msg).includes('embedded PostgreSQL'))).toBe(true);
      expect(await readdir(path.join(dataDir, 'pglite'))).not.toHaveLength(0);
      const key = /\b(ae_[A-Za-z0-9_-]{43})\b/.exec(service.stderr())?.[1];
      expect(key, service.stderr()).toBeDefined();
      const me = await postGraphql(service.url, key, '{ me { role } }');
      expect(me.body).toEqual({ data: { me: { role: 'ADMIN' } } });
    } finally {
      code = await service.stop('SIGTERM');
    }
    expect(code).toBe(0);
    expect(service.logs.some((l) => l.msg === 'stopped')).toBe(true);
  });

  it('with DATABASE_URL at a closed port still starts and answers /readyz 503 naming Postgres', async () => {
    const port = await closedPort();
    const service = await startService(['start'], { ...baseEnv(), DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/ae` });
    try {
      const res = await fetch(`${service.url}/readyz`);
      const body = (await res.json()) as { checks: { postgres: { ok: boolean; error: string } } };
      expect(res.status).toBe(503);
      expect(body.checks.postgres.ok).toBe(false);
      // What is down, not where it lives: /readyz answers anyone.
      expect(body.checks.postgres.error).toMatch(/reach database server/);
      expect(body.checks.postgres.error).not.toContain(String(port));
    } finally {
      await service.stop();
    }
  });
});

describe('action-engine migrate', () => {
  it('applies every migration to an empty database, and a second run applies nothing', async () => {
    const db = await createEmptyDatabase();
    try {
      const first = await runCli(['migrate'], { ...baseEnv(), DATABASE_URL: db.url });
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toMatch(/applied \d+ migration\(s\)/);
      const second = await runCli(['migrate'], { ...baseEnv(), DATABASE_URL: db.url });
      expect(second.code, second.stderr).toBe(0);
      expect(second.stdout).toMatch(/nothing to apply/);
      const client = new pg.Client(db.connection);
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>('select count(*) as n from _prisma_migrations where finished_at is not null');
        expect(Number(rows[0]?.n)).toBeGreaterThanOrEqual(1);
      } finally {
        await client.end();
      }
    } finally {
      await db.drop();
    }
  });
});

describe('action-engine keys create', () => {
  it('prints a new key once and stores only its hash, creating the space and the user with their email', async () => {
    const db = await createTestDatabase();
    try {
      const result = await runCli(
        ['keys', 'create', '--role', 'approver', '--space', 'acme', '--user', 'alice', '--email', 'alice@example.com'],
        { ...baseEnv(), DATABASE_URL: db.url },
      );
      expect(result.code, result.stderr).toBe(0);
      const key = result.stdout.trim();
      expect(key).toMatch(/^ae_[A-Za-z0-9_-]{43}$/);
      const client = new pg.Client(db.connection);
      await client.connect();
      try {
        const { rows } = await client.query(
          `select k."keyHash", k.prefix, p.role, u.handle, u.email, s.slug
             from "ApiKey" k join "Principal" p on p.id = k."principalId"
             join "User" u on u.id = p."userId" join "Space" s on s.id = p."spaceId"`,
        );
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ role: 'APPROVER', handle: 'alice', email: 'alice@example.com', slug: 'acme' });
        expect(JSON.stringify(rows[0])).not.toContain(key);
        expect(rows[0].keyHash).toMatch(/^[0-9a-f]{64}$/);
      } finally {
        await client.end();
      }
    } finally {
      await db.drop();
    }
  });

  it('refuses an agent key without --user and changes nothing', async () => {
    const db = await createTestDatabase();
    try {
      const result = await runCli(['keys', 'create', '--role', 'agent', '--space', 'acme'], { ...baseEnv(), DATABASE_URL: db.url });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/--user is required for the agent role/);
      expect(result.stdout).toBe('');
      const client = new pg.Client(db.connection);
      await client.connect();
      try {
        const { rows } = await client.query('select count(*)::int as n from "Space"');
        expect(rows[0].n).toBe(0);
      } finally {
        await client.end();
      }
    } finally {
      await db.drop();
    }
  });
});
