import type { z } from 'zod';
import type { ActionType, ActionTypeDefinition, PayloadOf } from '../engine/action-types/define.js';
import { describeIssue } from '../engine/action-types/issues.js';
import type { HandlerConfig } from '../generated/prisma/client.js';
import {
  HANDLER_KIND_ORDER,
  HANDLER_REPEATS,
  PermanentHandlerError,
  type ActionHandler,
  type HandlerAction,
  type HandlerContext,
  type HandlerKind,
  type HandlerRepeat,
  type HandlerResult,
  type HandlerServices,
  type RollbackContext,
} from './types.js';

declare const UNSET: unique symbol;
/** The type of a schema a handler did not declare (`settings`, `secrets`, `rollbackData`). */
export interface Unset {
  readonly [UNSET]: true;
}

/** A declared schema's output, or `Otherwise` when none was declared. */
type Parsed<S, Otherwise> = S extends z.ZodType ? z.output<S> : Otherwise;
/** A declared schema's input, or `Otherwise` when none was declared. */
type Unparsed<S, Otherwise> = S extends z.ZodType ? z.input<S> : Otherwise;

/**
 * The action as a handler of some types sees it: a union with one member per type served, so
 * checking `action.type` narrows `action.payload`.
 */
export type TypedAction<D> =
  D extends ActionType<infer T extends string, infer S extends z.ZodType> ? Omit<HandlerAction, 'type' | 'payload'> & { type: T; payload: z.output<S> } : never;

/** What `execute` gets: the engine's {@link HandlerContext}, typed, with settings and secrets parsed by the handler's schemas. */
export interface DefinedHandlerContext<D, Settings, Secrets> extends Omit<HandlerContext, 'action' | 'secrets'> {
  action: TypedAction<D>;
  /** `action.payload`: parsed by the type's schema (a union when the handler serves several types). */
  payload: PayloadOf<D>;
  /** The configuration's `settings` parsed by the handler's `settings` schema (parsed from `{}` without a configuration); as stored when it declares none. */
  settings: Parsed<Settings, Record<string, unknown>>;
  /**
   * The configuration's secrets, decrypted for this call only and parsed by the handler's
   * `secrets` schema (from `{}` when there are none); as decrypted (or null) when it declares
   * none. Never log them or put them in a result, message or error.
   */
  secrets: Parsed<Secrets, Record<string, unknown> | null>;
}

/** What `rollback` gets: as {@link DefinedHandlerContext}, with the data `execute` saved, parsed by `rollbackData`. */
export interface DefinedRollbackContext<D, Settings, Secrets, Saved> extends Omit<RollbackContext, 'action' | 'secrets' | 'rollbackData'> {
  action: TypedAction<D>;
  payload: PayloadOf<D>;
  settings: Parsed<Settings, Record<string, unknown>>;
  secrets: Parsed<Secrets, Record<string, unknown> | null>;
  rollbackData: Parsed<Saved, Record<string, unknown> | null>;
}

/** What `execute` returns: a {@link HandlerResult}, its `rollbackData` typed by the handler's `rollbackData` schema. */
export type DefinedHandlerResult<Saved> =
  | (Omit<Extract<HandlerResult, { status: 'completed' }>, 'rollbackData'> & { rollbackData?: Unparsed<Saved, Record<string, unknown>> | null })
  | Extract<HandlerResult, { status: 'waiting' }>;

/** What {@link defineHandler} takes. */
export interface HandlerDefinition<
  Types extends readonly ActionTypeDefinition[],
  Settings extends z.ZodType | Unset,
  Secrets extends z.ZodType | Unset,
  Saved extends z.ZodType | Unset,
> {
  /** Unique, e.g. `create_document.filesystem`; configurations name it. */
  name: string;
  kind: HandlerKind;
  /** The action types it serves (their definitions: they type `ctx.payload`). */
  types: Types;
  /** How a repeat is made harmless (spec §6). */
  repeat: HandlerRepeat;
  /** Schema of its configuration's non-secret `settings` (URLs, addresses, options). */
  settings?: Settings;
  /** Schema of its configuration's `secrets` (API tokens, signing keys). */
  secrets?: Secrets;
  /** Schema of the `rollbackData` that `execute` saves and `rollback` gets back. */
  rollbackData?: Saved;
  /**
   * Whether it can serve this action with this configuration. Default: when it declares
   * `settings` or `secrets`, whether there is a configuration at all; else always. (A
   * configuration that does not parse is still "configured": running fails with an error
   * naming the field, which the admin then sees.)
   */
  isConfigured?(action: TypedAction<Types[number]>, config: HandlerConfig | null, services?: HandlerServices): boolean;
  /** Checks beyond the type's schema; throw {@link PermanentHandlerError} to refuse. */
  validate?(action: TypedAction<Types[number]>): void;
  /**
   * Carries the action out. Never touches a transaction, an audit row, a receipt or the
   * database for bookkeeping: it returns what happened and the engine records it.
   */
  execute(ctx: DefinedHandlerContext<Types[number], Settings, Secrets>): Promise<DefinedHandlerResult<Saved>>;
  /** Undoes what `execute` did. Absent: actions completed by this handler cannot be rolled back. */
  rollback?(ctx: DefinedRollbackContext<Types[number], Settings, Secrets, Saved>): Promise<void>;
}

/**
 * Defines a handler: one file per handler, one line in `src/handlers/index.ts`. The result is
 * the {@link ActionHandler} the engine runs; inside, `ctx.payload`, `ctx.settings` and
 * `ctx.secrets` are typed and parsed. A configuration whose settings or secrets do not fit the
 * schemas fails the attempt with a {@link PermanentHandlerError} that names the field and the
 * rule, never a secret's value (the chain then tries its next handler).
 *
 * @example
 * export const smsHandler = defineHandler({
 *   name: 'send-sms.acme',
 *   kind: 'api',
 *   types: [sendSms],
 *   repeat: 'provider',
 *   settings: z.object({ url: z.url() }),
 *   secrets: z.object({ apiKey: z.string().min(1) }),
 *   async execute({ payload, settings, secrets, idempotencyKey, services }) {
 *     const res = await services.fetch(settings.url, {
 *       method: 'POST',
 *       headers: { authorization: `Bearer ${secrets.apiKey}`, 'idempotency-key': idempotencyKey },
 *       body: JSON.stringify({ to: payload.to, text: payload.body }),
 *     });
 *     if (!res.ok) throw new RetryableHandlerError(`Acme answered ${res.status}`);
 *     return { status: 'completed', provider: 'acme', externalRef: (await res.json()).id, data: {} };
 *   },
 * });
 */
export function defineHandler<
  const Types extends readonly ActionTypeDefinition[],
  Settings extends z.ZodType | Unset = Unset,
  Secrets extends z.ZodType | Unset = Unset,
  Saved extends z.ZodType | Unset = Unset,
>(definition: HandlerDefinition<Types, Settings, Secrets, Saved>): ActionHandler {
  const { name } = definition;
  if (!name) throw new TypeError('a handler needs a name');
  if (!HANDLER_KIND_ORDER.includes(definition.kind)) throw new TypeError(`handler "${name}" has unknown kind "${String(definition.kind)}"`);
  if (!HANDLER_REPEATS.includes(definition.repeat)) {
    throw new TypeError(`handler "${name}" must say how a repeat is made harmless: repeat is one of ${HANDLER_REPEATS.join(', ')}`);
  }
  const types = definition.types.map((t) => t.type);
  if (types.length === 0) throw new TypeError(`handler "${name}" serves no action type`);
  if (new Set(types).size !== types.length) throw new TypeError(`handler "${name}" lists an action type twice`);

  const settingsSchema = definition.settings as z.ZodType | undefined;
  const secretsSchema = definition.secrets as z.ZodType | undefined;
  const savedSchema = definition.rollbackData as z.ZodType | undefined;
  const configurable = settingsSchema !== undefined || secretsSchema !== undefined;

  const readSettings = (config: HandlerConfig | null): unknown => {
    const stored = config?.settings;
    const raw = typeof stored === 'object' && stored !== null && !Array.isArray(stored) ? stored : {};
    if (!settingsSchema) return raw;
    const parsed = settingsSchema.safeParse(raw);
    if (!parsed.success) throw new PermanentHandlerError(configurationProblem(name, 'settings', parsed.error.issues, describeIssue));
    return parsed.data;
  };
  const readSecrets = (secrets: Record<string, unknown> | null): unknown => {
    if (!secretsSchema) return secrets;
    const parsed = secretsSchema.safeParse(secrets ?? {});
    if (!parsed.success) throw new PermanentHandlerError(configurationProblem(name, 'secrets', parsed.error.issues, secretRule));
    return parsed.data;
  };

  const handler: ActionHandler = {
    name,
    kind: definition.kind,
    types,
    repeat: definition.repeat,
    ...(settingsSchema ? { settings: settingsSchema } : {}),
    ...(secretsSchema ? { secrets: secretsSchema } : {}),
    isConfigured: definition.isConfigured
      ? (action, config, services) => definition.isConfigured!(action as TypedAction<Types[number]>, config, services)
      : configurable
        ? (_action, config) => config !== null
        : () => true,
    async execute(ctx) {
      const typed = { ...ctx, payload: ctx.action.payload, settings: readSettings(ctx.config), secrets: readSecrets(ctx.secrets) };
      return (await definition.execute(typed as unknown as DefinedHandlerContext<Types[number], Settings, Secrets>)) as HandlerResult;
    },
  };
  if (definition.validate) handler.validate = (action) => definition.validate!(action as TypedAction<Types[number]>);
  if (definition.rollback) {
    const rollback = definition.rollback;
    handler.rollback = async (ctx) => {
      let rollbackData: unknown = ctx.rollbackData;
      if (savedSchema) {
        const parsed = savedSchema.safeParse(ctx.rollbackData ?? undefined);
        if (!parsed.success) {
          const first = parsed.error.issues[0];
          const where = first ? ['rollbackData', ...first.path.map(String)].join('.') : 'rollbackData';
          throw new PermanentHandlerError(`cannot roll back: the data saved when ${name} ran does not fit (${where}: ${first ? describeIssue(first) : 'is not valid'})`);
        }
        rollbackData = parsed.data;
      }
      const typed = { ...ctx, payload: ctx.action.payload, settings: readSettings(ctx.config), secrets: readSecrets(ctx.secrets), rollbackData };
      await rollback(typed as unknown as DefinedRollbackContext<Types[number], Settings, Secrets, Saved>);
    };
  }
  return Object.freeze(handler);
}

/** `handler x: settings.url: is required; settings.retries: must be at most 5`. */
function configurationProblem(name: string, part: 'settings' | 'secrets', issues: readonly z.core.$ZodIssue[], rule: (issue: z.core.$ZodIssue) => string): string {
  const problems = issues.slice(0, 5).map((issue) => {
    const path = issue.code === 'unrecognized_keys' ? [...issue.path.map(String), issue.keys.join(', ')] : issue.path.map(String);
    return `${[part, ...path].join('.')}: ${rule(issue)}`;
  });
  const more = issues.length > 5 ? `; and ${issues.length - 5} more` : '';
  return `the configuration of handler ${name} does not fit it: ${problems.join('; ')}${more}`;
}

/**
 * What was wrong with a secret, in words that cannot carry its value: only the rules whose
 * messages are ours (type, length, allowed values, unknown names); anything else (a custom
 * refinement, a format) is "is not valid".
 */
function secretRule(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
    case 'too_small':
    case 'too_big':
    case 'invalid_value':
      return describeIssue(issue);
    case 'unrecognized_keys':
      return 'unknown secret';
    default:
      return 'is not valid';
  }
}
