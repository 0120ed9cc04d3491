import type { z } from 'zod';
import type { HandlerConfig } from '../generated/prisma/client.js';
import type { Logger } from '../logger.js';
import type { Mailer } from '../mail/mailer.js';

/** How a handler reaches the world; a fallback chain tries them in this order. */
export type HandlerKind = 'api' | 'webhook' | 'email' | 'manual';
export const HANDLER_KIND_ORDER: readonly HandlerKind[] = ['api', 'webhook', 'email', 'manual'];

/**
 * How a handler makes a repeat of the same action harmless (spec §6), for when a worker dies
 * mid-attempt and the job runs again:
 * - `provider`: the other side deduplicates by the idempotency key (an `Idempotency-Key`
 *   header, a Standard Webhooks `webhook-id`, a CalDAV UID with `If-None-Match: *`);
 * - `check`: the handler looks whether its effect already happened (a file, an event) and
 *   reports that instead of doing it twice;
 * - `none`: it cannot tell (SMTP). The engine never runs it again after a crash; an operator
 *   confirms the outcome.
 */
export type HandlerRepeat = 'provider' | 'check' | 'none';
export const HANDLER_REPEATS: readonly HandlerRepeat[] = ['provider', 'check', 'none'];

/**
 * What handlers may use, injected by the worker (never imported). No database: handlers do
 * their work; the engine does the bookkeeping (executions, audit, receipts, tasks).
 */
export interface HandlerServices {
  mailer: Mailer;
  /** For api and webhook handlers. */
  fetch: typeof fetch;
  /** Root of the per-user folders (`<filesRoot>/<spaceId>/<userId>/…`). */
  filesRoot: string;
  clock: () => Date;
  logger: Logger;
  /** The engine's public URL (`BASE_URL`), for URLs a provider calls back on. */
  baseUrl?: string;
  /** `CALDAV_URL`: the CalDAV calendar collection for every space (credentials in the URL), if set. */
  caldavUrl?: string | undefined;
}

/** The action as a handler sees it; `payload` is already parsed with its type's schema (defaults applied). */
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
      /**
       * Not finished inside the job: the action stays EXECUTING until whatever `key` names
       * finishes it (an operator today; a provider callback or webhook reply later), through
       * the engine's one settle path.
       */
      status: 'waiting';
      /** What finishes it, unique per action and stable across repeats (manual: `manual:<action id>`). */
      key: string;
      /** The status message while waiting. */
      message: string;
      /** Asks the engine to open an operator task (one open task per key) with these plain-text instructions. */
      task?: { instructions: string };
    };

export interface RollbackContext {
  action: HandlerAction;
  rollbackData: Record<string, unknown> | null;
  config: HandlerConfig | null;
  /** As in {@link HandlerContext.secrets}. */
  secrets: Record<string, unknown> | null;
  services: HandlerServices;
}

/**
 * One way to carry out some action types: what the engine runs. Made by `defineHandler`
 * (`src/handlers/define-handler.ts`); adding a handler is adding a module and a line in
 * `src/handlers/index.ts`.
 */
export interface ActionHandler {
  /** Unique, e.g. `create_document.filesystem`. */
  name: string;
  kind: HandlerKind;
  types: readonly string[];
  /** How a repeat is made harmless (spec §6). */
  repeat: HandlerRepeat;
  /** The schema of its configuration's `settings`, when it declares one (for checking a configuration when it is saved). */
  settings?: z.ZodType;
  /** The schema of its configuration's `secrets`, when it declares one. */
  secrets?: z.ZodType;
  /** Whether it can serve this action (e.g. a provider integration is configured; `services` tells deployment-wide settings such as `CALDAV_URL`). */
  isConfigured(action: HandlerAction, config: HandlerConfig | null, services?: HandlerServices): boolean;
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

/**
 * Ends the action now as FAILED with this reason: no other handler of the chain and no operator
 * is tried. For outcomes where another route could do harm (a provider that may already have
 * taken an order) or could do no better (a payload no handler can carry out).
 */
export class FinalHandlerError extends PermanentHandlerError {
  override name = 'FinalHandlerError';
}

/**
 * The payload itself cannot be carried out (a path that escapes the user's folder, a symlink out
 * of it, a missing source): no other handler or operator could do better, so the action fails
 * with this reason at once; the chain stops and nothing is handed to an operator.
 */
export class RefusedPayloadError extends FinalHandlerError {
  override name = 'RefusedPayloadError';
}

/** May succeed later (timeout, 5xx): retried with backoff. Any other thrown error counts as retryable too. */
export class RetryableHandlerError extends Error {
  override name = 'RetryableHandlerError';
}
