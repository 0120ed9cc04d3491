/**
 * The bare ceilings the whole path is compared with (spec §11), measured in the same run:
 * BullMQ add → completed with a worker doing nothing, and a one-row PostgreSQL commit.
 */
import { performance } from 'node:perf_hooks';
import { Queue, Worker, type JobsOptions, type RedisOptions } from 'bullmq';
import pg from 'pg';
import { redisOptionsFromUrl } from '../src/app.js';
import type { TestDatabase } from '../tests/helpers/postgres.js';
import { testRedisUrl } from '../tests/helpers/redis.js';
import { once, pool, stats, type Defer, type Measurement } from './bench-stats.js';

/** A two-key advisory lock for the serialised reference (no engine code takes these keys). */
const REFERENCE_LOCK = { classid: 0x41450000, objid: 99 };

export function benchRedisOptions(url: string): RedisOptions {
  return { ...redisOptionsFromUrl(url), maxRetriesPerRequest: null };
}


export async function postgresCeiling(db: TestDatabase, n: number, concurrency: number, options: { serialised: boolean }, defer: Defer): Promise<Measurement> {
  const client = new pg.Pool({ connectionString: db.url, max: concurrency, application_name: 'bench-ceiling' });
  client.on('error', () => undefined); // an idle connection dropped (the database going at cleanup)
  const end = once(() => client.end());
  defer('Postgres ceiling pool', end);
  try {
    const table = options.serialised ? 'bench_scratch_locked' : 'bench_scratch';
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (id bigserial PRIMARY KEY, note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
    const one = async (note: string) => {
      const c = await client.connect();
      try {
        await c.query('BEGIN');
        // The cost of one lock every writer waits for (what the audit chain had before #8).
        if (options.serialised) await c.query('SELECT pg_advisory_xact_lock($1, $2)', [REFERENCE_LOCK.classid, REFERENCE_LOCK.objid]);
        await c.query(`INSERT INTO ${table} (note) VALUES ($1)`, [note]);
        await c.query('COMMIT');
      } catch (error) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        c.release();
      }
    };
    await pool(Math.min(100, n), concurrency, (i) => one(`warm-up ${i}`));
    const latencies = new Array<number>(n);
    const started = performance.now();
    await pool(n, concurrency, async (i) => {
      const t0 = performance.now();
      await one(`row ${i}`);
      latencies[i] = performance.now() - t0;
    });
    const seconds = (performance.now() - started) / 1000;
    return {
      label: options.serialised ? 'ref: Postgres commit under one advisory lock' : 'ceiling: Postgres commit (1-row INSERT)',
      throughput: n / seconds,
      seconds,
      latency: stats(latencies),
    };
  } finally {
    await end();
  }
}

// ---------------------------------------------------------------------------------------------
// Ceiling: BullMQ add + process

export async function bullmqCeiling(prefix: string, n: number, concurrency: number, workerConcurrency: number, defer: Defer): Promise<Measurement> {
  const connection = benchRedisOptions(testRedisUrl);
  // The engine's job options (src/engine/queue.ts): custom id, priority, 3 attempts, retention.
  const queue = new Queue('ceiling', {
    connection,
    prefix: `${prefix}:ceiling`,
    defaultJobOptions: {
      attempts: 3,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
  const addedAt = new Map<string, number>();
  const latencies: number[] = [];
  let done: () => void = () => {};
  let completed = 0;
  let target = 0;
  let lastCompletedAt = 0;
  const worker = new Worker<{ i: number; run: string }>('ceiling', async () => {}, {
    connection,
    prefix: `${prefix}:ceiling`,
    concurrency: workerConcurrency,
    lockDuration: 30_000,
    stalledInterval: 30_000,
    maxStalledCount: 2,
  });
  const close = once(async () => {
    await worker.close();
    await queue.close();
  });
  defer('BullMQ ceiling', close);
  worker.on('completed', (job) => {
    const t = performance.now();
    const start = addedAt.get(job.id ?? '');
    if (start === undefined) return;
    latencies.push(t - start);
    lastCompletedAt = t;
    if (++completed === target) done();
  });
  let workerError: Error | null = null;
  worker.on('error', (error) => {
    workerError = error;
  });
  const batch = async (run: string, count: number) => {
    addedAt.clear();
    latencies.length = 0;
    completed = 0;
    target = count;
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const started = performance.now();
    await pool(count, concurrency, async (i) => {
      const jobId = `${run}-${i}`;
      addedAt.set(jobId, performance.now());
      const opts: JobsOptions = { jobId, priority: 5, delay: 0 };
      await queue.add('execute', { i, run }, opts);
    });
    await finished;
    if (workerError) throw workerError;
    return { started, ended: lastCompletedAt };
  };
  try {
    await worker.waitUntilReady();
    await batch('warmup', Math.min(100, n));
    const { started, ended } = await batch('run', n);
    const seconds = (ended - started) / 1000;
    return { label: 'ceiling: BullMQ add→completed (no-op job)', throughput: n / seconds, seconds, latency: stats(latencies) };
  } finally {
    await close();
  }
}

