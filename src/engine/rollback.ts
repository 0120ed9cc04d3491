import type { Principal } from '../context.js';
import { randomUUID } from 'node:crypto';
import type { Action } from '../generated/prisma/client.js';
import type { HandlerRegistry } from '../handlers/registry.js';
import type { HandlerServices } from '../handlers/types.js';
import type { ActionTypeRegistry } from './action-types.js';
import type { Actor, EngineDeps } from './deps.js';
import { applyStep } from './lifecycle/index.js';
import { EngineError, ForbiddenError, InvalidInputError, InvalidTransitionError } from './errors.js';
import { assertReadable } from './policy.js';
import { handlerAction, loadConfigs, openHandlerSecrets } from './execution.js';
import { publicErrorText } from './public-error.js';

/** The type, or the handler that completed the action, cannot undo it. */
export class NotReversibleError extends EngineError {
  readonly code = 'NOT_REVERSIBLE';
}

/**
 * Whether completed actions of `type` can be rolled back (what `actionTypes.reversible` says):
 * the type allows it and a handler of its chain implements rollback. A chain of handlers that
 * cannot undo (e.g. only `manual`) makes the type not reversible.
 */
export function isReversible(types: ActionTypeRegistry, handlers: HandlerRegistry, type: string): boolean {
  return types.get(type).reversible && handlers.canRollBack(type);
}

export interface RollbackDeps extends EngineDeps {
  handlers: HandlerRegistry;
  services: HandlerServices;
}

/**
 * rollbackAction (spec §7): runs the completing handler's rollback with the data it saved at
 * execution, inline, and records the attempt in the rollback history whether it succeeds or
 * fails; on success the action moves COMPLETED → ROLLED_BACK. The user's approvers and the
 * space's admins may; agents may not.
 */
export async function rollbackAction(deps: RollbackDeps, principal: Principal, actor: Actor, id: string, reason: string): Promise<Action> {
  const action = assertReadable(principal, await deps.db.action.findUnique({ where: { id } }), id);
  const allowed = principal.role === 'ADMIN' || (principal.role === 'APPROVER' && principal.userId === action.userId);
  if (!allowed) throw new ForbiddenError("only the user's approvers and the space's admins can roll an action back");
  const why = reason.trim().slice(0, 1000);
  if (!why) throw new InvalidInputError('a reason is required', ['reason']);
  if (!deps.types.get(action.type).reversible) {
    throw new NotReversibleError(`${action.type} actions cannot be rolled back`);
  }
  if (!isReversible(deps.types, deps.handlers, action.type)) {
    throw new NotReversibleError(`${action.type} actions cannot be rolled back: no handler that carries them out can undo them`);
  }
  if (action.status !== 'COMPLETED') {
    throw new InvalidTransitionError(`only a COMPLETED action can be rolled back; this one is ${action.status}`);
  }
  const execution = await deps.db.execution.findFirst({
    where: { actionId: id, status: 'SUCCEEDED' },
    orderBy: { startedAt: 'desc' },
  });
  const handler = execution ? deps.handlers.find(execution.handler) : null;
  if (execution && !handler) throw new NotReversibleError(`the handler ${execution.handler} that completed this action is no longer registered, so nothing can undo it`);
  if (!execution || !handler?.rollback) {
    throw new NotReversibleError(`the ${execution?.handler ?? 'unknown'} handler that completed this action cannot undo it`);
  }
  const startedAt = deps.clock();
  let error: string | null = null;
  try {
    // The same configuration (and secrets) the handler would get to execute now.
    const config = (await loadConfigs(deps, action)).get(handler.name) ?? null;
    await handler.rollback({
      action: handlerAction(deps.types, action),
      rollbackData: (execution.rollbackData ?? null) as Record<string, unknown> | null,
      config,
      secrets: openHandlerSecrets(deps, config),
      services: deps.services,
    });
  } catch (e) {
    error = publicErrorText(e, { filesRoot: deps.services.filesRoot, spaceId: action.spaceId, userId: action.userId });
    deps.logger.warn({ err: e, actionId: action.id, handler: handler.name }, 'rollback failed');
  }
  const rollback = {
    id: randomUUID(),
    reason: why,
    handler: handler.name,
    ok: error === null,
    error,
    data: (execution.rollbackData ?? null) as Record<string, unknown> | null,
    startedAt,
  };
  // Recorded whether it succeeded or not; the move to ROLLED_BACK only on success.
  return applyStep(deps, action, { kind: 'rolledBack', rollback, actor });
}
