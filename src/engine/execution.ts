import { UnrecoverableError, type Job } from 'bullmq';
import type { Action, HandlerConfig, Prisma } from '../generated/prisma/client.js';
import type { HandlerRegistry } from '../handlers/registry.js';
import {
  PermanentHandlerError,
  type ActionHandler,
  type HandlerAction,
  type HandlerResult,
  type HandlerServices,
} from '../handlers/types.js';
import { appendAuditEntry } from './audit.js';
import { inTransaction, type EngineDeps } from './deps.js';
import { isOwnInfrastructureError } from './infra-errors.js';
import { MAX_ATTEMPTS, type ActionJobData } from './queue.js';
import { publicErrorText } from './public-error.js';
import { newReceiptNumber } from './receipts.js';
import type { TxEffects } from './status-event.js';
import { addStatusMessage, transition } from './transitions.js';
import { UUID } from './ids.js';

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

function handlerAction(action: Action): HandlerAction {
  return {
    id: action.id,
    spaceId: action.spaceId,
    userId: action.userId,
    type: action.type,
    payload: action.payload as Record<string, unknown>,
    priority: action.priority,
  };
}

/** The provider an action names (an order's `provider`), else `*`. */
function providerOf(action: Pick<Action, 'payload'>): string {
  const provider = (action.payload as Record<string, unknown>)?.provider;
  return typeof provider === 'string' ? provider : '*';
}


/**
 * For types that run only with a person's approval (payments, spec §6): why the recorded
 * approval does not count, or null when it does. It counts when an approver of the action's
 * user (not its requester) approved it by API, or the user approved it through the email link
 * with its one-time code, for the payload about to run, and the audit trail records it.
 */
export async function missingHumanApproval(deps: Pick<EngineDeps, 'db' | 'types'>, action: Action): Promise<string | null> {
  const definition = deps.types.list().find((d) => d.type === action.type);
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

export async function loadConfigs(deps: Pick<EngineDeps, 'db'>, action: Pick<Action, 'spaceId' | 'payload'>): Promise<Map<string, HandlerConfig>> {
  const provider = providerOf(action);
  const rows = await deps.db.handlerConfig.findMany({
    where: { enabled: true, provider: { in: [provider, '*'] }, OR: [{ spaceId: null }, { spaceId: action.spaceId }] },
  });
  // Most specific wins: the space's own over the global one, the named provider over `*`.
  const rank = (c: HandlerConfig) => (c.spaceId ? 2 : 0) + (c.provider === provider ? 1 : 0);
  const best = new Map<string, HandlerConfig>();
  for (const row of rows) {
    const current = best.get(row.handler);
    if (!current || rank(row) > rank(current)) best.set(row.handler, row);
  }
  return best;
}

/**
 * Runs one queue job: moves the action to EXECUTING, tries its handler chain in order
 * (api → webhook → email → manual), records every attempt as an execution, and ends in
 * COMPLETED with a receipt, in a retry (retryable error, up to 3 attempts), in FAILED
 * (permanent errors all along the chain, or retries exhausted), or waiting for an operator.
 */
export async function executeActionJob(deps: ExecutionDeps, job: Job<ActionJobData>): Promise<void> {
  const attempt = job.attemptsMade + 1;
  const maxAttempts = job.opts.attempts ?? MAX_ATTEMPTS;
  let action = await deps.db.action.findUnique({ where: { id: job.data.actionId } });
  if (!action) return;

  const chain = deps.handlers.chainFor(action.type);
  if (action.status === 'APPROVED') {
    if (action.scheduledFor && action.scheduledFor.getTime() > deps.clock().getTime() + 50) {
      // Queued without its delay: come back at the scheduled time (the worker delays the job
      // without counting an attempt).
      throw new NotYetError(action.scheduledFor);
    }
    const refusal = await missingHumanApproval(deps, action);
    if (refusal) {
      const reason = `Refused before execution: ${refusal}; nothing was executed`;
      await inTransaction(deps, (tx, effects) =>
        transition(tx, effects, {
          actionId: action!.id,
          from: 'APPROVED',
          to: 'FAILED',
          message: reason,
          data: { error: reason },
          audit: { event: 'execution.refused', actor: 'system', spaceId: action!.spaceId, actionId: action!.id, data: { reason } },
        }),
      );
      throw new UnrecoverableError(reason);
    }
    action = await inTransaction(deps, (tx, effects) =>
      transition(tx, effects, {
        actionId: action!.id,
        from: 'APPROVED',
        to: 'EXECUTING',
        message: 'Executing',
        data: { attempts: attempt },
        audit: { event: 'execution.started', actor: 'system', spaceId: action!.spaceId, actionId: action!.id, data: { attempt, chain: chain.map((h) => h.name) } },
      }),
    );
  } else if (action.status === 'EXECUTING') {
    // A retry, or a job recovered from a worker that died: unless an operator has the task.
    const waiting = await deps.db.manualTask.count({ where: { actionId: action.id, status: 'OPEN' } });
    if (waiting) return;
    const orphaned = await deps.db.execution.updateMany({
      where: { actionId: action.id, status: 'RUNNING' },
      data: { status: 'FAILED', finishedAt: deps.clock(), error: 'the worker stopped or lost its database or Redis during this attempt; the job was recovered' },
    });
    await deps.db.action.update({ where: { id: action.id }, data: { attempts: attempt } });
    if (orphaned.count) await message(deps, action, 'Resuming after a worker stopped mid-attempt');
  } else {
    // Cancelled (or otherwise decided) after it was queued: nothing to do.
    return;
  }

  const configs = await loadConfigs(deps, action);
  const subject = handlerAction(action);
  const errors: string[] = [];
  for (const [index, handler] of chain.entries()) {
    const config = configs.get(handler.name) ?? null;
    const next = chain[index + 1];
    if (!handler.isConfigured(subject, config)) {
      await message(deps, action, `No ${KIND_LABEL[handler.kind]} configured for ${providerOf(action)} (${handler.name})${next ? `, trying ${next.name}…` : ''}`);
      continue;
    }
    const execution = await deps.db.execution.create({
      data: { actionId: action.id, attempt, handler: handler.name, kind: handler.kind.toUpperCase() as never, status: 'RUNNING' },
    });
    let result: HandlerResult;
    try {
      handler.validate?.(subject);
      result = await handler.execute({
        action: subject,
        idempotencyKey: `action:${action.id}`,
        attempt,
        executionId: execution.id,
        config,
        secrets: openHandlerSecrets(deps, config),
        services: deps.services,
        progress: (text) => message(deps, action!, text),
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
      const last = !permanent && attempt >= maxAttempts;
      await inTransaction(deps, async (tx, effects) => {
        await tx.execution.update({
          where: { id: execution.id },
          data: { status: 'FAILED', finishedAt: deps.clock(), error: text, permanent },
        });
        await appendAuditEntry(tx, {
          event: 'execution.attempt_failed',
          actor: 'system',
          spaceId: action!.spaceId,
          actionId: action!.id,
          data: { attempt, handler: handler.name, error: text, permanent },
        });
        if (last) {
          await fail(tx, effects, action!, `Failed after ${attempt} attempts: ${text}`, attempt);
        } else {
          await addStatusMessage(
            tx,
            effects,
            action!,
            permanent
              ? `${handler.name} cannot do this: ${text}${next ? `; trying ${next.name}…` : ''}`
              : `Attempt ${attempt} of ${maxAttempts} failed: ${text}; retrying`,
          );
        }
      });
      if (permanent) continue;
      if (last) throw new UnrecoverableError(text);
      throw new HandlerAttemptError(text, { cause: error });
    }
    await finish(deps, action, execution.id, handler, attempt, result);
    return;
  }
  const reason = chain.length ? `no handler could carry it out (${errors.join('; ') || 'none configured'})` : `no handler serves ${action.type}`;
  await inTransaction(deps, (tx, effects) => fail(tx, effects, action!, `Failed: ${reason}`, attempt));
  throw new UnrecoverableError(reason);
}

async function message(deps: ExecutionDeps, action: Action, text: string) {
  await inTransaction(deps, (tx, effects) => addStatusMessage(tx, effects, action, text));
}

async function fail(tx: Prisma.TransactionClient, effects: TxEffects, action: Action, text: string, attempts: number) {
  await transition(tx, effects, {
    actionId: action.id,
    from: 'EXECUTING',
    to: 'FAILED',
    message: text,
    data: { error: text, attempts },
    audit: { event: 'execution.failed', actor: 'system', spaceId: action.spaceId, actionId: action.id, data: { attempts, error: text } },
  });
}

async function finish(deps: ExecutionDeps, action: Action, executionId: string, handler: ActionHandler, attempt: number, result: HandlerResult) {
  const now = deps.clock();
  if (result.status === 'waiting') {
    await inTransaction(deps, async (tx, effects) => {
      await tx.execution.update({ where: { id: executionId }, data: { status: 'WAITING' } });
      await addStatusMessage(tx, effects, action, result.message);
    });
    return;
  }
  await inTransaction(deps, async (tx, effects) => {
    await tx.execution.update({
      where: { id: executionId },
      data: {
        status: 'SUCCEEDED',
        finishedAt: now,
        externalRef: result.externalRef ?? null,
        rollbackData: (result.rollbackData ?? undefined) as Prisma.InputJsonValue | undefined,
      },
    });
    const receipt = await tx.receipt.create({
      data: {
        spaceId: action.spaceId,
        actionId: action.id,
        executionId,
        receiptNumber: newReceiptNumber(now),
        provider: result.provider,
        handler: handler.name,
        externalRef: result.externalRef ?? null,
        data: result.data as Prisma.InputJsonValue,
      },
    });
    await transition(tx, effects, {
      actionId: action.id,
      from: 'EXECUTING',
      to: 'COMPLETED',
      message: `Completed by ${handler.name} (receipt ${receipt.receiptNumber})`,
      data: { result: result.data as Prisma.InputJsonValue, completedAt: now, error: null, attempts: attempt },
      audit: {
        event: 'execution.completed',
        actor: 'system',
        spaceId: action.spaceId,
        actionId: action.id,
        data: { attempt, handler: handler.name, receiptNumber: receipt.receiptNumber, externalRef: result.externalRef ?? null },
      },
    });
  });
}
