import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { ConfigCache, configChangeChannel, publishConfigChange, type ConfigCacheOptions, type ConfigCacheStats } from '../../src/engine/config-cache.js';
import type { PrismaClient } from '../../src/generated/prisma/client.js';
import { runCli } from '../helpers/cli.js';
import type { CacheRequest } from '../helpers/config-cache-process.js';
import { startOwnRedis, type OwnRedis } from '../helpers/own-services.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

const root = path.resolve(import.meta.dirname, '../..');
const childScript = path.join(root, 'tests/helpers/config-cache-process.ts');
/** Far longer than any test: a change seen in time came through the Redis announcement, not expiry. */
const LONG_TTL_MS = '600000';

type Answer = { id: number; result?: any; error?: string; stats: ConfigCacheStats; pid: number };
type Request = CacheRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/** Process B: a child process running the real composition root; its cache is asked over IPC. */
class CacheProcess {
  private nextId = 1;
  private readonly waiting = new Map<number, (answer: Answer) => void>();
  stderr = '';
  private constructor(readonly child: ChildProcess, readonly pid: number) {
    child.on('message', (message: Answer) => {
      this.waiting.get(message.id)?.(message);
      this.waiting.delete(message.id);
    });
  }

  static start(env: Record<string, string>): Promise<CacheProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', childScript], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the cache process did not start in 60 s\n${stderr}`));
      }, 60_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the cache process exited with ${code} before it was ready\n${stderr}`));
      });
      child.once('message', (message: { ready?: boolean; pid: number }) => {
        clearTimeout(timer);
        const proc = new CacheProcess(child, message.pid);
        child.stderr!.on('data', (d: Buffer) => (proc.stderr += d.toString()));
        resolve(proc);
      });
    });
  }

  ask(request: Request): Promise<Answer> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${request.op} in 10 s\n${this.stderr}`)), 10_000);
      this.waiting.set(id, (answer) => {
        clearTimeout(timer);
        if (answer.error) reject(new Error(answer.error));
        else resolve(answer);
      });
      this.child.send({ ...request, id });
    });
  }

  /** Asks until `done(answer)` holds; returns that answer and how long it took (ms). */
  async askUntil(request: Request, done: (answer: Answer) => boolean, timeoutMs = 3000): Promise<{ answer: Answer; ms: number }> {
    const started = performance.now();
    for (;;) {
      const answer = await this.ask(request);
      const ms = performance.now() - started;
      if (done(answer)) return { answer, ms };
      if (ms > timeoutMs) throw new Error(`not seen within ${timeoutMs} ms; last answer: ${JSON.stringify(answer)}`);
      await sleep(10);
    }
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    const exited = new Promise<number | null>((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    return exited;
  }
}

/** A cache of this test's own over process A's connections, with options of the test's choosing. */
function ownCache(server: TestServer, options: Partial<ConfigCacheOptions> = {}): ConfigCache {
  const cache = new ConfigCache({
    db: server.app.db,
    logger: server.app.logger,
    ttlMs: 600_000,
    redisPrefix: server.app.config.redisPrefix,
    publisher: server.app.publisher,
    pubsub: server.app.pubsub,
    subscriber: server.app.subscriber,
    publishTimeoutMs: 2000,
    ...options,
  });
  cache.start();
  return cache;
}

describe('configuration cache across two processes (A in this process, B a child process)', () => {
  let a: TestServer;
  let b: CacheProcess;
  let adminKey: string;
  let spaceId: string;
  let userId: string;

  beforeAll(async () => {
    a = await startTestServer({ env: { CONFIG_CACHE_TTL_MS: LONG_TTL_MS } });
    const admin = await createApiKey(a.app.db, { role: 'ADMIN', space: 'cache', name: 'admin' });
    const agent = await createApiKey(a.app.db, { role: 'AGENT', space: 'cache', user: 'carla', email: 'carla@example.test' });
    adminKey = admin.key;
    spaceId = admin.spaceId;
    userId = agent.userId!;
    b = await CacheProcess.start({
      DATABASE_URL: a.app.config.databaseUrl!,
      REDIS_URL: a.app.config.redisUrl,
      REDIS_PREFIX: a.app.config.redisPrefix,
      REDIS_AUTOSTART: 'false',
      DATA_DIR: a.app.config.dataDir,
      CONFIG_CACHE_TTL_MS: LONG_TTL_MS,
    });
  });

  afterAll(async () => {
    const code = await b?.stop();
    await a?.close();
    expect(code).toBe(0);
  });

  it('B serves a rule from its cache (an unannounced change stays unseen) until A upserts a rule through GraphQL; then B sees both at once, long before the TTL', async () => {
    expect(b.pid).not.toBe(process.pid);
    const first = await b.ask({ op: 'safetyRules', spaceId, type: 'send_email' });
    expect(first.result.map((r: { limit: number }) => r.limit).sort()).toEqual([50, 500]);
    const loadsAfterFirst = first.stats.loads;

    // Written behind the cache's back (no announcement): B keeps answering from its cache.
    await a.app.db.safetyRule.create({
      data: { ruleKey: `${spaceId}:send_email:RATE_LIMIT:60`, spaceId, actionType: 'send_email', kind: 'RATE_LIMIT', limit: 5, windowSeconds: 60 },
    });
    const cached = await b.ask({ op: 'safetyRules', spaceId, type: 'send_email' });
    expect(cached.result).toEqual(first.result);
    expect(cached.stats.loads).toBe(loadsAfterFirst);
    expect(cached.stats.hits).toBeGreaterThan(first.stats.hits);

    const upserted = (await postGraphql(
      a.url,
      adminKey,
      'mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { rule { ruleKey } errors { code message } } }',
      {
        input: { actionType: 'send_email', kind: 'REQUIRES_APPROVAL', description: 'emails need approval in this space' },
      },
    )).body;
    expect(upserted.data?.upsertSafetyRule.errors).toEqual([]);
    const { answer, ms } = await b.askUntil({ op: 'safetyRules', spaceId, type: 'send_email' }, (x) => x.result.length === 4);
    expect(answer.result.map((r: { kind: string; limit: number | null }) => `${r.kind}:${r.limit}`).sort()).toEqual([
      'RATE_LIMIT:5',
      'RATE_LIMIT:50',
      'RATE_LIMIT:500',
      'REQUIRES_APPROVAL:null',
    ]);
    expect(ms).toBeLessThan(2000);
  });

  it("B drops its cached handler configurations when A's admin upserts one through GraphQL", async () => {
    const before = await b.ask({ op: 'handlerConfigs', spaceId, provider: 'acme' });
    expect(before.result).toEqual({});
    const saved = (await postGraphql(
      a.url,
      adminKey,
      'mutation($input: HandlerConfigInput!) { upsertHandlerConfig(input: $input) { config { id } errors { code message } } }',
      {
        input: { handler: 'manual', provider: 'acme', settings: { queue: 'acme-desk' } },
      },
    )).body;
    expect(saved.data?.upsertHandlerConfig.errors).toEqual([]);
    const { answer, ms } = await b.askUntil({ op: 'handlerConfigs', spaceId, provider: 'acme' }, (x) => 'manual' in x.result);
    expect(answer.result.manual).toMatchObject({ provider: 'acme', spaceId, settings: { queue: 'acme-desk' } });
    expect(ms).toBeLessThan(2000);
  });

  it("B drops its cached user when A's admin changes the KYC status, and when `keys create --email` (another process, the CLI) changes the email", async () => {
    const before = await b.ask({ op: 'userSafety', spaceId, userId });
    expect(before.result).toMatchObject({ id: userId, handle: 'carla', email: 'carla@example.test', kycStatus: 'NONE' });

    const kyc = (await postGraphql(a.url, adminKey, 'mutation($id: ID!) { setKycStatus(userId: $id, status: VERIFIED) { user { kycStatus } errors { code } } }', { id: userId })).body;
    expect(kyc.data?.setKycStatus).toEqual({ user: { kycStatus: 'VERIFIED' }, errors: [] });
    const afterKyc = await b.askUntil({ op: 'userSafety', spaceId, userId }, (x) => x.result.kycStatus === 'VERIFIED');
    expect(afterKyc.ms).toBeLessThan(2000);

    const cli = await runCli(['keys', 'create', '--role', 'agent', '--space', 'cache', '--user', 'carla', '--email', 'carla@new.example.test'], {
      DATABASE_URL: a.app.config.databaseUrl!,
      REDIS_URL: a.app.config.redisUrl,
      REDIS_PREFIX: a.app.config.redisPrefix,
      REDIS_AUTOSTART: 'false',
      DATA_DIR: a.app.config.dataDir,
      LOG_LEVEL: 'warn',
    });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stderr).not.toMatch(/could not reach Redis/);
    // The CLI has exited, so its announcement is already in Redis: B sees it at once.
    const afterEmail = await b.askUntil({ op: 'userSafety', spaceId, userId }, (x) => x.result.email === 'carla@new.example.test');
    expect(afterEmail.answer.result).toMatchObject({ kycStatus: 'VERIFIED', email: 'carla@new.example.test' });
    expect(afterEmail.ms).toBeLessThan(2000);
  });

  it('a message B cannot read on the channel drops every entry of B (the safe reading of an unknown change)', async () => {
    await b.ask({ op: 'safetyRules', spaceId, type: 'order' });
    const hit = await b.ask({ op: 'safetyRules', spaceId, type: 'order' });
    const loads = hit.stats.loads;
    await a.app.publisher.publish(configChangeChannel(a.app.config.redisPrefix), '{"kind":"something-new"}');
    const { answer } = await b.askUntil({ op: 'stats' }, (x) => x.stats.clearedAll > hit.stats.clearedAll);
    const again = await b.ask({ op: 'safetyRules', spaceId, type: 'order' });
    expect(again.stats.loads).toBe(loads + 1);
    expect(answer.stats.live).toBe(true);
  });
});

describe('configuration cache in one process', () => {
  let a: TestServer;
  let spaceId: string;

  beforeAll(async () => {
    a = await startTestServer();
    spaceId = (await createApiKey(a.app.db, { role: 'ADMIN', space: 'solo' })).spaceId;
  });
  afterAll(async () => {
    await a?.close();
  });

  it('twenty concurrent misses for one key share one database read and get the same frozen value', async () => {
    const cache = ownCache(a);
    try {
      await cache.whenLive();
      const results = await Promise.all(Array.from({ length: 20 }, () => cache.safetyRules(spaceId, 'send_email')));
      expect(cache.stats()).toMatchObject({ loads: 1, shared: 19, hits: 0 });
      expect(new Set(results).size).toBe(1);
      expect(results[0]!.length).toBe(2);
      expect(Object.isFrozen(results[0]) && Object.isFrozen(results[0]![0])).toBe(true);
      // And different keys do not share: another type is its own read.
      await cache.safetyRules(spaceId, 'order');
      expect(cache.stats().loads).toBe(2);
    } finally {
      await cache.close();
    }
  });

  it('an invalidation that arrives while a read is in flight keeps that read out of the cache, and later lookups do not join it', async () => {
    // The real database, with a gate after the read: the read has seen the old rules and is held
    // until the change has been committed and announced.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let held = 0;
    const db = new Proxy(a.app.db, {
      get(target, prop, receiver) {
        if (prop !== 'safetyRule') return Reflect.get(target, prop, receiver);
        return {
          findMany: async (args: Parameters<PrismaClient['safetyRule']['findMany']>[0]) => {
            const rows = await target.safetyRule.findMany(args);
            if (held++ === 0) await gate;
            return rows;
          },
        };
      },
    }) as PrismaClient;
    const cache = ownCache(a, { db });
    try {
      await cache.whenLive();
      const stale = cache.safetyRules(spaceId, 'create_document');
      while (held === 0) await sleep(5);

      await a.app.db.safetyRule.create({
        data: { ruleKey: `${spaceId}:create_document:BLOCKED`, spaceId, actionType: 'create_document', kind: 'BLOCKED' },
      });
      // Announced by another cache on the same deployment (process A's own), as an admin path does.
      await a.app.configCache.invalidate({ kind: 'rules', spaceId, actionType: 'create_document' });
      for (let i = 0; i < 300 && cache.stats().invalidations === 0; i++) await sleep(10);
      expect(cache.stats().invalidations).toBe(1);
      // A lookup after the message starts its own read instead of joining the held one.
      const fresh = await cache.safetyRules(spaceId, 'create_document');
      expect(fresh.map((r) => r.kind).sort()).toEqual(['BLOCKED', 'RATE_LIMIT']);
      expect(cache.stats()).toMatchObject({ loads: 2, shared: 0 });

      release();
      expect((await stale).map((r) => r.kind)).toEqual(['RATE_LIMIT']);
      expect(cache.stats().discarded).toBe(1);
      // What is cached is the fresh read, not the held one.
      const loads = cache.stats().loads;
      expect((await cache.safetyRules(spaceId, 'create_document')).map((r) => r.kind).sort()).toEqual(['BLOCKED', 'RATE_LIMIT']);
      expect(cache.stats().loads).toBe(loads);
    } finally {
      release();
      await cache.close();
    }
  });

  it('every entry expires after the TTL, so a change whose announcement was lost is seen within it', async () => {
    let now = 0;
    const cache = ownCache(a, { ttlMs: 1000, now: () => now });
    try {
      await cache.whenLive();
      const before = await cache.handlerConfigs(spaceId, 'ttl-co');
      expect(before.size).toBe(0);
      await a.app.db.handlerConfig.create({
        data: { configKey: `${spaceId}:manual:ttl-co`, spaceId, handler: 'manual', provider: 'ttl-co', settings: {} },
      });
      now = 999;
      expect((await cache.handlerConfigs(spaceId, 'ttl-co')).size).toBe(0);
      now = 1000;
      expect([...(await cache.handlerConfigs(spaceId, 'ttl-co')).keys()]).toEqual(['manual']);
    } finally {
      await cache.close();
    }
  });

  it('CONFIG_CACHE_TTL_MS=0 caches nothing: every lookup reads the database', async () => {
    const cache = ownCache(a, { ttlMs: 0 });
    try {
      await cache.safetyRules(spaceId, 'send_email');
      await cache.safetyRules(spaceId, 'send_email');
      expect(cache.stats()).toMatchObject({ loads: 2, hits: 0, live: false });
    } finally {
      await cache.close();
    }
  });

  it('a user that does not exist is not cached (one created a moment later is found), and a non-UUID id finds nobody', async () => {
    const cache = ownCache(a);
    try {
      await cache.whenLive();
      expect(await cache.userSafety(spaceId, 'not-a-uuid')).toBeNull();
      const created = await a.app.db.user.create({ data: { spaceId, handle: 'later' } });
      await a.app.db.user.delete({ where: { id: created.id } });
      expect(await cache.userSafety(spaceId, created.id)).toBeNull();
      await a.app.db.user.create({ data: { id: created.id, spaceId, handle: 'later', email: 'later@example.test' } });
      expect(await cache.userSafety(spaceId, created.id)).toMatchObject({ handle: 'later', email: 'later@example.test', kycStatus: 'NONE' });
    } finally {
      await cache.close();
    }
  });
});

describe('configuration cache when its Redis restarts (a Redis of this test, not the shared one)', () => {
  let redis: OwnRedis;
  let a: TestServer;
  let spaceId: string;

  beforeAll(async () => {
    redis = await startOwnRedis();
    a = await startTestServer({ env: { REDIS_URL: redis.url, CONFIG_CACHE_TTL_MS: LONG_TTL_MS, REDIS_COMMAND_TIMEOUT_MS: '500' } });
    spaceId = (await createApiKey(a.app.db, { role: 'ADMIN', space: 'restart' })).spaceId;
  });
  afterAll(async () => {
    await a?.close();
    await redis?.close();
  });

  it('drops every entry when the subscriber connection drops, caches nothing while Redis is away, and starts afresh once subscribed again', async () => {
    const cache = a.app.configCache;
    await cache.whenLive();
    const first = await cache.safetyRules(spaceId, 'move_file');
    expect(first.map((r) => r.kind)).toEqual(['REQUIRES_APPROVAL']);
    expect(await cache.safetyRules(spaceId, 'move_file')).toBe(first);

    await redis.stop();
    for (let i = 0; i < 200 && cache.live; i++) await sleep(10);
    expect(cache.live).toBe(false);

    // A change made while Redis is away: its announcement cannot reach anyone.
    await a.app.db.safetyRule.create({
      data: { ruleKey: `${spaceId}:move_file:BLOCKED`, spaceId, actionType: 'move_file', kind: 'BLOCKED' },
    });
    const sent = await cache.invalidate({ kind: 'rules', spaceId, actionType: 'move_file' });
    expect(sent).toBe(false);
    const loads = cache.stats().loads;
    const during = await cache.safetyRules(spaceId, 'move_file');
    expect(during.map((r) => r.kind).sort()).toEqual(['BLOCKED', 'REQUIRES_APPROVAL']);
    await cache.safetyRules(spaceId, 'move_file');
    expect(cache.stats().loads).toBe(loads + 2);

    const cleared = cache.stats().clearedAll;
    await redis.start();
    await Promise.race([cache.whenLive(), sleep(15_000).then(() => Promise.reject(new Error('not live again within 15 s')))]);
    expect(cache.stats().clearedAll).toBeGreaterThan(cleared);

    // Subscribed again: entries are kept, and a change announced now reaches it.
    const after = await cache.safetyRules(spaceId, 'move_file');
    expect(await cache.safetyRules(spaceId, 'move_file')).toBe(after);
    await a.app.db.safetyRule.update({ where: { ruleKey: `${spaceId}:move_file:BLOCKED` }, data: { enabled: false } });
    // Announced by another process (a bare publish: nothing dropped locally first).
    expect(await publishConfigChange(a.app.publisher, a.app.config.redisPrefix, { kind: 'rules', spaceId, actionType: 'move_file' }, 2000)).toBe(true);
    for (let i = 0; i < 200 && (await cache.safetyRules(spaceId, 'move_file')) === after; i++) await sleep(10);
    const blocked = (await cache.safetyRules(spaceId, 'move_file')).find((r) => r.kind === 'BLOCKED');
    expect(blocked?.enabled).toBe(false);
  });
});
