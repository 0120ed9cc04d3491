import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimitedError, SafetyUnavailableError } from '../../src/engine/errors.js';
import { createRateLimiter, type RateLimitSubject, type RateWindow, type RecordedUnit } from '../../src/engine/rate-limiter.js';
import { startOwnRedis } from '../helpers/own-services.js';
import { closedPort } from '../helpers/ports.js';
import { deleteRedisPrefix, testRedisUrl, uniqueRedisPrefix } from '../helpers/redis.js';

const HOUR = 3600;
const DAY = 86_400;
const prefix = uniqueRedisPrefix('rate-limiter');
const clients: Redis[] = [];

function client(): Redis {
  const redis = new Redis(testRedisUrl, { maxRetriesPerRequest: 1 });
  clients.push(redis);
  return redis;
}

function subject(overrides: Partial<RateLimitSubject> = {}): RateLimitSubject {
  return { spaceId: 'space-1', userId: `user-${randomUUID()}`, type: 'send_email', ...overrides };
}

/** A clock the test moves by hand, far from the real one so nothing depends on wall time. */
function manualClock(start = Date.UTC(2031, 0, 1, 9, 0, 0)) {
  const clock = { t: start, now: () => clock.t, advance: (ms: number) => void (clock.t += ms) };
  return clock;
}

async function refusal(promise: Promise<unknown>): Promise<RateLimitedError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RateLimitedError);
  return err as RateLimitedError;
}

let redis: Redis;

beforeAll(() => {
  redis = client();
});

afterAll(async () => {
  await deleteRedisPrefix(prefix);
  for (const c of clients) c.disconnect();
});

describe('rate limiter (real Redis)', () => {
  it('lets exactly 50 of 60 concurrent consumes through a 50/hour limit, across several connections', async () => {
    const limiters = [client(), client(), client()].map((c) => createRateLimiter(c, { prefix }));
    const s = subject();
    const windows: RateWindow[] = [{ limit: 50, windowSeconds: HOUR }];
    const results = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) => limiters[i % limiters.length]!.consume(s, windows, `unit-${i}`)),
    );
    const passed = results.filter((r) => r.status === 'fulfilled');
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    expect(passed).toHaveLength(50);
    expect(refused).toHaveLength(10);
    for (const err of refused) {
      expect(err).toBeInstanceOf(RateLimitedError);
      const { retryAfterSeconds, message } = err as RateLimitedError;
      expect(retryAfterSeconds).toBeGreaterThan(0);
      expect(retryAfterSeconds).toBeLessThanOrEqual(HOUR);
      expect(message).toMatch(/^rate limit: 50 send_email per hour reached; retry in \d+ s$/);
    }
    const [status] = await limiters[0]!.status(s, windows);
    expect(status).toMatchObject({ current: 50, limit: 50, windowSeconds: HOUR });
  });

  it('checks every window before consuming: a refusal by the hourly window leaves the daily count alone, and a refusal by the daily window leaves the hourly count alone', async () => {
    const clock = manualClock();
    const limiter = createRateLimiter(redis, { prefix, now: clock.now });
    const s = subject();
    const windows: RateWindow[] = [
      { limit: 5, windowSeconds: HOUR },
      { limit: 7, windowSeconds: DAY },
    ];
    for (let i = 0; i < 5; i++) {
      await limiter.consume(s, windows, `a${i}`);
      clock.advance(1000);
    }
    const hourly = await refusal(limiter.consume(s, windows, 'a5'));
    expect(hourly.message).toMatch(/5 send_email per hour reached/);
    expect(hourly.message).not.toMatch(/per day/);
    // First unit at t0 leaves the hour at t0+3600 s; it is now t0+5 s.
    expect(hourly.retryAfterSeconds).toBe(HOUR - 5);
    expect((await limiter.status(s, windows)).map((w) => w.current)).toEqual([5, 5]);

    clock.advance(HOUR * 1000);
    const after = await limiter.consume(s, windows, 'b0');
    expect(after.map((w) => w.current)).toEqual([1, 6]);
    await limiter.consume(s, windows, 'b1');
    const daily = await refusal(limiter.consume(s, windows, 'b2'));
    expect(daily.message).toMatch(/^rate limit: 7 send_email per day reached; retry in \d+ s$/);
    // Oldest daily unit (t0) leaves the day at t0+86400 s; it is now t0+5 s+3600 s.
    expect(daily.retryAfterSeconds).toBe(DAY - HOUR - 5);
    expect((await limiter.status(s, windows)).map((w) => w.current)).toEqual([2, 7]);
  });

  it('a refused request consumes nothing in any window, and when several windows refuse, names them all and waits for the longest', async () => {
    const clock = manualClock();
    const limiter = createRateLimiter(redis, { prefix, now: clock.now });
    const s = subject({ type: 'create_document' });
    const windows: RateWindow[] = [
      { limit: 2, windowSeconds: 60 },
      { limit: 3, windowSeconds: HOUR },
    ];
    await limiter.consume(s, windows, 'u1');
    clock.advance(61_000);
    await limiter.consume(s, windows, 'u2');
    await limiter.consume(s, windows, 'u3');
    const before = await limiter.status(s, windows);
    expect(before.map((w) => w.current)).toEqual([2, 3]);

    for (let i = 0; i < 5; i++) {
      const err = await refusal(limiter.consume(s, windows, `refused-${i}`));
      expect(err.message).toMatch(/2 create_document per minute and 3 create_document per hour reached/);
      // hour: u1 (t0) leaves at t0+3600 s, it is t0+61 s → 3539 s; the minute would need only 60 s.
      expect(err.retryAfterSeconds).toBe(HOUR - 61);
    }
    expect(await limiter.status(s, windows)).toEqual(before);
    const members = await redis.zrange(`${prefix}:rl:space-1:${s.userId}:create_document`, 0, -1);
    expect(members.sort()).toEqual(['u1', 'u2', 'u3']);
  });

  it('slides: a unit leaves the window exactly windowSeconds after it was consumed, and resetsAt says when', async () => {
    const clock = manualClock();
    const t0 = clock.t;
    const limiter = createRateLimiter(redis, { prefix, now: clock.now });
    const s = subject();
    const windows: RateWindow[] = [{ limit: 3, windowSeconds: 10 }];

    expect(await limiter.status(s, windows)).toEqual([{ limit: 3, windowSeconds: 10, current: 0, resetsAt: new Date(t0) }]);
    const [first] = await limiter.consume(s, windows, 'u0');
    expect(first).toEqual({ limit: 3, windowSeconds: 10, current: 1, resetsAt: new Date(t0 + 10_000) });
    clock.advance(2000);
    await limiter.consume(s, windows, 'u2');
    clock.advance(2000);
    await limiter.consume(s, windows, 'u4');
    clock.advance(1000); // t0+5 s
    expect((await refusal(limiter.consume(s, windows, 'x'))).retryAfterSeconds).toBe(5);

    clock.t = t0 + 9_999;
    expect(await limiter.status(s, windows)).toEqual([{ limit: 3, windowSeconds: 10, current: 3, resetsAt: new Date(t0 + 10_000) }]);
    clock.t = t0 + 10_000;
    expect(await limiter.status(s, windows)).toEqual([{ limit: 3, windowSeconds: 10, current: 2, resetsAt: new Date(t0 + 12_000) }]);
    const [after] = await limiter.consume(s, windows, 'u10');
    expect(after).toEqual({ limit: 3, windowSeconds: 10, current: 3, resetsAt: new Date(t0 + 12_000) });

    clock.t = t0 + 30_000;
    expect(await limiter.status(s, windows)).toEqual([{ limit: 3, windowSeconds: 10, current: 0, resetsAt: new Date(t0 + 30_000) }]);
  });

  it('uses the Redis server clock when no clock is injected: resetsAt is about now + window', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const s = subject();
    const [seconds, micros] = await redis.time();
    const serverNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const [w] = await limiter.consume(s, [{ limit: 1, windowSeconds: 60 }], 'only');
    expect(Math.abs(w!.resetsAt.getTime() - (serverNow + 60_000))).toBeLessThan(2000);
    const err = await refusal(limiter.consume(s, [{ limit: 1, windowSeconds: 60 }], 'second'));
    expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(59);
    expect(err.retryAfterSeconds).toBeLessThanOrEqual(60);
  });

  it('keeps separate counts for separate users, types and spaces', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const windows: RateWindow[] = [{ limit: 1, windowSeconds: HOUR }];
    const a = subject();
    await limiter.consume(a, windows, 'u');
    await refusal(limiter.consume(a, windows, 'v'));
    await limiter.consume({ ...a, userId: `${a.userId}-other` }, windows, 'u');
    await limiter.consume({ ...a, type: 'create_calendar_event' }, windows, 'u');
    await limiter.consume({ ...a, spaceId: 'space-2' }, windows, 'u');
    // ':' inside ids cannot make two subjects collide.
    await limiter.consume({ ...a, userId: `${a.userId}:send_email`, type: 'x' }, windows, 'u');
    await limiter.consume({ ...a, userId: a.userId, type: 'x:send_email' }, windows, 'u');
    expect((await limiter.status(a, windows))[0]!.current).toBe(1);
  });

  it('counts a repeated unitId once (a retried request does not pay twice)', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const s = subject();
    const windows: RateWindow[] = [{ limit: 2, windowSeconds: HOUR }];
    await limiter.consume(s, windows, 'action-1');
    const again = await limiter.consume(s, windows, 'action-1');
    expect(again[0]!.current).toBe(1);
    await limiter.consume(s, windows, 'action-2');
    // Already counted: still accepted even though the window is full.
    expect((await limiter.consume(s, windows, 'action-1'))[0]!.current).toBe(2);
    await refusal(limiter.consume(s, windows, 'action-3'));
  });

  it('sets a TTL of the largest window on the key, under the configured prefix', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const s = subject({ spaceId: 'ttl-space' });
    await limiter.consume(
      s,
      [
        { limit: 50, windowSeconds: HOUR },
        { limit: 500, windowSeconds: DAY },
      ],
      'u',
    );
    const key = `${prefix}:rl:ttl-space:${s.userId}:send_email`;
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(DAY * 1000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(DAY * 1000);
  });

  it('status consumes nothing and writes no key; empty window lists return [] without Redis', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const s = subject({ spaceId: 'status-space' });
    await limiter.status(s, [{ limit: 5, windowSeconds: 60 }]);
    expect(await redis.exists(`${prefix}:rl:status-space:${s.userId}:send_email`)).toBe(0);

    const dead = new Redis({ port: await closedPort(), lazyConnect: true, enableOfflineQueue: false });
    clients.push(dead);
    const offline = createRateLimiter(dead, { prefix });
    expect(await offline.consume(s, [], 'u')).toEqual([]);
    expect(await offline.status(s, [])).toEqual([]);
  });

  it('fails closed with SafetyUnavailableError within timeoutMs when Redis is unreachable and the command waits in the offline queue', async () => {
    const dead = new Redis({ port: await closedPort(), retryStrategy: () => 50 });
    dead.on('error', () => {});
    clients.push(dead);
    const limiter = createRateLimiter(dead, { prefix, timeoutMs: 300 });
    const started = performance.now();
    const err = await limiter.consume(subject(), [{ limit: 5, windowSeconds: 60 }], 'u').catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(SafetyUnavailableError);
    // The caller is told the problem; the driver's words stay in `cause`, for the log.
    expect((err as Error).message).toMatch(/rate-limit counters cannot be read/);
    expect(String(((err as Error).cause as Error)?.message)).toMatch(/300 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(1000);
    await expect(limiter.status(subject(), [{ limit: 5, windowSeconds: 60 }])).rejects.toBeInstanceOf(SafetyUnavailableError);
  });

  it('fails closed with SafetyUnavailableError at once when Redis is unreachable and the client has no offline queue', async () => {
    const dead = new Redis({ port: await closedPort(), enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    dead.on('error', () => {});
    clients.push(dead);
    const limiter = createRateLimiter(dead, { prefix });
    const started = performance.now();
    await expect(limiter.consume(subject(), [{ limit: 5, windowSeconds: 60 }], 'u')).rejects.toBeInstanceOf(SafetyUnavailableError);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('fails closed with SafetyUnavailableError when Redis answers with an error', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const s = subject({ spaceId: 'wrongtype' });
    await redis.set(`${prefix}:rl:wrongtype:${s.userId}:send_email`, 'not a sorted set');
    const err = await limiter.consume(s, [{ limit: 5, windowSeconds: 60 }], 'u').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetyUnavailableError);
    // The caller is told the problem; the driver's words stay in `cause`, for the log.
    expect((err as Error).message).toMatch(/rate-limit counters cannot be read/);
    expect(String(((err as Error).cause as Error)?.message)).toMatch(/WRONGTYPE/);
  });

  it('refuses everything under a limit of 0 and rejects malformed windows before touching Redis', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const s = subject();
    const err = await refusal(limiter.consume(s, [{ limit: 0, windowSeconds: 60 }], 'u'));
    expect(err.retryAfterSeconds).toBe(60);
    await expect(limiter.consume(s, [{ limit: 1.5, windowSeconds: 60 }], 'u')).rejects.toBeInstanceOf(RangeError);
    await expect(limiter.consume(s, [{ limit: 1, windowSeconds: 0 }], 'u')).rejects.toBeInstanceOf(RangeError);
    await expect(limiter.consume(s, [{ limit: 1, windowSeconds: 60 }], '')).rejects.toBeInstanceOf(TypeError);
  });
  it('release gives a unit back (ZREM of that member) and consume says whether this call counted the unit', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const s = subject();
    const windows: RateWindow[] = [{ limit: 2, windowSeconds: HOUR }];
    expect((await limiter.consume(s, windows, 'a')).counted).toBe(true);
    expect((await limiter.consume(s, windows, 'a')).counted).toBe(false);
    await limiter.consume(s, windows, 'b');
    await refusal(limiter.consume(s, windows, 'c'));
    await limiter.release(s, 'b');
    await limiter.release(s, 'never-counted');
    expect((await limiter.status(s, windows))[0]!.current).toBe(1);
    expect((await limiter.consume(s, windows, 'c'))[0]!.current).toBe(2);
  });

  it('names the counted thing by its label in refusals', async () => {
    const limiter = createRateLimiter(redis, { prefix });
    const s = subject({ type: '*approval-requests:move_file', label: 'move_file approval requests' });
    await limiter.consume(s, [{ limit: 1, windowSeconds: HOUR }], 'a');
    const err = await refusal(limiter.consume(s, [{ limit: 1, windowSeconds: HOUR }], 'b'));
    expect(err.message).toMatch(/^rate limit: 1 move_file approval requests per hour reached/);
  });

  it('rebuilds a missing counter from the recorded units (only those inside the largest window), once, atomically, under concurrency', async () => {
    const clock = manualClock();
    const recorded: RecordedUnit[] = [
      { unitId: 'old', atMs: clock.t - DAY * 1000 - 1 }, // outside every window
      { unitId: 'd1', atMs: clock.t - 2 * HOUR * 1000 }, // in the day only
      { unitId: 'h1', atMs: clock.t - 10_000 },
      { unitId: 'h2', atMs: clock.t - 5_000 },
      { unitId: 'ahead', atMs: clock.t + 3_000 }, // recorded by a clock running ahead: counted as now
    ];
    const asked: number[] = [];
    const limiter = createRateLimiter(redis, {
      prefix,
      now: clock.now,
      rebuild: async (_s, since) => {
        asked.push(since);
        return recorded;
      },
    });
    const s = subject();
    const windows: RateWindow[] = [
      { limit: 3, windowSeconds: HOUR },
      { limit: 10, windowSeconds: DAY },
    ];
    expect((await limiter.status(s, windows)).map((w) => w.current)).toEqual([3, 4]);
    expect(asked).toEqual([clock.t - DAY * 1000]);
    // The status put them back (the key exists now): 8 concurrent consumes, none fits the hour.
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => limiter.consume(s, windows, `new-${i}`)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(0);
    expect(asked).toHaveLength(1);
    const key = `${prefix}:rl:space-1:${s.userId}:send_email`;
    expect((await redis.zrange(key, 0, -1)).sort()).toEqual(['ahead', 'd1', 'h1', 'h2']);
    expect(Number(await redis.zscore(key, 'ahead'))).toBe(clock.t);

    // Concurrent rebuilds of one missing key: each may read the database, the same units count once.
    const t = subject();
    recorded.pop();
    const racing = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => limiter.consume(t, windows, `r-${i}`)));
    expect(racing.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((await limiter.status(t, windows)).map((w) => w.current)).toEqual([3, 4]);
  });

  it('fails closed when the rebuild cannot read the record', async () => {
    const limiter = createRateLimiter(redis, {
      prefix,
      rebuild: async () => {
        throw new Error('database down');
      },
    });
    const err = await limiter.consume(subject(), [{ limit: 5, windowSeconds: 60 }], 'u').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetyUnavailableError);
    // The caller is told the problem; the driver's words stay in `cause`, for the log.
    expect((err as Error).message).toMatch(/rate-limit counters cannot be read/);
    expect(String(((err as Error).cause as Error)?.message)).toMatch(/database down/);
  });

  it('own Redis: consume 5 of 5/hour, Redis restarts empty, the 6th is refused and the counts are right (rebuilt from the record)', async () => {
    const own = await startOwnRedis();
    const ownClient = new Redis(own.url, { maxRetriesPerRequest: 1 });
    ownClient.on('error', () => {});
    try {
      // The record: what the database holds for the units consumed (here kept by the test).
      const record: RecordedUnit[] = [];
      const limiter = createRateLimiter(ownClient, {
        prefix,
        rebuild: async (_s, since) => record.filter((u) => u.atMs > since),
      });
      const s = subject();
      const windows: RateWindow[] = [{ limit: 5, windowSeconds: HOUR }];
      for (let i = 0; i < 5; i++) {
        await limiter.consume(s, windows, `u${i}`);
        record.push({ unitId: `u${i}`, atMs: Date.now() });
      }
      await refusal(limiter.consume(s, windows, 'u5'));
      await own.stop();
      await own.start();
      let err: unknown;
      for (let i = 0; i < 50; i++) {
        err = await limiter.consume(s, windows, 'u5').catch((e: unknown) => e);
        if (!(err instanceof SafetyUnavailableError)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(err).toBeInstanceOf(RateLimitedError);
      expect((err as RateLimitedError).retryAfterSeconds).toBeGreaterThan(HOUR - 60);
      expect((await limiter.status(s, windows))[0]!.current).toBe(5);
      expect((await ownClient.zrange(`${prefix}:rl:space-1:${s.userId}:send_email`, 0, -1)).sort()).toEqual(['u0', 'u1', 'u2', 'u3', 'u4']);
    } finally {
      ownClient.disconnect();
      await own.close();
    }
  });
});
