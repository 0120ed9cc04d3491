import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../src/engine/audit.js';
import { applyStep, commitStep } from '../../src/engine/lifecycle/index.js';
import type { ActionStatus } from '../../src/engine/statuses.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { watchEngineStatements } from '../helpers/statements.js';

let t: TestServer;
let ids: { spaceId: string; userId: string; agentId: string; approverId: string };
const person = () => ({ id: ids.approverId, ip: '198.51.100.4', userAgent: 'vitest' });

beforeAll(async () => {
  t = await startTestServer();
  const space = await t.app.db.space.create({ data: { slug: `committer-${randomUUID().slice(0, 8)}` } });
  const user = await t.app.db.user.create({ data: { spaceId: space.id, handle: 'cara' } });
  const agent = await t.app.db.principal.create({ data: { spaceId: space.id, role: 'AGENT', userId: user.id, name: 'agent' } });
  const approver = await t.app.db.principal.create({ data: { spaceId: space.id, role: 'APPROVER', userId: user.id, name: 'approver' } });
  ids = { spaceId: space.id, userId: user.id, agentId: agent.id, approverId: approver.id };
});
afterAll(async () => {
  await t?.close();
});

async function newAction(status: ActionStatus) {
  const action = await t.app.db.action.create({
    data: { spaceId: ids.spaceId, userId: ids.userId, requestedById: ids.agentId, type: 'create_document', payload: { title: 'T', content: 'c' }, payloadHash: 'h', status, statusSeq: 0 },
  });
  await t.app.db.approvalToken.create({ data: { actionId: action.id, tokenHash: randomUUID(), payloadHash: 'h', recipient: 'c@example.com', expiresAt: new Date(Date.now() + 60_000) } });
  return action;
}

async function rowsOf(actionId: string) {
  const [updates, entries, tokens, action] = await Promise.all([
    t.app.db.statusUpdate.count({ where: { actionId } }),
    t.app.db.auditEntry.count({ where: { actionId } }),
    t.app.db.approvalToken.findMany({ where: { actionId }, select: { usedAt: true, voidedAt: true } }),
    t.app.db.action.findUniqueOrThrow({ where: { id: actionId } }),
  ]);
  return { updates, entries, tokens, action };
}

/** Counts the statements sent on the engine's connections while `fn` runs. */
async function statementsDuring(fn: () => Promise<unknown>): Promise<number> {
  const watch = watchEngineStatements();
  try {
    await fn();
  } finally {
    watch.stop();
  }
  return watch.count;
}

describe('lifecycle committer', () => {
  it('writes a decision in one statement: status, status update, both audit entries chained, tokens voided', async () => {
    const action = await newAction('PENDING');
    let moved;
    const statements = await statementsDuring(async () => {
      moved = (await commitStep(t.app.engine, action, { kind: 'decide', decision: 'approve', text: 'ok', actor: person() })).action;
    });
    expect(statements).toBe(1);
    expect(moved).toMatchObject({ id: action.id, status: 'APPROVED', statusSeq: 1, decidedBy: ids.approverId, auditSeq: 2 });
    const after = await rowsOf(action.id);
    expect(after.updates).toBe(1);
    expect(after.tokens.every((tk) => tk.voidedAt !== null)).toBe(true);
    const entries = await t.app.db.auditEntry.findMany({ where: { actionId: action.id }, orderBy: { chainSeq: 'asc' } });
    expect(entries.map((e) => [e.chain, e.chainSeq, e.event, e.actor])).toEqual([
      [action.id, 1, 'action.approved', ids.approverId],
      [action.id, 2, 'action.queued', 'system'],
    ]);
    expect(entries[0]!.prevHash).toBe('');
    expect(entries[1]!.prevHash).toBe(entries[0]!.hash);
    expect(after.action.auditHead).toBe(entries[1]!.hash);
  });

  it('writes nothing when the move lost the race, and names both statuses', async () => {
    const action = await newAction('REJECTED');
    const before = await rowsOf(action.id);
    const result = await commitStep(t.app.engine, action, { kind: 'decide', decision: 'approve', text: null, actor: person() });
    expect(result.action).toBeNull();
    expect(result.previous).toBe('REJECTED');
    expect(await rowsOf(action.id)).toEqual(before);
    await expect(applyStep(t.app.engine, action, { kind: 'cancel', reason: null, actor: person() })).rejects.toThrow(
      'cannot move the action to CANCELLED: it is REJECTED now, not PENDING or APPROVED',
    );
    expect(await rowsOf(action.id)).toEqual(before);
  });

  it('of 20 concurrent approvals and rejections exactly one wins; the chain has one decision and verifies', async () => {
    const action = await newAction('PENDING');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        commitStep(t.app.engine, action, { kind: 'decide', decision: i % 2 ? 'approve' : 'reject', text: `#${i}`, actor: person() }),
      ),
    );
    expect(results.filter((r) => r.action).length).toBe(1);
    const after = await rowsOf(action.id);
    expect(after.updates).toBe(1);
    expect(['APPROVED', 'REJECTED']).toContain(after.action.status);
    expect(after.entries).toBe(after.action.status === 'APPROVED' ? 2 : 1);
    expect((await verifyAuditChain(t.app.db)).ok).toBe(true);
  });

  it('an operator settles only an OPEN task: a second completion writes nothing', async () => {
    const action = await newAction('EXECUTING');
    const executionId = randomUUID();
    await applyStep(t.app.engine, action, {
      kind: 'wait',
      execution: { id: executionId, handler: 'manual', insert: { id: executionId, attempt: 1, handler: 'manual', kind: 'manual', startedAt: new Date() } },
      key: `manual:${action.id}`,
      message: 'Waiting for an operator',
      task: { id: randomUUID(), instructions: 'do it' },
      notes: [],
    });
    const task = await t.app.db.manualTask.findFirstOrThrow({ where: { actionId: action.id } });
    const settle = (receiptNumber: string) =>
      commitStep(t.app.engine, action, {
        kind: 'settle',
        execution: { id: executionId, handler: 'manual', insert: null },
        attempt: 1,
        handler: 'manual',
        result: { provider: 'operator', externalRef: null, data: { done: true }, rollbackData: null },
        receipt: { id: randomUUID(), receiptNumber, createdAt: new Date(), statement: '{}', signature: null, keyId: null },
        actor: person(),
        task: { id: task.id, outcome: { done: true }, completedById: ids.approverId },
        notes: [],
      });
    const [a, b] = await Promise.all([settle(`RCP-T-${randomUUID().slice(0, 8)}`), settle(`RCP-T-${randomUUID().slice(0, 8)}`)]);
    expect([a, b].filter((r) => r.action).length).toBe(1);
    expect(await t.app.db.receipt.count({ where: { actionId: action.id } })).toBe(1);
    expect((await t.app.db.manualTask.findUniqueOrThrow({ where: { id: task.id } })).status).toBe('COMPLETED');
    expect((await t.app.db.execution.findUniqueOrThrow({ where: { id: executionId } })).status).toBe('SUCCEEDED');
  });

  it('writes the notes of a step before its own update, with the status the action had', async () => {
    const action = await newAction('EXECUTING');
    await applyStep(t.app.engine, action, {
      kind: 'fail',
      attempts: 1,
      error: 'no handler could carry it out',
      notes: ['No integration configured for *, trying manual…', 'Another note'],
    });
    const updates = await t.app.db.statusUpdate.findMany({ where: { actionId: action.id }, orderBy: { seq: 'asc' } });
    expect(updates.map((u) => [u.seq, u.status, u.message])).toEqual([
      [1, 'EXECUTING', 'No integration configured for *, trying manual…'],
      [2, 'EXECUTING', 'Another note'],
      [3, 'FAILED', 'Failed: no handler could carry it out'],
    ]);
  });

  it('opens one task per action however often it waits (retries, racing workers)', async () => {
    const action = await newAction('EXECUTING');
    const wait = () => {
      const id = randomUUID();
      return applyStep(t.app.engine, action, {
        kind: 'wait',
        execution: { id, handler: 'manual', insert: { id, attempt: 1, handler: 'manual', kind: 'manual', startedAt: new Date() } },
        key: `manual:${action.id}`,
        message: 'Waiting for an operator',
        task: { id: randomUUID(), instructions: 'do it' },
        notes: [],
      });
    };
    await Promise.all([wait(), wait(), wait()]);
    expect(await t.app.db.manualTask.count({ where: { actionId: action.id, status: 'OPEN' } })).toBe(1);
  });
});
