import type { HandlerConfig, PrismaClient } from '../generated/prisma/client.js';
import type { Logger } from '../logger.js';
import type { Mailer } from '../mail/mailer.js';

/** How a handler reaches the world; a fallback chain tries them in this order. */
export type HandlerKind = 'api' | 'webhook' | 'email' | 'manual';
export const HANDLER_KIND_ORDER: readonly HandlerKind[] = ['api', 'webhook', 'email', 'manual'];

/** What handlers may use, injected by the worker (never imported). */
export interface HandlerServices {
  db: PrismaClient;
  mailer: Mailer;
  /** For api and webhook handlers. */
  fetch: typeof fetch;
  /** Root of the per-user folders (`<filesRoot>/<spaceId>/<userId>/…`). */
  filesRoot: string;
  clock: () => Date;
  logger: Logger;
}

/** The action as a handler sees it. */
export interface HandlerAction {
  id: string;
  spaceId: string;
  userId: string;
  type: string;
  payload: Record<string, unknown>;
  priority: number;
}

export interface HandlerContext {
  action: HandlerAction;
  /**
   * Stable across retries and recovered jobs (`action:<id>`): a handler must make a repeat with
   * the same key harmless (check before acting, or pass it to the provider).
   */
  idempotencyKey: string;
  /** The queue attempt, from 1. */
  attempt: number;
  executionId: string;
  /** This handler's configuration for the action's provider/space, if any. */
  config: HandlerConfig | null;
  /**
   * The configuration's secrets (API tokens, signing keys), decrypted for this call only;
   * null when it has none. Never log them or put them in a result, message or error.
   */
  secrets: Record<string, unknown> | null;
  services: HandlerServices;
  /** A progress message that becomes a status update ("Placing order with Downtown Cafe…"). */
  progress(message: string): Promise<void>;
}

export type HandlerResult =
  | {
      status: 'completed';
      /** Who carried it out (e.g. `filesystem`, `downtown-cafe`). */
      provider: string;
      externalRef?: string | null;
      /** Confirmation data, shown on the receipt. */
      data: Record<string, unknown>;
      /** Whatever `rollback` will need. */
      rollbackData?: Record<string, unknown> | null;
    }
  | {
      /** Cannot finish inside the job (a person, a callback): the action stays EXECUTING until it is settled. */
      status: 'waiting';
      message: string;
      /** What settles it later (e.g. `manual:<action id>`). */
      key?: string;
      /** Open an operator task with these instructions (the engine writes it with the waiting step). */
      task?: { instructions: string } | null;
    };

export interface RollbackContext {
  action: HandlerAction;
  rollbackData: Record<string, unknown> | null;
  config: HandlerConfig | null;
  /** As in {@link HandlerContext.secrets}. */
  secrets: Record<string, unknown> | null;
  services: HandlerServices;
}

/** One way to carry out some action types. Adding a handler is adding a module and a line in `src/handlers/index.ts`. */
export interface ActionHandler {
  /** Unique, e.g. `create-document.filesystem`. */
  name: string;
  kind: HandlerKind;
  types: readonly string[];
  /**
   * How a repeat (a retry, a job recovered from a dead worker) is made harmless (spec §6):
   * `provider` deduplicates by the idempotency key, `check` looks whether the effect already
   * happened, `none` cannot tell (SMTP): an interrupted attempt is never re-run, an operator
   * confirms the outcome instead. Absent: `check`.
   */
  repeat?: 'provider' | 'check' | 'none';
  /** Whether it can serve this action (e.g. a provider integration is configured). */
  isConfigured(action: HandlerAction, config: HandlerConfig | null): boolean;
  /** Extra checks beyond the type's schema; throw {@link PermanentHandlerError} to refuse. */
  validate?(action: HandlerAction): void;
  execute(ctx: HandlerContext): Promise<HandlerResult>;
  /** Absent: actions completed by this handler cannot be rolled back. */
  rollback?(ctx: RollbackContext): Promise<void>;
}

/** Will fail the same way every time (bad input, refused by the provider): do not retry; the chain may try the next handler. */
export class PermanentHandlerError extends Error {
  override name = 'PermanentHandlerError';
}

/** May succeed later (timeout, 5xx): retried with backoff. Any other thrown error counts as retryable too. */
export class RetryableHandlerError extends Error {
  override name = 'RetryableHandlerError';
}
