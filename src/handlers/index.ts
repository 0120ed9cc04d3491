import { createDocumentHandler } from './create-document.js';
import { manualHandler } from './manual.js';
import { noopHandler } from './noop.js';
import type { HandlerRegistry } from './registry.js';
import type { ActionHandler } from './types.js';

/**
 * The built-in handlers, in registration order (which orders handlers of the same kind within
 * a chain). The one place handlers are registered: a new handler is a module and a line here.
 */
export function builtInHandlers(options: { noop: boolean }): ActionHandler[] {
  const handlers: ActionHandler[] = [createDocumentHandler, manualHandler];
  if (options.noop) handlers.push(noopHandler);
  return handlers;
}

/** The names of the handlers in `type`'s fallback chain, first choice first (for `actionTypes.handlers`). */
export function describeChain(registry: HandlerRegistry, type: string): string[] {
  return registry.chainFor(type).map((handler) => handler.name);
}
