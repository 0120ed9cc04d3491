import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrismaClient } from '../../src/db/prisma-client.js';
import { createApiKey } from '../../src/engine/api-keys.js';
import type { PrismaClient } from '../../src/generated/prisma/client.js';
import { startService, type ServiceProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { deleteRedisPrefix, testRedisUrl, uniqueRedisPrefix } from '../helpers/redis.js';
import { postGraphql } from '../helpers/http.js';

const prefix = uniqueRedisPrefix('scale');
let db: TestDatabase;
let prisma: PrismaClient;
let dataDir: string;
const processes: ServiceProcess[] = [];
let apiA: ServiceProcess;
let apiB: ServiceProcess;

beforeAll(async () => {
  db = await createTestDatabase();
  prisma = createPrismaClient({ connection: db.connection, poolMax: 2 });
  dataDir = await mkdtemp(path.join(tmpdir(), 'ae-scale-'));
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl,
    REDIS_PREFIX: prefix,
    REDIS_AUTOSTART: 'false',
    DATA_DIR: dataDir,
    WORKER_CONCURRENCY: '3',
  };
  [apiA, apiB] = await Promise.all([startService(['serve'], env), startService(['serve'], env)]);
  const workers = await Promise.all([startService(['worker'], env), startService(['worker'], env)]);
  processes.push(apiA!, apiB!, ...workers);
}, 120_000);

afterAll(async () => {
  const codes = await Promise.all(processes.map((p) => p.stop('SIGTERM')));
  await prisma?.$disconnect();
  await db?.drop();
  await deleteRedisPrefix(prefix);
  await rm(dataDir, { recursive: true, force: true });
  expect(codes.every((c) => c === 0)).toBe(true);
});

describe('two API processes and two worker processes on one Redis and one Postgres', () => {
  it('a subscriber on API A sees every status of actions created on API B and executed by the workers; each runs exactly once', async () => {
    const { key } = await createApiKey(prisma, { role: 'AGENT', space: 'scale', user: 'gina' });
    const seen = new Map<string, string[]>();
    const client = createClient({
      url: `${apiA.url.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${key}` },
      retryAttempts: 0,
    });
    const subscribed = new Promise<void>((resolve) => client.on('connected', () => resolve()));
    const unsubscribe = client.subscribe<{ actionEvents: { actionId: string; status: string } }>(
      { query: 'subscription { actionEvents { actionId status seq } }' },
      {
        next: ({ data }) => {
          if (!data) return;
          const list = seen.get(data.actionEvents.actionId) ?? [];
          if (list.at(-1) !== data.actionEvents.status) list.push(data.actionEvents.status);
          seen.set(data.actionEvents.actionId, list);
        },
        error: (e) => console.error(e),
        complete: () => {},
      },
    );
    try {
      await subscribed;
      // The server subscribes to Redis a moment after the socket connects: prove the stream is
      // live with sentinel actions before counting on it.
      const create = async (title: string) => {
        const out = (await postGraphql(
          apiB.url,
          key,
          'mutation($i: CreateActionInput!) { createAction(input: $i) { action { id status } errors { code message } } }',
          { i: { type: 'create_document', payload: { title, content: title } } },
        )).body;
        expect(out.data?.createAction.errors).toEqual([]);
        return out.data!.createAction.action.id as string;
      };
      let live = false;
      for (let round = 0; round < 20 && !live; round++) {
        const sentinel = await create(`sentinel ${round}`);
        for (let i = 0; i < 10 && !seen.has(sentinel); i++) await sleep(50);
        live = seen.has(sentinel);
      }
      expect(live).toBe(true);
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) ids.push(await create(`Doc ${i}`));
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && !ids.every((id) => seen.get(id)?.includes('COMPLETED'))) await sleep(100);
      for (const id of ids) expect(seen.get(id), id).toEqual(['APPROVED', 'EXECUTING', 'COMPLETED']);
      const executions = await prisma.execution.groupBy({ by: ['actionId'], where: { actionId: { in: ids } }, _count: true });
      expect(executions).toHaveLength(ids.length);
      expect(executions.every((e) => e._count === 1)).toBe(true);
      expect(await prisma.receipt.count({ where: { actionId: { in: ids } } })).toBe(ids.length);
    } finally {
      unsubscribe();
      await client.dispose();
    }
  }, 90_000);
});
