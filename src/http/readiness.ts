import type { Redis } from 'ioredis';
import type { App } from '../app.js';

export interface ReadinessReport {
  ready: boolean;
  checks: Record<'postgres' | 'redis', { ok: boolean; error?: string; latencyMs?: number }>;
}

const CHECK_TIMEOUT_MS = 2000;

async function timed(check: () => Promise<unknown>): Promise<{ ok: boolean; error?: string; latencyMs?: number }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { ok: true, latencyMs: Math.round(performance.now() - started) };
  } catch (error) {
    return { ok: false, error: withoutAddresses(describe(error)) };
  } finally {
    clearTimeout(timer);
  }
}

/** /readyz answers anyone: it says what is down, not where it lives (hosts, ports, addresses stay in the log). */
function withoutAddresses(text: string): string {
  return text
    .replace(/\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b/g, '[address]')
    .replace(/\[[0-9a-f:]+\](?::\d+)?/gi, '[address]')
    .replace(/\b(at|to|connect(?:ing)? to) [A-Za-z0-9.-]+:\d+/g, '$1 [address]')
    .slice(0, 300);
}

function describe(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length) return describe(error.errors[0]);
  if (error instanceof Error) {
    // Prisma wraps driver errors in a multi-line "Invalid `prisma.…` invocation" preamble.
    const prismaMessage = /Message: `([^`]+)`/.exec(error.message);
    if (prismaMessage?.[1]) return prismaMessage[1];
    const cause = (error as Error & { cause?: unknown }).cause;
    const code = (error as Error & { code?: string }).code;
    const base = error.message.trim() || code || error.name;
    return cause && cause !== error ? `${base} (${describe(cause)})` : base;
  }
  return String(error);
}

/**
 * Checks that Postgres answers and is migrated, and that Redis answers on every connection the
 * service uses: commands (rate limits), the queue's, the publisher and the subscriber (a
 * subscriber that lost its connection means live status is not delivered).
 */
export async function checkReadiness(app: App): Promise<ReadinessReport> {
  const connections: Array<[string, () => Promise<unknown>]> = [
    ['commands', () => app.redis.ping()],
    [
      'queue',
      async () => {
        // BullMQ's own connection (an ioredis client behind its backend interface).
        const client = (await app.engine.queue.queue.backend.client) as unknown as Pick<Redis, 'ping'>;
        await client.ping();
      },
    ],
    ['publisher', () => app.publisher.ping()],
    // A subscribed connection answers PING too.
    ['subscriber', () => app.subscriber.ping()],
  ];
  const [postgres, ...redisChecks] = await Promise.all([
    timed(async () => {
      await app.db.$queryRaw`SELECT 1`;
      if (!app.database.migrated) {
        throw new Error(`migrations not applied yet: ${app.database.migrationError ?? 'in progress'}`);
      }
    }),
    ...connections.map(([, check]) => timed(check)),
  ]);
  const failed = redisChecks.flatMap((check, i) => (check.ok ? [] : [`${connections[i]![0]}: ${check.error}`]));
  const redis = failed.length
    ? { ok: false, error: failed.join('; ') }
    : { ok: true, latencyMs: Math.max(...redisChecks.map((c) => c.latencyMs ?? 0)) };
  return { ready: postgres!.ok && redis.ok, checks: { postgres: postgres!, redis } };
}
