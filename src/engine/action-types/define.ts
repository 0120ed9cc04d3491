import type { z } from 'zod';

/**
 * One line of what an action will do, as the approval mail, the approval page and the operator
 * see it. `value` is a list when it is an array; `format` says how to show a long value:
 * `text` keeps line breaks, `json` is a preformatted block, `inline` (the default) is one line.
 */
export interface ActionDetail {
  label: string;
  value: string | string[];
  format?: 'inline' | 'text' | 'json';
}

/**
 * A detail as a type's `describe` returns it: absent values (`undefined`, `null`, `''`, `[]`)
 * are left out, numbers and booleans become text, and every value is made safe to show
 * (one line for `inline` and list items, no control or bidi characters) by the caller, so a
 * describer never has to remember to.
 */
export interface DetailInput {
  label: string;
  value: string | number | boolean | ReadonlyArray<string | number> | null | undefined;
  format?: ActionDetail['format'];
}

/** Where a described action lives, when it is a stored one (operator tasks); absent for previews. */
export interface ActionAbout {
  id: string;
  spaceId: string;
  userId: string;
}

/** What a type's `describe` says about one payload, in plain words. */
export interface PayloadDescription {
  /** One line, imperative: `Send an email to ada@example.com with the subject “Hi”`. */
  headline: string;
  /** The fields behind the headline, in reading order; `false`, `null` and `undefined` entries are skipped. */
  details: ReadonlyArray<DetailInput | false | null | undefined>;
  /**
   * What an operator must do to carry it out by hand (a manual task), in plain text. Default:
   * the headline and the details as `Label: value` lines.
   */
  instructions?: string;
}

/**
 * What the engine knows about one action type (spec §3): its payload schema and everything
 * that used to be spread over switches by type name. Made by {@link defineActionType}; the
 * type parameters keep the payload's type, so `describe` and the handlers serving the type see
 * `z.output<typeof payload>`, not `Record<string, unknown>`.
 */
export interface ActionType<T extends string = string, S extends z.ZodType = z.ZodType> {
  /** The name agents ask for (`send_email`): lower case letters, digits and `_`. */
  readonly type: T;
  /** One sentence for the `actionTypes` query. */
  readonly description: string;
  /**
   * The payload's schema. Its `.meta()` descriptions and examples go into the published JSON
   * Schema; payloads are parsed with it when an action is created or revised and again when
   * its job runs (defaults applied), never cast.
   */
  readonly payload: S;
  /** Whether a completed action of this type can be rolled back (if a handler of its chain implements rollback). */
  readonly reversible: boolean;
  /**
   * Runs only after a person approved it (spec §6, payments), whatever the safety rules say:
   * it starts PENDING, and the worker rechecks the recorded approval before any handler runs.
   */
  readonly humanApproval: boolean;
  /** Approving it from the emailed link also needs a one-time code sent in a second email (payments, purchases). */
  readonly approvalNeedsCode: boolean;
  /**
   * Whether approved actions wait out the grace period (GRACE_SECONDS, rules' graceSeconds)
   * before they run: its effect cannot be taken back in practice (spec §5: email, orders,
   * payments, purchases). Default: not reversible.
   */
  readonly gracePeriod: boolean;
  /**
   * The payload in plain words, for the approval mail and page and for operators. A method
   * (not a function property) on purpose: a definition with a typed payload is then still an
   * {@link ActionTypeDefinition}. Absent: the payload is shown as JSON.
   */
  describe?(payload: z.output<S>, about?: ActionAbout): PayloadDescription;
}

/** Any action type, its payload type forgotten: what registries hold. */
export type ActionTypeDefinition = ActionType<string, z.ZodType>;

/** The parsed payload of an action type (a union over a union of types). */
export type PayloadOf<D> = D extends ActionType<string, infer S> ? z.output<S> : never;

/** What {@link defineActionType} takes; `humanApproval` and `approvalNeedsCode` default to false. */
export interface ActionTypeOptions<T extends string, S extends z.ZodType> {
  type: T;
  description: string;
  payload: S;
  reversible: boolean;
  humanApproval?: boolean;
  approvalNeedsCode?: boolean;
  gracePeriod?: boolean;
  describe?(payload: z.output<S>, about?: ActionAbout): PayloadDescription;
}

/** Action type names: what agents type, safety rules name and audit entries record. */
const TYPE_NAME = /^[a-z][a-z0-9_]{0,63}$/;

/**
 * Defines an action type: one file per type, one line in `BUILT_IN_ACTION_TYPES` (or in
 * `createApp`'s `extraActionTypes`). Throws at definition for a name agents could not type.
 *
 * @example
 * export const sendSms = defineActionType({
 *   type: 'send_sms',
 *   description: 'Send a text message.',
 *   payload: z.strictObject({ to: text(32, 'Phone number.'), body: multiLine(480, 'The message.') }),
 *   reversible: false,
 *   describe: (p) => ({ headline: `Text ${p.to}`, details: [{ label: 'Message', value: p.body, format: 'text' }] }),
 * });
 */
export function defineActionType<const T extends string, S extends z.ZodType>(options: ActionTypeOptions<T, S>): ActionType<T, S> {
  if (!TYPE_NAME.test(options.type)) {
    throw new TypeError(`action type name ${JSON.stringify(options.type)} must be 1 to 64 lower case letters, digits or "_", starting with a letter`);
  }
  const definition: ActionType<T, S> = {
    type: options.type,
    description: options.description,
    payload: options.payload,
    reversible: options.reversible,
    humanApproval: options.humanApproval ?? false,
    approvalNeedsCode: options.approvalNeedsCode ?? false,
    gracePeriod: options.gracePeriod ?? !options.reversible,
    ...(options.describe ? { describe: options.describe } : {}),
  };
  return Object.freeze(definition);
}
