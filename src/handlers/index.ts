import { calendarCaldavHandler } from './calendar-caldav.js';
import { calendarIcsHandler } from './calendar-ics.js';
import { createDocumentHandler } from './create-document.js';
import { manualHandler } from './manual.js';
import { moveFileHandler } from './move-file.js';
import { noopHandler } from './noop.js';
import { orderApiHandler } from './order-api.js';
import { orderEmailHandler } from './order-email.js';
import { orderWebhookHandler } from './order-webhook.js';
import { paymentWebhookHandler } from './payment-webhook.js';
import type { HandlerRegistry } from './registry.js';
import { sendEmailSmtpHandler } from './send-email-smtp.js';
import type { ActionHandler } from './types.js';

/**
 * The built-in handlers, in registration order (which orders handlers of the same kind within
 * a chain). The one place handlers are registered: a new handler is a `defineHandler` module
 * and a line here.
 */
export const BUILT_IN_HANDLERS: readonly ActionHandler[] = [
  createDocumentHandler,
  moveFileHandler,
  sendEmailSmtpHandler,
  calendarCaldavHandler,
  calendarIcsHandler,
  orderApiHandler,
  orderWebhookHandler,
  paymentWebhookHandler,
  orderEmailHandler,
  manualHandler,
];

/** The handlers the composition root registers: the built-in ones, and `noop` when benchmarks or tests ask for it. */
export function builtInHandlers(options: { noop: boolean }): ActionHandler[] {
  return options.noop ? [...BUILT_IN_HANDLERS, noopHandler] : [...BUILT_IN_HANDLERS];
}

/** The names of the handlers in `type`'s fallback chain, first choice first (for `actionTypes.handlers`). */
export function describeChain(registry: HandlerRegistry, type: string): string[] {
  return registry.chainFor(type).map((handler) => handler.name);
}
