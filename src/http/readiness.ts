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
    return { ok: false, error: describe(error) };
  } finally {
    clearTimeout(timer);
  }
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

/** Checks that Postgres answers and is migrated, and that Redis answers. */
export async function checkReadiness(app: App): Promise<ReadinessReport> {
  const [postgres, redis] = await Promise.all([
    timed(async () => {
      await app.db.$queryRaw`SELECT 1`;
      if (!app.database.migrated) {
        throw new Error(`migrations not applied yet: ${app.database.migrationError ?? 'in progress'}`);
      }
    }),
    timed(() => app.redis.ping()),
  ]);
  return { ready: postgres.ok && redis.ok, checks: { postgres, redis } };
}
