/**
 * Consumes per second of the rate limiter against a real Redis (`REDIS_URL`, default
 * redis://127.0.0.1:6379): 10k sequential, then 10k with 50 in flight, each on one hot subject
 * with the default send_email rule (two windows). Usage: `npx tsx scripts/bench-rate-limiter.ts`.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createRateLimiter, type RateWindow } from '../src/engine/rate-limiter.js';

const N = 10_000;
const CONCURRENCY = 50;
// Limits high enough that nothing is refused: this measures the accepted path.
const windows: RateWindow[] = [
  { limit: 1_000_000, windowSeconds: 3600 },
  { limit: 1_000_000, windowSeconds: 86_400 },
];

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
const prefix = `aebench:${randomBytes(4).toString('hex')}`;
const limiter = createRateLimiter(redis, { prefix });

async function run(label: string, userId: string, concurrency: number): Promise<void> {
  const subject = { spaceId: 'bench', userId, type: 'send_email' };
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < N) await limiter.consume(subject, windows, `u${next++}`);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  console.log(`${label.padEnd(26)} ${Math.round(N / seconds).toString().padStart(7)} consumes/s  (${N} in ${seconds.toFixed(2)} s)`);
}

try {
  await limiter.consume({ spaceId: 'bench', userId: 'warmup', type: 'send_email' }, windows, 'w');
  await run('sequential', 'seq', 1);
  await run(`${CONCURRENCY} concurrent`, 'conc', CONCURRENCY);
} finally {
  let cursor = '0';
  do {
    const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = nextCursor;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}
