import { UnrecoverableError, type Job } from 'bullmq';
import { randomUUID } from 'node:crypto';
import type { Action, HandlerConfig } from '../generated/prisma/client.js';
import type { HandlerRegistry } from '../handlers/registry.js';
import {
  PermanentHandlerError,
  FinalHandlerError,
  type ActionHandler,
  type HandlerAction,
  type HandlerResult,
  type HandlerServices,
} from '../handlers/types.js';
import type { EngineDeps } from './deps.js';
import { isOwnInfrastructureError } from './infra-errors.js';
import { effectiveRules, evaluateSafety, type SafetyRuleInput } from './safety.js';
import { MAX_ATTEMPTS, type ActionJobData } from './queue.js';
import { publicErrorText } from './public-error.js';
import { quorumApprovals, receiptFor } from './settle.js';
import { applyStep, commitStep, type ActionRef } from './lifecycle/index.js';
import type { ExecutionRef, NewExecution } from './lifecycle/steps.js';
import { UUID } from './ids.js';
import { providerOf } from './config-cache.js';

/** The action is scheduled later than now: the job is to run again at `at`, with no attempt used. */
export class NotYetError extends Error {
  override name = 'NotYetError';
  constructor(readonly at: Date) {
    super(`scheduled for ${at.toISOString()}; not yet`);
  }
}

/**
 * A handler's attempt failed and is recorded (execution, audit, status): BullMQ retries it with
 * backoff as one attempt. Never an outage of ours, whatever the handler's message says.
 */
export class HandlerAttemptError extends Error {
  override name = 'HandlerAttemptError';
}

/** What the worker needs beyond the engine: the handlers and what they may use. */
export interface ExecutionDeps extends EngineDeps {
  handlers: HandlerRegistry;
  services: HandlerServices;
}

const KIND_LABEL: Record<ActionHandler['kind'], string> = {
  api: 'integration',
  webhook: 'webhook',
  email: 'email route',
  manual: 'operator',
};

/**
 * The action as a handler sees it, its stored payload parsed with the type's schema (not cast).
 * Throws PayloadErrors when the payload no longer fits the schema.
 */
export function handlerAction(types: EngineDeps['types'], action: Action): HandlerAction {
  return {
    id: action.id,
    spaceId: action.spaceId,
    userId: action.userId,
    type: action.type,
    payload: types.parse(action.type, action.payload),
    priority: action.priority,
  };
}

/**
 * For types that run only with a person's approval (payments, spec §6): why the recorded
 * approval does not count, or null when it does. It counts when an approver of the action's
 * user (not its requester) approved it by API, or the user approved it through the email link
 * with its one-time code, for the payload about to run, and the audit trail records it.
 */
export async function missingHumanApproval(deps: Pick<EngineDeps, 'db' | 'types'>, action: Action): Promise<string | null> {
  const definition = deps.types.find(action.type);
  if (!definition?.humanApproval) return null;
  const by = action.decidedBy;
  const need = `${action.type} runs only after a person approves it`;
  if (!by) return `${need}, and no approval is recorded`;
  const audited = await deps.db.auditEntry.count({ where: { actionId: action.id, event: 'action.approved', actor: by } });
  if (!audited) return `${need}, and the audit trail records no approval by ${by}`;
  if (by.startsWith('email-link:')) {
    const tokenId = by.slice('email-link:'.length);
    const token = UUID.test(tokenId)
      ? await deps.db.approvalToken.findUnique({ where: { id: tokenId }, select: { actionId: true, usedAt: true, codeHash: true, payloadHash: true } })
      : null;
    if (token && token.actionId === action.id && token.usedAt && token.codeHash && token.payloadHash === action.payloadHash) return null;
    return `${need}; the approval link used was not a valid one-time-code approval of this payload`;
  }
  const principal = UUID.test(by)
    ? await deps.db.principal.findUnique({ where: { id: by }, select: { role: true, userId: true, spaceId: true } })
    : null;
  if (principal && principal.role === 'APPROVER' && principal.userId === action.userId && principal.spaceId === action.spaceId && by !== action.requestedById) {
    return null;
  }
  return `${need}; it was approved by ${by}, who is not an approver of this user`;
}

/**
 * What the rules in force now say against running `action` (null: nothing): blocked since it was
 * approved, or a KYC status no longer verified. The same verdict as at creation (conditions
 * included), on the user as they are now.
 */
async function refusedByRulesNow(deps: Pick<EngineDeps, 'db' | 'clock'>, action: Action, rules: readonly SafetyRuleInput[]): Promise<string | null> {
  const user = await deps.db.user.findUnique({ where: { id: action.userId }, select: { id: true, email: true, handle: true, kycStatus: true } });
  const verdict = evaluateSafety(rules, {
    type: action.type,
    spaceId: action.spaceId,
    kycStatus: user?.kycStatus ?? 'NONE',
    conditionSubject: { payload: action.payload, type: action.type, user, now: deps.clock() },
  });
  return verdict.refusal ? `${verdict.refusal.reason} (checked again right before it ran)` : null;
}

/**
 * The decrypted secrets of a handler configuration, or null when it has none. A key that
 * cannot open them is a configuration fault, the same on every retry: a permanent error that
 * names the problem (never the secrets).
 */
export function openHandlerSecrets(deps: Pick<EngineDeps, 'secrets'>, config: HandlerConfig | null): Record<string, unknown> | null {
  if (!config?.secretsCiphertext) return null;
  try {
    return deps.secrets.open(config.secretsCiphertext, config.configKey);
  } catch (error) {
    throw new PermanentHandlerError(error instanceof Error ? error.message : String(error));
  }
}

/** The handler configurations that apply to the action (cached per process; most specific wins). */
export function loadConfigs(deps: Pick<EngineDeps, 'configCache'>, action: Pick<Action, 'spaceId' | 'payload'>): Promise<ReadonlyMap<string, HandlerConfig>> {
  return deps.configCache.handlerConfigs(action.spaceId, providerOf(action.payload));
}

/**
 * What the recheck at dispatch needs for actions of `ref.type` in `ref.spaceId`: the rules in
 * force (cached), whether any of them can refuse it now (`ruled`: blocked, KYC), and whether there
 * is anything to check at all (`check`: those, or a type that runs only with a person's approval).
 */
export async function dispatchCheck(
  deps: Pick<EngineDeps, 'configCache' | 'types'>,
  ref: { spaceId: string; type: string },
): Promise<{ rules: readonly SafetyRuleInput[]; ruled: boolean; check: boolean }> {
  const rules = await deps.configCache.safetyRules(ref.spaceId, ref.type);
  const ruled = effectiveRules(rules, ref.type, ref.spaceId).some((r) => r.kind === 'BLOCKED' || r.kind === 'REQUIRES_KYC');
  return { rules, ruled, check: ruled || Boolean(deps.types.find(ref.type)?.humanApproval) };
}

/**
 * Runs the handler chain of an action approved and claimed in one statement by the process that
 * runs it (see worker.ts): the first attempt, as a queue job's after its claim. Throws as
 * {@link executeActionJob} does.
 */
export async function runClaimedAction(deps: ExecutionDeps, action: Action): Promise<void> {
  await runChain(deps, action, deps.handlers.chainFor(action.type), action.attempts, MAX_ATTEMPTS);
}

/** What a run of an action is given: a queue job, or its like for a run started in the approving process. */
export type ActionRun = Pick<Job<ActionJobData>, 'data' | 'attemptsMade'> & { opts: { attempts?: number } };

/**
 * Runs one queue job, or a run the worker starts itself (`origin.runner`, see worker.ts): claims
 * the action (APPROVED → EXECUTING, one statement, no read before),
 * tries its handler chain in order (api → webhook → email → manual), and ends in COMPLETED with a
 * receipt, in a retry (retryable error, up to 3 attempts), in FAILED (permanent errors all along
 * the chain, or retries exhausted), or waiting (an operator, a callback). Every change goes
 * through the lifecycle writer; handlers only carry out the work.
 */
export async function executeActionJob(deps: ExecutionDeps, job: ActionRun, origin: 'queue' | { runner: string } = 'queue'): Promise<void> {
  const before = job.data.attemptsBefore ?? 0;
  const attempt = before + job.attemptsMade + 1;
  const maxAttempts = before + (job.opts.attempts ?? MAX_ATTEMPTS);
  let ref: ActionRef & { type: string };
  if (job.data.spaceId && job.data.type) {
    ref = { id: job.data.actionId, spaceId: job.data.spaceId, type: job.data.type };
  } else {
    // A job from before the hints: read what the claim needs.
    const row = await deps.db.action.findUnique({ where: { id: job.data.actionId }, select: { id: true, spaceId: true, type: true } });
    if (!row) return;
    ref = row;
  }
  const chain = deps.handlers.chainFor(ref.type);

  // An unknown type (removed since, or not registered in this worker) goes on to fail cleanly: no handler serves it.
  // Recheck at dispatch (spec §5): a payment needs a person's approval, and the rules in force
  // now (a type blocked since, a KYC status withdrawn) stop what they would refuse today. The
  // rules come from the cache: with none of those kinds the hot path reads nothing more.
  if (job.data.grant) {
    // Approved by a standing approval in place of a person: revoked since, it no longer covers it.
    const grant = await deps.db.standingApproval.findUnique({ where: { id: job.data.grant }, select: { revokedAt: true } });
    if (!grant || grant.revokedAt) {
      const reason = `the standing approval ${job.data.grant} that approved it was revoked before it ran`;
      const refused = await commitStep(deps, ref, { kind: 'refuse', reason });
      if (refused.action) throw new UnrecoverableError(`Refused before execution: ${reason}; nothing was executed`);
    }
  }
  const { rules, ruled, check } = await dispatchCheck(deps, ref);
  if (check) {
    const action = await deps.db.action.findUnique({ where: { id: ref.id } });
    if (!action) return;
    const refusal = action.status === 'APPROVED' ? ((ruled ? await refusedByRulesNow(deps, action, rules) : null) ?? (await missingHumanApproval(deps, action))) : null;
    if (refusal) {
      await applyStep(deps, ref, { kind: 'refuse', reason: refusal });
      throw new UnrecoverableError(`Refused before execution: ${refusal}; nothing was executed`);
    }
  }

  // The worker's steps do not wait for their events to reach Redis (see applyEffects).
  const runner = origin === 'queue' ? null : origin.runner;
  const claimed = await commitStep(deps, ref, { kind: 'claim', attempt, chain: chain.map((h) => h.name), runner }, { awaitPublish: false });
  let action = claimed.action;
  if (!action) {
    if (claimed.previous === 'APPROVED' && claimed.scheduledFor) {
      // Queued without its delay: come back at the scheduled time (the worker delays the job
      // without counting an attempt).
      throw new NotYetError(claimed.scheduledFor);
    }
    // Cancelled (or otherwise decided) after it was queued: nothing to do.
    if (claimed.previous !== 'EXECUTING') return;
    // A run in this process never resumes one claimed elsewhere.
    if (runner) return;
    // Claimed by a process that runs it itself (see worker.ts): while it does, the action is not
    // stranded (a reconciler queued this job meanwhile) and must not run twice. What that very
    // process hands to the queue (the rest of its run) goes on.
    if (claimed.runner && job.data.handedOverBy !== claimed.runner && (await deps.queue.runnerBusy(claimed.runner, ref.id))) return;
    action = await resume(deps, ref, attempt, chain);
    if (!action) return;
  }
  await runChain(deps, action, chain, attempt, maxAttempts);
}

/**
 * A retry, or a job recovered from a worker that died, of an EXECUTING action: unless something
 * already waits to settle it (an open task, a waiting execution), the attempts a dead worker left
 * RUNNING are marked interrupted and the chain runs again. An interrupted handler whose repeat
 * cannot be made harmless (`none`) is not run again: an operator confirms what happened.
 */
async function resume(deps: ExecutionDeps, ref: ActionRef, attempt: number, chain: ActionHandler[]): Promise<Action | null> {
  const [open, pending] = await Promise.all([
    deps.db.manualTask.count({ where: { actionId: ref.id, status: 'OPEN' } }),
    deps.db.execution.findMany({ where: { actionId: ref.id, status: { in: ['RUNNING', 'WAITING'] } }, select: { id: true, handler: true, status: true, attempt: true } }),
  ]);
  if (open || pending.some((e) => e.status === 'WAITING')) return null;
  const interrupted = pending.filter((e) => e.status === 'RUNNING');
  const unsafe = interrupted.find((e) => chain.find((h) => h.name === e.handler)?.repeat === 'none');
  if (unsafe) {
    await applyStep(deps, ref, {
      kind: 'wait',
      execution: { id: unsafe.id, handler: unsafe.handler, insert: null },
      key: `confirm:${ref.id}`,
      message: `Waiting for an operator: ${unsafe.handler} was interrupted and cannot be repeated safely; did it happen?`,
      task: {
        id: randomUUID(),
        instructions:
          `The worker stopped while ${unsafe.handler} was carrying out this action (attempt ${unsafe.attempt}). ` +
          'It cannot tell whether the effect happened, and repeating it could do it twice. Check whether it happened: ' +
          'if it did, complete this task with what you found (e.g. {"reference": "…"}); if it did not, carry it out yourself and complete the task.',
      },
      notes: [],
    });
    return null;
  }
  const resumed = await commitStep(deps, ref, { kind: 'resume', attempt, interrupted: interrupted.map((e) => e.id) });
  return resumed.action;
}

async function runChain(deps: ExecutionDeps, action: Action, chain: ActionHandler[], attempt: number, maxAttempts: number): Promise<void> {
  const ref: ActionRef = action;
  const notes: string[] = [];
  const errors: string[] = [];
  /** The handlers tried in this attempt and how each ended (the receipt binds it). */
  const path: Array<{ handler: string; outcome: string }> = [];
  let subject: HandlerAction;
  try {
    subject = handlerAction(deps.types, action);
  } catch (error) {
    const text = `the stored payload no longer fits the ${action.type} schema: ${error instanceof Error ? error.message : String(error)}`;
    await applyStep(deps, ref, { kind: 'fail', attempts: attempt, error: text, notes });
    throw new UnrecoverableError(text);
  }
  const configs = await loadConfigs(deps, action);
  // Who a configuration would be for: the provider the action names, else (payments) its type.
  const named = providerOf(action.payload);
  const forWhom = named === '*' ? action.type : named;
  for (const [index, handler] of chain.entries()) {
    const config = configs.get(handler.name) ?? null;
    const next = chain[index + 1];
    if (!handler.isConfigured(subject, config, deps.services)) {
      notes.push(`No ${KIND_LABEL[handler.kind]} configured for ${forWhom} (${handler.name})${next ? `, trying ${next.name}…` : ''}`);
      path.push({ handler: handler.name, outcome: 'SKIPPED' });
      continue;
    }
    const started: NewExecution = { id: randomUUID(), attempt, handler: handler.name, kind: handler.kind, startedAt: deps.clock() };
    let execution: ExecutionRef = { id: started.id, handler: handler.name, insert: started };
    if ((handler.repeat ?? 'check') !== 'provider') {
      // A repeat must know this attempt began (check: look first; none: never run it again): its
      // RUNNING row is written before the handler runs. A provider-deduplicated handler's row is
      // written with its outcome, in the same statement.
      await applyStep(deps, ref, { kind: 'start', execution: started, notes: notes.splice(0) }, { awaitPublish: false });
      execution = { id: started.id, handler: handler.name, insert: null };
    }
    let result: HandlerResult;
    try {
      handler.validate?.(subject);
      result = await handler.execute({
        action: subject,
        idempotencyKey: `action:${action.id}`,
        attempt,
        executionId: started.id,
        config,
        secrets: openHandlerSecrets(deps, config),
        services: deps.services,
        progress: async (text) => {
          await applyStep(deps, ref, { kind: 'note', message: text });
        },
      });
    } catch (error) {
      // Our own database or Redis went away (e.g. under the handler's progress message): not the
      // handler's failure. The worker delays the job without counting an attempt; the repeat
      // marks this execution as interrupted and runs the handler again (idempotency key).
      if (isOwnInfrastructureError(error)) throw error;
      const permanent = error instanceof PermanentHandlerError;
      // Callers see what went wrong, not the machine (paths, stacks); the log keeps it all.
      const text = publicErrorText(error, { filesRoot: deps.services.filesRoot, spaceId: action.spaceId, userId: action.userId });
      deps.logger.warn({ err: error, actionId: action.id, handler: handler.name, attempt, permanent }, 'handler attempt failed');
      errors.push(`${handler.name}: ${text}`);
      path.push({ handler: handler.name, outcome: 'FAILED' });
      // A payload no handler can carry out, or an outcome another route could make worse, fails
      // the action now: not the next handler, not an operator.
      const refused = error instanceof FinalHandlerError;
      const final = refused || (!permanent && attempt >= maxAttempts);
      await applyStep(deps, ref, {
        kind: 'attemptFailed',
        execution,
        attempt,
        maxAttempts,
        error: text,
        permanent,
        final,
        next: next?.name ?? null,
        notes: notes.splice(0),
      });
      if (final) throw new UnrecoverableError(text);
      if (permanent) continue;
      throw new HandlerAttemptError(text, { cause: error });
    }
    if (result.status === 'waiting') {
      await applyStep(deps, ref, {
        kind: 'wait',
        execution,
        key: result.key ?? `${handler.name}:${action.id}`,
        message: result.message,
        task: result.task ? { id: randomUUID(), instructions: result.task.instructions } : null,
        notes: notes.splice(0),
      }, { awaitPublish: false });
      return;
    }
    await applyStep(deps, ref, {
      kind: 'settle',
      execution,
      attempt,
      handler: handler.name,
      result: { provider: result.provider, externalRef: result.externalRef ?? null, data: result.data, rollbackData: result.rollbackData ?? null },
      receipt: receiptFor(deps, action, [...path, { handler: handler.name, outcome: 'SUCCEEDED' }], handler.name, { ...result, externalRef: result.externalRef ?? null }, await quorumApprovals(deps, action)),
      actor: { id: 'system' },
      task: null,
      notes: notes.splice(0),
    }, { awaitPublish: false });
    return;
  }
  const reason = chain.length ? `no handler could carry it out (${errors.join('; ') || 'none configured'})` : `no handler serves ${action.type}`;
  await applyStep(deps, ref, { kind: 'fail', attempts: attempt, error: reason, notes });
  throw new UnrecoverableError(reason);
}
