import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startService, type ServiceProcess } from '../helpers/cli.js';
import { sideEffectType } from '../helpers/side-effect-type.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';
import { waitForActionStatus } from '../helpers/wait.js';

const workerScript = path.resolve(import.meta.dirname, '../helpers/worker-process.ts');

let t: TestServer;
let effectsDir: string;
const workers: ServiceProcess[] = [];

beforeAll(async () => {
  t = await startTestServer({
    app: {
      extraActionTypes: [sideEffectType],
    },
  });
  effectsDir = await mkdtemp(path.join(tmpdir(), 'ae-effects-'));
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop('SIGKILL')));
  await t?.close();
  await rm(effectsDir, { recursive: true, force: true });
});

/** A worker process; `fastLocks` (the first test) shortens the lock and stalled check to keep it quick; `env` adds to its environment. */
function startWorkerProcess(fastLocks = true, env: Record<string, string> = {}) {
  return startService(
    [],
    {
      DATABASE_URL: t.app.config.databaseUrl!,
      REDIS_URL: t.app.config.redisUrl,
      REDIS_PREFIX: t.app.config.redisPrefix,
      REDIS_AUTOSTART: 'false',
      DATA_DIR: effectsDir,
      TEST_EFFECTS_DIR: effectsDir,
      LOG_LEVEL: 'info',
      ...(fastLocks ? { WORKER_LOCK_MS: '1500', WORKER_STALLED_CHECK_MS: '500' } : {}),
      ...env,
    },
    60_000,
    workerScript,
  );
}

async function effects(): Promise<string[]> {
  try {
    return (await readFile(path.join(effectsDir, 'effects.log'), 'utf8')).trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** Creates a side-effect action through `url` (an API) and waits until its effect happened; `mine` lists its effects. */
async function runningSideEffect(url: string, space: string, user: string, ms: number) {
  const { key } = await createApiKey(t.app.db, { role: 'AGENT', space, user });
  const { body } = await postGraphql(
    url,
    key,
    `mutation { createAction(input: { type: "test_side_effect", payload: { ms: ${ms} } }) { action { id status } errors { code message } } }`,
  );
  const id = body.data.createAction.action.id as string;
  const mine = async () => (await effects()).filter((line) => line.startsWith(id));
  for (let i = 0; i < 200 && (await mine()).length === 0; i++) await sleep(50);
  expect(await mine()).toHaveLength(1);
  return { id, mine };
}

describe('a worker killed with SIGKILL while its handler runs', () => {
  it('loses nothing: the job is recovered by another worker, the action completes, and the side effect happened once', async () => {
    const first = await startWorkerProcess();
    workers.push(first);
    const { key } = await createApiKey(t.app.db, { role: 'AGENT', space: 'crash', user: 'frank' });
    const { body } = await postGraphql(
      t.url,
      key,
      'mutation { createAction(input: { type: "test_side_effect", payload: { ms: 4000 } }) { action { id status } errors { code message } } }',
    );
    const id = body.data.createAction.action.id as string;

    for (let i = 0; i < 200 && (await effects()).length === 0; i++) await sleep(50);
    expect(await effects()).toHaveLength(1);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('EXECUTING');
    expect(await first.stop('SIGKILL')).toBeNull();

    const second = await startWorkerProcess();
    workers.push(second);
    let status = '';
    for (let i = 0; i < 400 && status !== 'COMPLETED'; i++) {
      status = (await t.app.db.action.findUniqueOrThrow({ where: { id } })).status;
      if (status !== 'COMPLETED') await sleep(50);
    }
    expect(status).toBe('COMPLETED');
    expect(await effects()).toHaveLength(1);
    const executions = await t.app.db.execution.findMany({ where: { actionId: id }, orderBy: { startedAt: 'asc' } });
    expect(executions.map((e) => e.status)).toEqual(['FAILED', 'SUCCEEDED']);
    expect(executions[0]!.error).toMatch(/worker stopped/);
    expect(await t.app.db.receipt.count({ where: { actionId: id } })).toBe(1);
    await second.stop('SIGTERM');
  }, 60_000);

  it('with the default WORKER_LOCK_MS and WORKER_STALLED_CHECK_MS, another worker runs the job again within 15 s of the kill', async () => {
    const first = await startWorkerProcess(false);
    workers.push(first);
    const { id, mine } = await runningSideEffect(t.url, 'crash-defaults', 'gina', 10_000);
    // Let the lock be renewed at least once, the worst case for recovery. The handler runs 10 s,
    // so it is still running when the second worker (seconds to start on a busy machine) is up.
    await sleep(500);
    const second = await startWorkerProcess(false);
    workers.push(second);
    const killedAt = Date.now();
    expect(await first.stop('SIGKILL')).toBeNull();

    // The recovered run starts by marking the interrupted execution FAILED.
    let recoveredAfterMs = Infinity;
    while (Date.now() - killedAt < 20_000) {
      const interrupted = await t.app.db.execution.count({ where: { actionId: id, status: 'FAILED' } });
      if (interrupted) {
        recoveredAfterMs = Date.now() - killedAt;
        break;
      }
      await sleep(100);
    }
    expect(recoveredAfterMs).toBeLessThan(15_000);
    let status = '';
    for (let i = 0; i < 200 && status !== 'COMPLETED'; i++) {
      status = (await t.app.db.action.findUniqueOrThrow({ where: { id } })).status;
      if (status !== 'COMPLETED') await sleep(50);
    }
    expect(status).toBe('COMPLETED');
    expect(await mine()).toHaveLength(1);
    expect(await t.app.db.receipt.count({ where: { actionId: id } })).toBe(1);
  }, 60_000);

  it('an action that process started itself (no job) is run again by another process once its heartbeat stops, with the side effect once', async () => {
    const first = await startWorkerProcess(true, { TEST_SERVE: '1' });
    workers.push(first);
    // Created through the process that runs a worker: approved by the rules, it starts there.
    const { id, mine } = await runningSideEffect(first.url, 'crash-here', 'hedy', 10_000);
    const running = await t.app.db.action.findUniqueOrThrow({ where: { id } });
    expect(running.status).toBe('EXECUTING');
    expect(running.runner).toContain(`:${first.child.pid}:`);
    expect(await t.app.engine.queue.state(id)).toBeNull();

    const second = await startWorkerProcess(true, { RECONCILE_SECONDS: '1' });
    workers.push(second);
    // Alive, the first process keeps the second's reconciler (a round at start, then every second) off its run.
    await sleep(1500);
    expect(await t.app.engine.queue.state(id)).toBeNull();
    const killedAt = Date.now();
    expect(await first.stop('SIGKILL')).toBeNull();
    expect((await waitForActionStatus(t.app.db, id, 'COMPLETED', 20_000)).status).toBe('COMPLETED');
    expect(Date.now() - killedAt).toBeLessThan(20_000);
    expect(await mine()).toHaveLength(1);
    const executions = await t.app.db.execution.findMany({ where: { actionId: id }, orderBy: { startedAt: 'asc' } });
    expect(executions.map((e) => e.status)).toEqual(['FAILED', 'SUCCEEDED']);
    expect(await t.app.db.receipt.count({ where: { actionId: id } })).toBe(1);
    await second.stop('SIGTERM');
  }, 60_000);
});
