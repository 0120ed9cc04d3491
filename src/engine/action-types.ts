import { z } from 'zod';
import { createCalendarEvent } from './action-types/create-calendar-event.js';
import { createDocument } from './action-types/create-document.js';
import type { ActionTypeDefinition } from './action-types/define.js';
import { describePayload, type ActionDescription, type DescribeOptions } from './action-types/describe.js';
import { issueErrors } from './action-types/issues.js';
import { makePayment } from './action-types/make-payment.js';
import { makePurchase } from './action-types/make-purchase.js';
import { moveFile } from './action-types/move-file.js';
import { noop } from './action-types/noop.js';
import { order } from './action-types/order.js';
import { sendEmail } from './action-types/send-email.js';
import { PayloadErrors, UnknownTypeError } from './errors.js';
import { shortInput } from './input-text.js';

export { defineActionType, type ActionType, type ActionTypeDefinition, type PayloadOf } from './action-types/define.js';
export {
  FILE_PATH_PATTERN,
  MAX_EMAIL_CHARS,
  MAX_EMAIL_LOCAL_CHARS,
  MULTI_LINE_PATTERN,
  normalizeUserPath,
  purchaseTotalMatches,
  SINGLE_LINE_PATTERN,
  timeZoneProblem,
  USER_PATH_PATTERN,
} from './action-types/fields.js';

/**
 * The built-in action types of spec §3, in the spec's order: one file each under
 * `src/engine/action-types/`, one line here. A tuple, so a handler serving all of them (the
 * manual one) sees the union of their payloads.
 */
export const BUILT_IN_ACTION_TYPES = [
  sendEmail,
  createCalendarEvent,
  moveFile,
  createDocument,
  makePayment,
  makePurchase,
  order,
] as const satisfies readonly ActionTypeDefinition[];

/** The types the composition root registers: the built-in ones, and `noop` when benchmarks or tests ask for it. */
export function builtInActionTypes(options: { noop: boolean }): ActionTypeDefinition[] {
  return options.noop ? [...BUILT_IN_ACTION_TYPES, noop] : [...BUILT_IN_ACTION_TYPES];
}

/** The registered action types, looked up by name. */
export class ActionTypeRegistry {
  readonly #types = new Map<string, ActionTypeDefinition>();
  readonly #jsonSchemas = new Map<string, unknown>();

  constructor(definitions: readonly ActionTypeDefinition[]) {
    for (const d of definitions) {
      if (this.#types.has(d.type)) throw new Error(`action type ${d.type} is registered twice`);
      this.#types.set(d.type, d);
      this.#jsonSchemas.set(d.type, z.toJSONSchema(d.payload, { io: 'input', unrepresentable: 'any' }));
    }
  }

  list(): ActionTypeDefinition[] {
    return [...this.#types.values()];
  }

  /** The definition of `type`; throws {@link UnknownTypeError} (naming the known types) otherwise. */
  get(type: string): ActionTypeDefinition {
    const d = this.#types.get(type);
    if (!d) {
      throw new UnknownTypeError(`unknown action type ${shortInput(type)}; known types: ${[...this.#types.keys()].join(', ')}`, ['type']);
    }
    return d;
  }

  /** The definition of `type`, or undefined: for describing stored actions whose type may be gone. */
  find(type: string): ActionTypeDefinition | undefined {
    return this.#types.get(type);
  }

  /** The JSON Schema of `type`'s payload as a caller writes it (defaults optional), computed once. */
  jsonSchema(type: string): unknown {
    this.get(type);
    return this.#jsonSchemas.get(type);
  }

  /**
   * Validates a payload a caller sent (a new action, a revision) and returns it normalised
   * (defaults applied). Throws {@link PayloadErrors} with one `InvalidPayloadError` per
   * problem, each naming its field (e.g. `payload.to.0`) and what was expected.
   */
  validate(type: string, payload: unknown): Record<string, unknown> {
    return this.parse(type, payload);
  }

  /**
   * Parses a stored payload with its type's schema, for the worker: a handler gets the parsed
   * payload (defaults applied, transforms run), never a cast. A payload that no longer fits
   * (stored before a schema change) throws {@link PayloadErrors} as {@link validate} does,
   * which the worker treats as permanent.
   */
  parse(type: string, payload: unknown): Record<string, unknown> {
    const d = this.get(type);
    const result = d.payload.safeParse(payload, { reportInput: true });
    if (result.success) return result.data as Record<string, unknown>;
    throw new PayloadErrors(issueErrors(result.error.issues, 'payload'));
  }

  /**
   * What an action of `type` will do, in plain words (approval mail and page, operator
   * tasks): the type's own `describe`, or the payload as JSON for a type without one or a
   * payload that does not fit its schema. Never throws.
   */
  describe(type: string, payload: unknown, options?: DescribeOptions): ActionDescription {
    return describePayload(this.#types.get(type), type, payload, options);
  }
}
