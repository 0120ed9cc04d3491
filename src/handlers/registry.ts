import { shortInput } from '../engine/input-text.js';
import { HANDLER_KIND_ORDER, HANDLER_REPEATS, type ActionHandler } from './types.js';

/** Thrown by {@link HandlerRegistry.get} for a handler name nobody registered. */
export class UnknownHandlerError extends Error {
  override name = 'UnknownHandlerError';
  constructor(readonly handlerName: string, known: readonly string[]) {
    super(`unknown handler ${shortInput(handlerName)}; registered handlers: ${known.join(', ') || '(none)'}`);
  }
}

/**
 * The registered handlers and, per action type, their fallback chain: api → webhook → email →
 * manual, and within one kind the order of registration. The chain lists every handler that
 * serves the type; whether one is configured for a given action is the engine's question.
 */
export class HandlerRegistry {
  readonly #byName = new Map<string, ActionHandler>();
  readonly #chains = new Map<string, readonly ActionHandler[]>();

  constructor(handlers: readonly ActionHandler[]) {
    for (const handler of handlers) {
      if (this.#byName.has(handler.name)) throw new Error(`handler "${handler.name}" is registered twice`);
      if (!HANDLER_KIND_ORDER.includes(handler.kind)) {
        throw new Error(`handler "${handler.name}" has unknown kind "${String(handler.kind)}"`);
      }
      if (!HANDLER_REPEATS.includes(handler.repeat)) {
        throw new Error(`handler "${handler.name}" must say how a repeat is made harmless (repeat: ${HANDLER_REPEATS.join(', ')})`);
      }
      this.#byName.set(handler.name, handler);
    }
    const registered = [...this.#byName.values()];
    // Array.prototype.sort is stable, so equal kinds keep their registration order.
    const ordered = registered
      .map((handler, index) => ({ handler, index }))
      .sort((a, b) => HANDLER_KIND_ORDER.indexOf(a.handler.kind) - HANDLER_KIND_ORDER.indexOf(b.handler.kind) || a.index - b.index)
      .map((entry) => entry.handler);
    for (const handler of registered) {
      for (const type of handler.types) {
        if (!this.#chains.has(type)) this.#chains.set(type, ordered.filter((h) => h.types.includes(type)));
      }
    }
  }

  /** The fallback chain for `type`, first choice first; `[]` when no handler serves it. */
  chainFor(type: string): ActionHandler[] {
    return [...(this.#chains.get(type) ?? [])];
  }

  /** The handler registered under `name`, or undefined (e.g. one renamed or removed since an execution recorded it). */
  find(name: string): ActionHandler | undefined {
    return this.#byName.get(name);
  }

  /** The handler registered under `name`; throws {@link UnknownHandlerError} otherwise. */
  get(name: string): ActionHandler {
    const handler = this.#byName.get(name);
    if (!handler) throw new UnknownHandlerError(name, [...this.#byName.keys()]);
    return handler;
  }

  /** Whether some handler of `type`'s chain can undo what it carried out (implements rollback). */
  canRollBack(type: string): boolean {
    return this.chainFor(type).some((handler) => typeof handler.rollback === 'function');
  }

  /** Every action type at least one handler serves, in order of first registration. */
  types(): string[] {
    return [...this.#chains.keys()];
  }
}
