import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineActionType } from '../../src/engine/action-types.js';
import { createApiKey } from '../../src/engine/api-keys.js';
import { jobIdFor } from '../../src/engine/queue.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { settleWaiting } from '../../src/engine/settle.js';
import { verifyReceipt } from '../../src/engine/receipts.js';
import { PermanentHandlerError } from '../../src/handlers/types.js';
import { graphql } from '../generated/gql.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const CreateAction = graphql(`
  mutation ExecCreate($input: CreateActionInput!) {
    createAction(input: $input) {
      action {
        id
        status
      }
      errors {
        code
        message
      }
    }
  }
`);

const ApproveIt = graphql(`
  mutation ExecApprove($id: ID!) {
    approveAction(id: $id) {
      action {
        status
      }
      errors {
        code
      }
    }
  }
`);

const CancelIt = graphql(`
  mutation ExecCancel($id: ID!) {
    cancelAction(id: $id, reason: "changed my mind") {
      action {
        status
      }
      errors {
        code
      }
    }
  }
`);

const ActionDetail = graphql(`
  query ExecDetail($id: ID!) {
    action(id: $id) {
      status
      attempts
      error
      result
      executions {
        handler
        kind
        attempt
        status
        error
      }
      receipts {
        receiptNumber
        provider
        handler
        externalRef
        data
      }
      rollbacks {
        status
        reason
      }
      statusUpdates {
        status
        message
      }
    }
  }
`);

const Tasks = graphql(`
  query ExecTasks {
    manualTasks(status: OPEN) {
      edges {
        node {
          id
          instructions
          action {
            id
          }
        }
      }
    }
  }
`);

const CompleteTask = graphql(`
  mutation ExecComplete($id: ID!, $outcome: JSON) {
    completeManualTask(id: $id, outcome: $outcome) {
      task {
        status
      }
      errors {
        code
        message
      }
    }
  }
`);

const Rollback = graphql(`
  mutation ExecRollback($id: ID!, $reason: String!) {
    rollbackAction(id: $id, reason: $reason) {
      action {
        status
      }
      errors {
        code
        message
      }
    }
  }
`);

const Receipts = graphql(`
  query ExecReceipts($actionId: ID) {
    receipts(actionId: $actionId) {
      edges {
        node {
          receiptNumber
          handler
        }
      }
    }
  }
`);

const testType = <T extends string>(type: T) =>
  defineActionType({
    type,
    description: 'test',
    payload: z.strictObject({ note: z.string().optional(), ms: z.number().optional() }),
    reversible: false,
  });
const testTypes = {
  flaky: testType('test_flaky'),
  broken: testType('test_broken'),
  slow: testType('test_slow'),
  lookalike: testType('test_lookalike'),
  callback: testType('test_callback'),
};

const calls = { flaky: 0 };
const flakyHandler = defineHandler({
  name: 'test.flaky',
  kind: 'api',
  types: [testTypes.flaky],
  repeat: 'check',
  async execute() {
    calls.flaky += 1;
    if (calls.flaky <= 2) throw new Error(`temporary outage #${calls.flaky}`);
    return { status: 'completed', provider: 'test', data: { calls: calls.flaky } };
  },
});
const brokenHandler = defineHandler({
  name: 'test.broken',
  kind: 'api',
  types: [testTypes.broken],
  repeat: 'check',
  async execute() {
    throw new PermanentHandlerError('the provider refuses this request');
  },
});
// A provider whose own client fails with a message that reads like a database outage of ours.
const lookalikeHandler = defineHandler({
  name: 'test.lookalike',
  kind: 'api',
  types: [testTypes.lookalike],
  repeat: 'check',
  async execute() {
    throw new Error('Connection terminated unexpectedly');
  },
});
// A provider that answers later (a callback): the job ends with the action waiting under a key.
const callbackHandler = defineHandler({
  name: 'test.callback',
  kind: 'webhook',
  types: [testTypes.callback],
  repeat: 'provider',
  async execute({ action }) {
    return { status: 'waiting', key: `test-callback:${action.id}`, message: 'Waiting for the provider to confirm' };
  },
});
const started: Array<{ note: string; at: number }> = [];
const slowHandler = defineHandler({
  name: 'test.slow',
  kind: 'api',
  types: [testTypes.slow],
  repeat: 'check',
  async execute({ payload }) {
    started.push({ note: payload.note ?? '', at: Date.now() });
    await sleep(payload.ms ?? 0);
    return { status: 'completed', provider: 'test', data: {} };
  },
});

let t: TestServer;
let agent: string;
let approver: string;
let operator: string;
let userId: string;

beforeAll(async () => {
  t = await startTestServer({
    env: { RETRY_BACKOFF_MS: '50', WORKER_CONCURRENCY: '1', RECONCILE_SECONDS: '3600' },
    app: {
      extraHandlers: [flakyHandler, brokenHandler, slowHandler, lookalikeHandler, callbackHandler],
      extraActionTypes: Object.values(testTypes),
    },
    worker: true,
  });
  const a = await createApiKey(t.app.db, { role: 'AGENT', space: 'exec', user: 'erin' });
  agent = a.key;
  userId = a.userId!;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'exec', user: 'erin' })).key;
  operator = (await createApiKey(t.app.db, { role: 'OPERATOR', space: 'exec' })).key;
});
afterAll(async () => {
  await t?.close();
});

async function create(type: string, payload: unknown, extra: Record<string, unknown> = {}) {
  const out = (await t.graphql(CreateAction, { input: { type, payload, ...extra } }, { apiKey: agent })).data!.createAction;
  expect(out.errors).toEqual([]);
  return out.action!.id;
}

async function detail(id: string, key = approver) {
  return (await t.graphql(ActionDetail, { id }, { apiKey: key })).data!.action!;
}

async function waitFor(id: string, statuses: string[], timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const a = await detail(id);
    if (statuses.includes(a.status)) return a;
    if (Date.now() > until) throw new Error(`action ${id} is ${a.status}, not ${statuses.join('|')}, after ${timeoutMs} ms`);
    await sleep(50);
  }
}

describe('execution', () => {
  it('runs a create_document action APPROVED → EXECUTING → COMPLETED with one execution, one receipt and the file under the user\'s folder', async () => {
    const id = await create('create_document', { title: 'Quarterly plan', content: '# Plan\n\nShip it.' });
    const done = await waitFor(id, ['COMPLETED']);
    expect(done.statusUpdates.map((u) => u.status).filter((s, i, all) => s !== all[i - 1])).toEqual(['APPROVED', 'EXECUTING', 'COMPLETED']);
    expect(done.executions).toEqual([expect.objectContaining({ handler: 'create_document.filesystem', kind: 'API', attempt: 1, status: 'SUCCEEDED' })]);
    expect(done.receipts).toHaveLength(1);
    expect(done.receipts[0]!.receiptNumber).toMatch(/^RCP-\d{8}-[A-Z2-9]{8}$/);
    const file = path.join(t.app.config.filesRoot, done.receipts[0]!.externalRef!);
    expect(file.startsWith(path.join(t.app.config.filesRoot, (await t.app.db.action.findUniqueOrThrow({ where: { id } })).spaceId, userId))).toBe(true);
    expect(await readFile(file, 'utf8')).toBe('# Plan\n\nShip it.');
    const receipts = (await t.graphql(Receipts, { actionId: id }, { apiKey: agent })).data!.receipts.edges;
    expect(receipts.map((e) => e.node.receiptNumber)).toEqual([done.receipts[0]!.receiptNumber]);
  });

  it('streams APPROVED, EXECUTING, COMPLETED in order to a graphql-ws subscriber, and COMPLETED first to one that joins after', async () => {
    const id = await create('create_document', { title: 'Streamed', content: 'live' }, { scheduledFor: new Date(Date.now() + 1000).toISOString() });
    const watch = (events: Array<{ status: string; seq: number }>) =>
      new Promise<void>((resolve, reject) => {
        const client = t.wsClient({ apiKey: agent });
        const stop = client.subscribe<{ actionStatus: { status: string; seq: number } }>(
          { query: `subscription { actionStatus(actionId: "${id}") { status seq } }` },
          {
            next: ({ data }) => {
              if (!data) return;
              events.push(data.actionStatus);
              if (data.actionStatus.status === 'COMPLETED') {
                stop();
                resolve();
              }
            },
            error: reject,
            complete: resolve,
          },
        );
      });
    const live: Array<{ status: string; seq: number }> = [];
    await watch(live);
    const statuses = live.map((e) => e.status).filter((s, i, all) => s !== all[i - 1]);
    expect(statuses).toEqual(['APPROVED', 'EXECUTING', 'COMPLETED']);
    expect(live.map((e) => e.seq)).toEqual([...live.map((e) => e.seq)].sort((a, b) => a - b));
    const late: Array<{ status: string; seq: number }> = [];
    await watch(late);
    expect(late[0]?.status).toBe('COMPLETED');
  });

  it('hands an order with no integration to an operator, and completes it with the outcome on the receipt', async () => {
    const id = await create('order', { provider: 'downtown-cafe', items: [{ name: 'Latte', price: 5.5, quantity: 2 }] });
    expect((await t.graphql(ApproveIt, { id }, { apiKey: approver })).data!.approveAction.action?.status).toBe('APPROVED');
    let task: { id: string; instructions: string } | undefined;
    for (let i = 0; i < 200 && !task; i++) {
      const edges = (await t.graphql(Tasks, undefined, { apiKey: operator })).data!.manualTasks.edges;
      task = edges.find((e) => e.node.action.id === id)?.node;
      if (!task) await sleep(50);
    }
    expect(task?.instructions).toMatch(/downtown-cafe/);
    expect((await detail(id)).status).toBe('EXECUTING');
    const outcome = { reference: 'DC-1547', readyInMinutes: 12 };
    const done = (await t.graphql(CompleteTask, { id: task!.id, outcome }, { apiKey: operator })).data!.completeManualTask;
    expect(done.errors).toEqual([]);
    expect(done.task?.status).toBe('COMPLETED');
    const action = await detail(id);
    expect(action.status).toBe('COMPLETED');
    expect(action.receipts).toEqual([expect.objectContaining({ handler: 'manual', provider: 'downtown-cafe', externalRef: 'DC-1547', data: outcome })]);
    const again = (await t.graphql(CompleteTask, { id: task!.id, outcome }, { apiKey: operator })).data!.completeManualTask;
    expect(again.errors[0]?.code).toBe('INVALID_TRANSITION');
  });

  it('settles an action that waits for a provider by its key, through the one settle path, with a receipt signed by the served key', async () => {
    const id = await create('test_callback', {});
    let waiting = null;
    for (let i = 0; i < 200 && !waiting; i++) {
      waiting = await t.app.db.execution.findFirst({ where: { actionId: id, status: 'WAITING' } });
      if (!waiting) await sleep(50);
    }
    expect(waiting).toMatchObject({ handler: 'test.callback', waitKey: `test-callback:${id}` });
    expect((await detail(id)).status).toBe('EXECUTING');
    await expect(settleWaiting(t.app.engine, 'test-callback:nobody', { result: { provider: 'p', externalRef: null, data: {} }, actor: { id: 'system' } })).rejects.toThrow(
      'nothing is waiting for test-callback:nobody',
    );
    const data = { confirmation: 'CB-7' };
    await settleWaiting(t.app.engine, `test-callback:${id}`, { result: { provider: 'callback-provider', externalRef: 'CB-7', data }, actor: { id: 'system' } });
    const done = await detail(id);
    expect(done.status).toBe('COMPLETED');
    expect(done.executions).toEqual([expect.objectContaining({ handler: 'test.callback', status: 'SUCCEEDED' })]);
    // Nothing waits under the key any more: a second callback changes nothing.
    await expect(settleWaiting(t.app.engine, `test-callback:${id}`, { result: { provider: 'p', externalRef: null, data: {} }, actor: { id: 'system' } })).rejects.toThrow(/nothing is waiting/);
    const receipt = await t.app.db.receipt.findFirstOrThrow({ where: { actionId: id } });
    const statement = JSON.parse(receipt.statement!) as Record<string, unknown>;
    expect(statement).toMatchObject({
      receiptNumber: receipt.receiptNumber,
      action: { id, type: 'test_callback', revision: 1 },
      handlerPath: [{ handler: 'test.callback', outcome: 'SUCCEEDED' }],
      provider: 'callback-provider',
      externalRef: 'CB-7',
      data,
    });
    const keys = (await (await fetch(`${t.url}/.well-known/action-engine-keys`)).json()) as { keys: Array<{ kid: string; x: string }> };
    const key = keys.keys.find((k) => k.kid === receipt.keyId)!;
    expect(verifyReceipt(key.x, receipt.statement!, receipt.signature!)).toBe(true);
    expect(verifyReceipt(key.x, receipt.statement!.replace('CB-7', 'CB-8'), receipt.signature!)).toBe(false);
  });

  it('retries a handler that fails twice and records 3 executions before COMPLETED', async () => {
    calls.flaky = 0;
    const id = await create('test_flaky', {});
    const done = await waitFor(id, ['COMPLETED', 'FAILED']);
    expect(done.status).toBe('COMPLETED');
    expect(done.executions.map((e) => [e.attempt, e.status])).toEqual([
      [1, 'FAILED'],
      [2, 'FAILED'],
      [3, 'SUCCEEDED'],
    ]);
    expect(done.executions[0]!.error).toMatch(/temporary outage #1/);
    expect(done.attempts).toBe(3);
  });

  it('fails at once, with one execution and the error recorded, when the handler fails permanently', async () => {
    const id = await create('test_broken', {});
    const done = await waitFor(id, ['COMPLETED', 'FAILED']);
    expect(done.status).toBe('FAILED');
    expect(done.executions).toEqual([expect.objectContaining({ attempt: 1, status: 'FAILED', error: 'the provider refuses this request' })]);
    expect(done.error).toMatch(/the provider refuses this request/);
  });
});

describe('handler failures that read like an outage', () => {
  it('count as attempts: a handler failing with "Connection terminated" ends FAILED after 3 attempts, not retried forever', async () => {
    const id = await create('test_lookalike', {});
    const done = await waitFor(id, ['COMPLETED', 'FAILED']);
    expect(done.status).toBe('FAILED');
    expect(done.executions.map((e) => [e.attempt, e.status])).toEqual([
      [1, 'FAILED'],
      [2, 'FAILED'],
      [3, 'FAILED'],
    ]);
  });
});

describe('rollback', () => {
  it('deletes the document and records the rollback; the action is ROLLED_BACK', async () => {
    const id = await create('create_document', { title: 'Draft to undo', content: 'x' });
    const done = await waitFor(id, ['COMPLETED']);
    const file = path.join(t.app.config.filesRoot, done.receipts[0]!.externalRef!);
    expect(existsSync(file)).toBe(true);
    const agentTry = (await t.graphql(Rollback, { id, reason: 'oops' }, { apiKey: agent })).data!.rollbackAction;
    expect(agentTry.errors[0]?.code).toBe('FORBIDDEN');
    const out = (await t.graphql(Rollback, { id, reason: 'written by mistake' }, { apiKey: approver })).data!.rollbackAction;
    expect(out.errors).toEqual([]);
    expect(out.action?.status).toBe('ROLLED_BACK');
    expect(existsSync(file)).toBe(false);
    expect((await detail(id)).rollbacks).toEqual([{ status: 'SUCCEEDED', reason: 'written by mistake' }]);
  });

  it('says a send_email cannot be rolled back', async () => {
    const id = await create('send_email', { to: ['x@example.com'], subject: 's', body: 'b' });
    const out = (await t.graphql(Rollback, { id, reason: 'unsend' }, { apiKey: approver })).data!.rollbackAction;
    expect(out.errors[0]).toMatchObject({ code: 'NOT_REVERSIBLE', message: 'send_email actions cannot be rolled back' });
  });
});

describe('scheduling', () => {
  it('does not start an action scheduled 2 s ahead before then', async () => {
    const at = new Date(Date.now() + 2000);
    const id = await create('test_slow', { note: 'scheduled' }, { scheduledFor: at.toISOString() });
    await sleep(1000);
    expect((await detail(id)).status).toBe('APPROVED');
    await waitFor(id, ['COMPLETED']);
    const begun = started.find((s) => s.note === 'scheduled');
    expect(begun!.at).toBeGreaterThanOrEqual(at.getTime() - 50);
  });

  it('starts a higher-priority action queued later first when the worker is busy', async () => {
    const busy = await create('test_slow', { note: 'busy', ms: 2500 });
    for (let i = 0; i < 100 && !started.some((s) => s.note === 'busy'); i++) await sleep(20);
    const low = await create('test_slow', { note: 'low' }, { priority: 9 });
    const high = await create('test_slow', { note: 'high' }, { priority: 1 });
    await waitFor(low, ['COMPLETED']);
    await waitFor(high, ['COMPLETED']);
    await waitFor(busy, ['COMPLETED']);
    const order = started.map((s) => s.note).filter((n) => n === 'low' || n === 'high');
    expect(order).toEqual(['high', 'low']);
  });

  it('removes the job of an action cancelled before it ran', async () => {
    const id = await create('test_slow', { note: 'never' }, { scheduledFor: new Date(Date.now() + 3_600_000).toISOString() });
    expect(await t.app.engine.queue.state(id)).toBe('delayed');
    expect((await t.graphql(CancelIt, { id }, { apiKey: agent })).data!.cancelAction.action?.status).toBe('CANCELLED');
    expect(await t.app.engine.queue.state(id)).toBeNull();
  });
});

describe('metrics', () => {
  it('exports action outcomes and queue depth on /metrics', async () => {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const completed = /^action_engine_action_status_changes_total\{type="create_document",status="COMPLETED"\} (\d+)/m.exec(text);
    expect(Number(completed?.[1])).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^action_engine_queue_jobs\{state="waiting"\} \d+/m);
    expect(text).toMatch(/^action_engine_queue_jobs\{state="delayed"\} \d+/m);
  });
});

describe('reconciler', () => {
  it('queues an APPROVED action whose job was lost, and it completes', async () => {
    const id = await create('test_slow', { note: 'lost' }, { scheduledFor: new Date(Date.now() + 3_600_000).toISOString() });
    // Simulate a crash between commit and enqueue: the job is gone, the action is APPROVED and due.
    await (await t.app.engine.queue.queue.getJob(jobIdFor(id)))!.remove();
    await t.app.db.action.update({ where: { id }, data: { scheduledFor: null } });
    expect(await t.app.engine.queue.state(id)).toBeNull();
    expect(await t.worker!.reconcile()).toBeGreaterThanOrEqual(1);
    await waitFor(id, ['COMPLETED']);
  });
});
