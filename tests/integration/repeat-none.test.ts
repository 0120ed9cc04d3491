import { randomUUID } from 'node:crypto';
import type { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executeActionJob, type ExecutionDeps } from '../../src/engine/execution.js';
import { applyStep } from '../../src/engine/lifecycle/index.js';
import { completeManualTask } from '../../src/engine/manual-tasks.js';
import type { ActionJobData } from '../../src/engine/queue.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { sideEffectType } from '../helpers/side-effect-type.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// A handler that cannot tell whether its effect happened (as with SMTP): repeat `none`.
const runs: string[] = [];
const smtpLike = defineHandler({
  name: 'test.smtp-like',
  kind: 'email',
  types: [sideEffectType],
  repeat: 'none',
  async execute({ action }) {
    runs.push(action.id);
    return { status: 'completed', provider: 'smtp', data: { sent: true } };
  },
});

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ app: { extraHandlers: [smtpLike], extraActionTypes: [sideEffectType] } });
});
afterAll(async () => {
  await t?.close();
});

describe('a handler whose repeat cannot be made harmless (repeat: none)', () => {
  it('is not run again after its worker died mid-attempt: an operator confirms the outcome, and the receipt names the handler as confirmed', async () => {
    const db = t.app.db;
    const space = await db.space.create({ data: { slug: `none-${randomUUID().slice(0, 8)}` } });
    const user = await db.user.create({ data: { spaceId: space.id, handle: 'nell' } });
    const agent = await db.principal.create({ data: { spaceId: space.id, role: 'AGENT', userId: user.id, name: 'agent' } });
    const operator = await db.principal.create({ data: { spaceId: space.id, role: 'OPERATOR', name: 'operator' } });
    const action = await db.action.create({
      data: { spaceId: space.id, userId: user.id, requestedById: agent.id, type: 'test_side_effect', payload: {}, payloadHash: 'h', status: 'APPROVED' },
    });
    const deps: ExecutionDeps = { ...t.app.engine, handlers: t.app.handlers, services: t.app.handlerServices };
    // What a worker that died mid-attempt leaves: the action claimed, the handler's RUNNING row written, no outcome.
    await applyStep(deps, action, { kind: 'claim', attempt: 1, chain: ['test.smtp-like'] });
    const executionId = randomUUID();
    await applyStep(deps, action, { kind: 'start', execution: { id: executionId, attempt: 1, handler: 'test.smtp-like', kind: 'email', startedAt: new Date() }, notes: [] });

    // The recovered job.
    const job = { attemptsMade: 0, opts: { attempts: 3 }, data: { actionId: action.id, spaceId: space.id, type: 'test_side_effect' } } as unknown as Job<ActionJobData>;
    await executeActionJob(deps, job);
    expect(runs).not.toContain(action.id);
    const task = await db.manualTask.findFirstOrThrow({ where: { actionId: action.id } });
    expect(task).toMatchObject({ status: 'OPEN', executionId });
    expect(task.instructions).toMatch(/test\.smtp-like was carrying out this action/);
    expect(await db.execution.findUniqueOrThrow({ where: { id: executionId } })).toMatchObject({ status: 'WAITING', waitKey: `confirm:${action.id}` });

    // Run again (another recovery): still not run, still one task.
    await executeActionJob(deps, job);
    expect(runs).not.toContain(action.id);
    expect(await db.manualTask.count({ where: { actionId: action.id } })).toBe(1);

    await completeManualTask(deps, { id: operator.id, role: 'OPERATOR', spaceId: space.id, userId: null }, { id: operator.id }, task.id, { reference: 'msg-1' });
    const done = await db.action.findUniqueOrThrow({ where: { id: action.id }, include: { receipts: true, executions: true } });
    expect(done.status).toBe('COMPLETED');
    expect(done.executions).toEqual([expect.objectContaining({ id: executionId, handler: 'test.smtp-like', status: 'SUCCEEDED' })]);
    expect(done.receipts).toEqual([expect.objectContaining({ handler: 'test.smtp-like', externalRef: 'msg-1' })]);
    expect(JSON.parse(done.receipts[0]!.statement!)).toMatchObject({ handler: 'test.smtp-like', handlerPath: [{ handler: 'test.smtp-like', outcome: 'CONFIRMED_BY_OPERATOR' }] });
  });
});
