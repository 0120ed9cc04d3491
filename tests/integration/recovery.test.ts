import { randomUUID } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { jobIdFor } from '../../src/engine/queue.js';
import { startWorker, type ActionWorker } from '../../src/worker.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';
import { waitForActionStatus } from '../helpers/wait.js';

// A server without a worker: each test starts one when the stranded state is set up, so the
// worker's first reconcile is what must find it.
let t: TestServer;
const workers: ActionWorker[] = [];

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' } });
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.close()));
  await t?.close();
});

async function createDocument(key: string, title: string): Promise<string> {
  const { body } = await postGraphql(
    t.url,
    key,
    'mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message } } }',
    { input: { type: 'create_document', payload: { title, content: `# ${title}\n` } } },
  );
  expect(body.data.createAction.action.status).toBe('APPROVED');
  return body.data.createAction.action.id;
}

describe('recovery of stranded actions', () => {
  it('runs again an EXECUTING action whose job is gone, as a worker killed mid-write leaves it (job removed, a stale .tmp beside the target), removes that .tmp, and writes the document once', async () => {
    const { key } = await createApiKey(t.app.db, { role: 'AGENT', space: 'stranded', user: 'hana' });
    const id = await createDocument(key, 'Quarterly plan');
    const action = await t.app.db.action.findUniqueOrThrow({ where: { id } });
    // What a worker killed mid-write leaves: the action EXECUTING with a RUNNING execution, a
    // half-written temporary file next to the document, and no job (failed for good or lost).
    await (await t.app.engine.queue.queue.getJob(jobIdFor(id)))!.remove();
    await t.app.db.action.update({ where: { id }, data: { status: 'EXECUTING', attempts: 1 } });
    await t.app.db.execution.create({ data: { actionId: id, attempt: 1, handler: 'create_document.filesystem', kind: 'API', status: 'RUNNING' } });
    const folder = path.join(t.app.config.filesRoot, action.spaceId, action.userId);
    await mkdir(folder, { recursive: true });
    const name = `quarterly-plan-${id.slice(0, 8)}.md`;
    await writeFile(path.join(folder, `.${name}.0123456789ab.tmp`), '# Quar');
    // Another action's temporary file is not this one's to remove.
    const otherTemp = `.other-doc-${randomUUID().slice(0, 8)}.md.0123456789ab.tmp`;
    await writeFile(path.join(folder, otherTemp), 'x');

    const worker = startWorker(t.app);
    workers.push(worker);
    expect((await waitForActionStatus(t.app.db, id, 'COMPLETED', 10_000)).status).toBe('COMPLETED');

    const files = (await readdir(folder)).sort();
    expect(files).toEqual([otherTemp, name].sort());
    expect(await t.app.db.receipt.count({ where: { actionId: id } })).toBe(1);
    const executions = await t.app.db.execution.findMany({ where: { actionId: id }, orderBy: { startedAt: 'asc' } });
    expect(executions.map((e) => e.status)).toEqual(['FAILED', 'SUCCEEDED']);
    await worker.close();
    workers.splice(workers.indexOf(worker), 1);
  });

  it('leaves alone an EXECUTING action waiting for an operator (open manual task)', async () => {
    const { key } = await createApiKey(t.app.db, { role: 'AGENT', space: 'waiting-op', user: 'ivan' });
    const id = await createDocument(key, 'Held by an operator');
    await (await t.app.engine.queue.queue.getJob(jobIdFor(id)))!.remove();
    const action = await t.app.db.action.update({ where: { id }, data: { status: 'EXECUTING' } });
    await t.app.db.manualTask.create({ data: { actionId: id, spaceId: action.spaceId, instructions: 'do it by hand', status: 'OPEN' } });
    const worker = startWorker(t.app);
    workers.push(worker);
    await worker.reconcile();
    expect(await t.app.engine.queue.state(id)).toBeNull();
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id } })).status).toBe('EXECUTING');
    await worker.close();
    workers.splice(workers.indexOf(worker), 1);
  });

  it('queues a due action without a job in one space although 600 far-future scheduled actions wait in another', async () => {
    const busy = await createApiKey(t.app.db, { role: 'AGENT', space: 'far-future', user: 'jana' });
    const template = await t.app.db.action.findUniqueOrThrow({ where: { id: await createDocument(busy.key, 'template') } });
    const later = new Date(Date.now() + 30 * 24 * 3600 * 1000);
    await t.app.db.action.createMany({
      data: Array.from({ length: 600 }, (_, i) => ({
        spaceId: template.spaceId,
        userId: template.userId,
        requestedById: template.requestedById,
        type: 'create_document',
        payload: { title: `later ${i}`, content: 'x' },
        payloadHash: template.payloadHash,
        status: 'APPROVED' as const,
        statusSeq: 1,
        scheduledFor: later,
        // Older than anything else, as they would be after a month of queueing.
        updatedAt: new Date(Date.now() - 3600_000),
        createdAt: new Date(Date.now() - 3600_000),
      })),
    });
    await t.app.db.action.update({ where: { id: template.id }, data: { status: 'CANCELLED' } });

    const other = await createApiKey(t.app.db, { role: 'AGENT', space: 'elsewhere', user: 'karl' });
    const due = await createDocument(other.key, 'Due now');
    await (await t.app.engine.queue.queue.getJob(jobIdFor(due)))!.remove();
    expect(await t.app.engine.queue.state(due)).toBeNull();

    const worker = startWorker(t.app);
    workers.push(worker);
    expect((await waitForActionStatus(t.app.db, due, 'COMPLETED', 10_000)).status).toBe('COMPLETED');
    // The far-future ones were not queued early.
    const farIds = (await t.app.db.action.findMany({ where: { spaceId: template.spaceId, status: 'APPROVED' }, select: { id: true }, take: 5 })).map((a) => a.id);
    for (const id of farIds) expect(await t.app.engine.queue.state(id)).toBeNull();
    await worker.close();
    workers.splice(workers.indexOf(worker), 1);
  });
});
