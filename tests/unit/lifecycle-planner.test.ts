import { describe, expect, it } from 'vitest';
import { planCreate, planStep, type Plan } from '../../src/engine/lifecycle/planner.js';
import type { Step, StepKind } from '../../src/engine/lifecycle/steps.js';
import { ACTION_STATUSES, canTransition, TRANSITIONS, type ActionStatus } from '../../src/engine/statuses.js';

const at = new Date('2026-11-27T10:00:00.000Z');
const action = { id: '11111111-1111-4111-8111-111111111111', spaceId: '22222222-2222-4222-8222-222222222222', priority: 3, scheduledFor: null };
const person = { id: '33333333-3333-4333-8333-333333333333', ip: '203.0.113.7', userAgent: 'vitest' };
const newExecution = { id: '44444444-4444-4444-8444-444444444444', attempt: 1, handler: 'noop', kind: 'api' as const, startedAt: at };
const inserted = { id: newExecution.id, handler: 'noop', insert: newExecution };
const existing = { id: newExecution.id, handler: 'noop', insert: null };
const receipt = { id: '55555555-5555-4555-8555-555555555555', receiptNumber: 'RCP-20261127-AAAAAAAA', createdAt: at, statement: '{}', signature: 'sig', keyId: 'kid' };
const rollback = { id: '66666666-6666-4666-8666-666666666666', reason: 'undo', handler: 'noop', ok: true, error: null, data: null, startedAt: at };
const result = { provider: 'noop', externalRef: 'x-1', data: { ok: true }, rollbackData: null };

/** One example of every step kind (the Record makes a missing kind a compile error). */
const EXAMPLES: Record<StepKind, Step[]> = {
  decide: [
    { kind: 'decide', decision: 'approve', text: 'fine', actor: person },
    { kind: 'decide', decision: 'reject', text: 'no', actor: person },
    { kind: 'decide', decision: 'approve', text: null, actor: person, via: { tokenId: receipt.id } },
    { kind: 'decide', decision: 'approve', text: null, actor: person, revision: 1, quorum: { approvals: 1, required: 2 } },
    {
      kind: 'decide',
      decision: 'approve',
      text: 'shorter',
      actor: person,
      revision: 2,
      edit: { payload: { subject: 'Hello' }, payloadHash: 'h2', diff: [{ path: 'subject', from: 'Hi', to: 'Hello' }], summary: 'subject: "Hi" → "Hello"', original: { payload: { subject: 'Hi' }, payloadHash: 'h1', author: 'agent' } },
      quorum: { approvals: 1, required: 1 },
    },
    // Approved and claimed at once by the process that runs it (worker.ts, runs started here).
    { kind: 'decide', decision: 'approve', text: null, actor: person, revision: 1, claim: { attempt: 1, chain: ['noop', 'manual'], runner: 'host:1:r' } },
  ],
  cancel: [{ kind: 'cancel', reason: 'changed my mind', actor: person }],
  expire: [{ kind: 'expire', expiresAt: at }],
  refuse: [{ kind: 'refuse', reason: 'no person approved it' }],
  claim: [{ kind: 'claim', attempt: 1, chain: ['noop', 'manual'] }],
  resume: [
    { kind: 'resume', attempt: 2, interrupted: [] },
    { kind: 'resume', attempt: 2, interrupted: [newExecution.id] },
  ],
  start: [{ kind: 'start', execution: newExecution, notes: ['No integration configured'] }],
  attemptFailed: [
    { kind: 'attemptFailed', execution: existing, attempt: 1, maxAttempts: 3, error: 'HTTP 503', permanent: false, final: false, next: null, notes: [] },
    { kind: 'attemptFailed', execution: inserted, attempt: 1, maxAttempts: 3, error: 'refused', permanent: true, final: false, next: 'manual', notes: [] },
    { kind: 'attemptFailed', execution: existing, attempt: 3, maxAttempts: 3, error: 'HTTP 503', permanent: false, final: true, next: null, notes: [] },
  ],
  fail: [{ kind: 'fail', attempts: 1, error: 'no handler', notes: [] }],
  wait: [{ kind: 'wait', execution: existing, key: 'manual:x', message: 'Waiting for an operator', task: { id: rollback.id, instructions: 'do it' }, notes: [] }],
  settle: [
    { kind: 'settle', execution: inserted, attempt: 1, handler: 'noop', result, receipt, actor: { id: 'system' }, task: null, notes: [] },
    { kind: 'settle', execution: existing, attempt: 1, handler: 'manual', result, receipt, actor: person, task: { id: rollback.id, outcome: { ok: 1 }, completedById: person.id }, notes: [] },
  ],
  rolledBack: [
    { kind: 'rolledBack', rollback, actor: person },
    { kind: 'rolledBack', rollback: { ...rollback, ok: false, error: 'gone' }, actor: person },
  ],
  note: [{ kind: 'note', message: 'Placing the order…' }],
  escalate: [
    { kind: 'escalate', to: ['boss@example.com', 'deputy@example.com'], skipped: [], afterMinutes: 30 },
    { kind: 'escalate', to: ['boss@example.com'], skipped: ['carol'], afterMinutes: 1 },
    { kind: 'escalate', to: [], skipped: ['carol'], afterMinutes: 5 },
  ],
  codeRejected: [
    { kind: 'codeRejected', attemptsLeft: 2, attempts: 1, actor: person },
    { kind: 'codeRejected', attemptsLeft: 0, attempts: 3, actor: person },
  ],
};
const ALL = Object.values(EXAMPLES).flat();
const plans = ALL.map((step) => ({ step, plan: planStep(action, step, at) }));

describe('lifecycle planner', () => {
  it('every planned move is in the transition table, from every status it may start from', () => {
    for (const { plan } of plans) {
      if (!plan.to) continue;
      expect(plan.from, plan.step).not.toBeNull();
      for (const from of plan.from!) {
        // A move through a status (approved and claimed at once) makes both moves of the table.
        if (plan.via) {
          expect(canTransition(from, plan.via.status), `${plan.step}: ${from} → ${plan.via.status}`).toBe(true);
          expect(canTransition(plan.via.status, plan.to), `${plan.step}: ${plan.via.status} → ${plan.to}`).toBe(true);
        } else expect(canTransition(from, plan.to), `${plan.step}: ${from} → ${plan.to}`).toBe(true);
      }
    }
  });

  it('every transition of the table is made by some step (no move without a writer)', () => {
    const made = new Set(
      plans.flatMap(({ plan }) => {
        if (!plan.to) return [];
        return plan.via ? plan.from!.flatMap((f) => [`${f}→${plan.via!.status}`, `${plan.via!.status}→${plan.to}`]) : plan.from!.map((f) => `${f}→${plan.to}`);
      }),
    );
    const table = ACTION_STATUSES.flatMap((from) => TRANSITIONS[from].map((to: ActionStatus) => `${from}→${to}`));
    expect([...made].sort()).toEqual(table.sort());
  });

  it('a step that changes nothing about the status still names where it may happen, or any status for notes, code guesses and failed rollbacks', () => {
    for (const { plan } of plans) {
      if (plan.to) continue;
      // A failed rollback is recorded whatever happened meanwhile (spec §7: every attempt).
      if (plan.step === 'note' || plan.step === 'codeRejected' || plan.step === 'rolledBack') expect(plan.from).toBeNull();
      else expect(plan.from, plan.step).not.toBeNull();
    }
  });

  it('every status change has a status update and an audit entry of its own; audit entries name the action, its space and who', () => {
    for (const { plan } of plans) {
      if (plan.to) {
        expect(plan.messages.length, plan.step).toBeGreaterThan(0);
        expect(plan.audit.length, plan.step).toBeGreaterThan(0);
      }
      for (const entry of plan.audit) {
        expect(entry.actionId).toBe(action.id);
        expect(entry.spaceId).toBe(action.spaceId);
        expect(entry.actor).toMatch(/^(system|[0-9a-f-]{36})$/);
      }
    }
  });

  it('the audit events of each step are the spec §8 events', () => {
    const events = (step: Step) => planStep(action, step, at).audit.map((e) => e.event);
    expect(events(EXAMPLES.decide[0]!)).toEqual(['action.approved', 'action.queued']);
    expect(events(EXAMPLES.decide[1]!)).toEqual(['action.rejected']);
    expect(events(EXAMPLES.cancel[0]!)).toEqual(['action.cancelled']);
    expect(events(EXAMPLES.expire[0]!)).toEqual(['action.expired']);
    expect(events(EXAMPLES.refuse[0]!)).toEqual(['execution.refused']);
    expect(events(EXAMPLES.claim[0]!)).toEqual(['execution.started']);
    expect(events(EXAMPLES.attemptFailed[0]!)).toEqual(['execution.attempt_failed']);
    expect(events(EXAMPLES.attemptFailed[2]!)).toEqual(['execution.attempt_failed', 'execution.failed']);
    expect(events(EXAMPLES.fail[0]!)).toEqual(['execution.failed']);
    expect(events(EXAMPLES.settle[0]!)).toEqual(['execution.completed']);
    expect(events(EXAMPLES.settle[1]!)).toEqual(['execution.completed', 'manual_task.completed']);
    expect(events(EXAMPLES.rolledBack[0]!)).toEqual(['rollback.succeeded']);
    expect(events(EXAMPLES.rolledBack[1]!)).toEqual(['rollback.failed']);
    expect(events(EXAMPLES.codeRejected[0]!)).toEqual(['approval.code_rejected']);
    expect(events(EXAMPLES.codeRejected[1]!)).toEqual(['approval.code_rejected', 'approval.locked']);
    expect(events(EXAMPLES.note[0]!)).toEqual([]);
    expect(events(EXAMPLES.escalate[0]!)).toEqual(['approval.escalated']);
  });

  it('an approval that claims too moves PENDING → APPROVED → EXECUTING in one plan: both status updates (the first carrying APPROVED), the audit entries of both steps, the runner; with a grace period the claim is left to the queue', () => {
    const plan = planStep(action, EXAMPLES.decide[5]!, at);
    expect([plan.from, plan.to, plan.via]).toEqual([['PENDING'], 'EXECUTING', { status: 'APPROVED', messages: 1 }]);
    expect(plan.messages).toEqual(['Approved', 'Executing']);
    expect(plan.audit.map((e) => e.event)).toEqual(['action.approved', 'action.queued', 'execution.started']);
    expect(plan.audit[2]).toMatchObject({ actor: 'system', data: { attempt: 1, chain: ['noop', 'manual'] } });
    expect(plan.set).toMatchObject({ decidedBy: person.id, attempts: 1, runner: 'host:1:r' });
    expect(plan.guards).toEqual([{ kind: 'revisionIs', revision: 1 }]);
    const graceUntil = new Date(at.getTime() + 60_000);
    const waiting = planStep(action, { ...(EXAMPLES.decide[5] as Extract<Step, { kind: 'decide' }>), graceUntil }, at);
    expect([waiting.to, waiting.via, waiting.enqueue, waiting.set.runner]).toEqual(['APPROVED', null, true, undefined]);
    expect(waiting.audit.map((e) => e.event)).toEqual(['action.approved', 'action.queued']);
  });

  it('plans an escalation: PENDING only, no move and no effects, one status update naming who was asked and after how long, audited by the system', () => {
    const plan = planStep(action, EXAMPLES.escalate[0]!, at);
    expect(plan.from).toEqual(['PENDING']);
    expect(plan.to).toBeNull();
    expect(plan.set).toEqual({});
    expect(plan.writes).toEqual([]);
    expect(plan.messages).toEqual(['Asked boss@example.com and deputy@example.com as well: no decision after 30 minutes']);
    expect(plan.audit).toEqual([
      expect.objectContaining({ event: 'approval.escalated', actor: 'system', data: { afterMinutes: 30, to: ['boss@example.com', 'deputy@example.com'], skipped: [] } }),
    ]);
    expect(planStep(action, EXAMPLES.escalate[1]!, at).messages).toEqual([
      'Asked boss@example.com as well: no decision after 1 minute (carol: no email address known)',
    ]);
    expect(planStep(action, EXAMPLES.escalate[2]!, at).messages).toEqual(['Nobody could be asked as well (no decision after 5 minutes) (carol: no email address known)']);
  });

  it('a quorum not reached records the approval and keeps the action PENDING; an edit becomes the next revision, revision 1 kept', () => {
    const partial = planStep(action, EXAMPLES.decide[3]!, at);
    expect([partial.from, partial.to]).toEqual([['PENDING'], null]);
    expect(partial.messages).toEqual(['Approval 1 of 2 recorded for revision 1; waiting for 1 more approver']);
    expect(partial.audit.map((e) => e.event)).toEqual(['approval.recorded']);
    expect(partial.writes.map((w) => w.kind)).toEqual(['decision.insert']);
    expect(partial.enqueue).toBe(false);

    const edited = planStep(action, EXAMPLES.decide[4]!, at);
    expect(edited.to).toBe('APPROVED');
    expect(edited.set).toMatchObject({ payload: { subject: 'Hello' }, payloadHash: 'h2', revision: 2, decidedBy: person.id });
    expect(edited.writes.filter((w) => w.kind === 'revision.insert').map((w) => (w as { revision: number }).revision)).toEqual([1, 2]);
    expect(edited.audit.map((e) => e.event)).toEqual(['action.revised', 'action.approved', 'action.queued']);
    expect(edited.messages[0]).toBe('Edited before approval (revision 2): subject: "Hi" → "Hello"');
  });

  it('records who decided: the person\'s id, IP and user agent on the entry, and decidedBy on the action', () => {
    const plan = planStep(action, EXAMPLES.decide[0]!, at);
    expect(plan.audit[0]).toMatchObject({ actor: person.id, ip: person.ip, userAgent: person.userAgent, data: { comment: 'fine' } });
    expect(plan.audit[1]).toMatchObject({ actor: 'system', data: { priority: 3, scheduledFor: null } });
    expect(plan.set).toEqual({ decidedAt: at, decidedBy: person.id, approvalExpiresAt: null });
  });

  it('asks for the effects after commit: approval queues, cancelling dequeues only what was APPROVED, nothing else does', () => {
    const effects = (p: Plan) => [p.enqueue, p.dequeueIfWasApproved];
    for (const { step, plan } of plans) {
      // An approval that claims it too has nothing to queue: its process runs it.
      if (step.kind === 'decide') expect(effects(plan)).toEqual([step.decision === 'approve' && !step.claim && (!step.quorum || step.quorum.approvals >= step.quorum.required), false]);
      else if (step.kind === 'cancel') expect(effects(plan)).toEqual([false, true]);
      else expect(effects(plan), step.kind).toEqual([false, false]);
    }
  });

  it('writes skip notes before the step\'s own update, so they keep the status the action had', () => {
    const plan = planStep(action, { ...(EXAMPLES.settle[0] as Extract<Step, { kind: 'settle' }>), notes: ['No integration configured, trying noop…'] }, at);
    expect(plan.notes).toEqual(['No integration configured, trying noop…']);
    expect(plan.messages).toEqual([expect.stringMatching(/^Completed by noop/)]);
  });

  it('writes the execution with its outcome: inserted when the handler had no RUNNING row, updated otherwise', () => {
    const kinds = (step: Step) => planStep(action, step, at).writes.map((w) => w.kind);
    expect(kinds(EXAMPLES.settle[0]!)).toEqual(['execution.insert', 'receipt.insert']);
    expect(kinds(EXAMPLES.settle[1]!)).toEqual(['execution.update', 'receipt.insert', 'task.complete']);
    expect(kinds(EXAMPLES.attemptFailed[1]!)).toEqual(['execution.insert']);
    expect(kinds(EXAMPLES.wait[0]!)).toEqual(['execution.update', 'task.open']);
    expect(kinds(EXAMPLES.start[0]!)).toEqual(['execution.insert']);
    expect(kinds(EXAMPLES.resume[0]!)).toEqual([]);
    expect(kinds(EXAMPLES.resume[1]!)).toEqual(['executions.interrupt']);
    expect(kinds(EXAMPLES.decide[2]!)).toEqual(['decision.insert', 'token.use', 'tokens.void']);
  });

  it('guards what the status alone cannot: a claim only when due, a link decision only with a usable token, an operator only on an open task', () => {
    expect(planStep(action, EXAMPLES.claim[0]!, at).guards).toEqual([{ kind: 'due', now: at }]);
    expect(planStep(action, EXAMPLES.decide[2]!, at).guards).toEqual([{ kind: 'tokenUsable', id: receipt.id }]);
    expect(planStep(action, EXAMPLES.settle[1]!, at).guards).toEqual([{ kind: 'taskOpen', id: rollback.id }]);
  });

  it('is pure: the same action and step give the same plan', () => {
    for (const step of ALL) expect(planStep(action, step, at)).toEqual(planStep(action, step, at));
  });

  it('plans a creation: BLOCKED with its rule, PENDING with its approval request and token, APPROVED queued', () => {
    const base = {
      id: action.id, spaceId: action.spaceId, userId: person.id, requestedById: person.id, type: 'noop', payload: {}, payloadHash: 'h',
      priority: 5, scheduledFor: null, idempotencyKey: null, requiresApproval: false, error: null, approvalExpiresAt: null, createdAt: at,
    };
    const common = { actor: person, rateLimited: false, approval: null, idempotency: null };
    const blocked = planCreate({ ...common, action: { ...base, status: 'BLOCKED' }, refusal: { rule: 'r', kind: 'BLOCKED', reason: 'no', text: 'no' } });
    expect(blocked.audit.map((e) => e.event)).toEqual(['action.created', 'action.blocked']);
    expect([blocked.enqueue, blocked.extras.token]).toEqual([false, null]);
    const token = { id: receipt.id, tokenHash: 'th', codeHash: null, recipient: 'a@example.com', expiresAt: at };
    const pending = planCreate({ ...common, action: { ...base, status: 'PENDING' }, refusal: null, approval: { recipient: 'a@example.com', expiresAt: at, token } });
    expect(pending.audit.map((e) => e.event)).toEqual(['action.created', 'approval.requested']);
    expect(pending.extras.token).toEqual(token);
    expect(pending.audit[1]!.data).toEqual({ expiresAt: at.toISOString(), recipient: 'a@example.com' });
    const escalation = { rule: '*:noop:REQUIRES_APPROVAL', afterMinutes: 5, to: ['boss@example.com'], at: new Date(at.getTime() + 300_000) };
    const escalating = planCreate({ ...common, action: { ...base, status: 'PENDING' }, refusal: null, approval: { recipient: 'a@example.com', expiresAt: at, token, escalation } });
    expect(escalating.audit[1]!.data).toEqual({ expiresAt: at.toISOString(), recipient: 'a@example.com', escalation: { ...escalation, at: escalation.at.toISOString() } });
    const nobody = planCreate({ ...common, action: { ...base, status: 'PENDING' }, refusal: null, approval: { recipient: null, expiresAt: at, token: null } });
    expect(nobody.messages).toHaveLength(2);
    const approved = planCreate({ ...common, action: { ...base, status: 'APPROVED' }, refusal: null });
    expect(approved.audit.map((e) => e.event)).toEqual(['action.created', 'action.queued']);
    expect(approved.enqueue).toBe(true);
  });

  it('plans a creation claimed at once: EXECUTING through APPROVED with the claim\'s update and entry, not queued; never with a grace period, a standing approval or for a PENDING action', () => {
    const base = {
      id: action.id, spaceId: action.spaceId, userId: person.id, requestedById: person.id, type: 'noop', payload: {}, payloadHash: 'h',
      priority: 5, scheduledFor: null, idempotencyKey: null, requiresApproval: false, error: null, approvalExpiresAt: null, createdAt: at,
    };
    const common = { actor: person, rateLimited: false, approval: null, idempotency: null, refusal: null };
    const claim = { attempt: 1, chain: ['noop.api'], runner: 'host:1:abc' };
    const claimed = planCreate({ ...common, action: { ...base, status: 'APPROVED' }, claim });
    expect(canTransition('APPROVED', 'EXECUTING')).toBe(true);
    expect([claimed.action.status, claimed.action.attempts, claimed.action.runner]).toEqual(['EXECUTING', 1, 'host:1:abc']);
    expect(claimed.messages).toEqual(['Approved by the safety rules', 'Executing']);
    expect(claimed.via).toEqual({ status: 'APPROVED', messages: 1 });
    expect(claimed.enqueue).toBe(false);
    // The same entries as a creation followed by a claim, in that order; created as APPROVED.
    expect(claimed.audit.map((e) => [e.event, e.actor])).toEqual([['action.created', person.id], ['action.queued', 'system'], ['execution.started', 'system']]);
    expect(claimed.audit[0]!.data).toMatchObject({ status: 'APPROVED' });
    expect(claimed.audit[2]!.data).toEqual({ attempt: 1, chain: ['noop.api'] });

    const grace = new Date(at.getTime() + 60_000);
    const waiting = planCreate({ ...common, action: { ...base, status: 'APPROVED', scheduledFor: grace }, graceUntil: grace, claim });
    expect([waiting.action.status, waiting.via, waiting.enqueue]).toEqual(['APPROVED', null, true]);
    const granted = planCreate({ ...common, action: { ...base, status: 'APPROVED' }, grant: { id: receipt.id, createdById: person.id }, claim });
    expect([granted.action.status, granted.via, granted.enqueue]).toEqual(['APPROVED', null, true]);
    const token = { id: receipt.id, tokenHash: 'th', codeHash: null, recipient: 'a@example.com', expiresAt: at };
    const pending = planCreate({ ...common, action: { ...base, status: 'PENDING' }, approval: { recipient: 'a@example.com', expiresAt: at, token }, claim });
    expect([pending.action.status, pending.via, pending.enqueue]).toEqual(['PENDING', null, false]);
    expect(pending.audit.map((e) => e.event)).toEqual(['action.created', 'approval.requested']);
  });
});
