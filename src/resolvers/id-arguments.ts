import { decodeBase64, decodeCursorChunk } from '@pothos/core';
import {
  GraphQLError,
  getNamedType,
  getNullableType,
  isInputObjectType,
  isListType,
  isObjectType,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLFieldResolver,
  type GraphQLInputType,
  type GraphQLSchema,
} from 'graphql';
import type { GraphQLContext } from '../context.js';
import { EngineError, InvalidInputError, NotFoundError } from '../engine/errors.js';
import { shortInput } from '../engine/input-text.js';
import { toUserError } from './user-error.js';
import { UUID } from '../engine/ids.js';
export { UUID };

/** Every id the service hands out is a UUID (audit entries excepted: no argument takes one). */
/** A user's handle, as `keys create --user` accepts it. */
const HANDLE = /^[a-z0-9][a-z0-9._-]{0,62}$/i;
const MAX_CURSOR_CHARS = 200;
/** The stored prefix of an API key: `ae_` and 7 more characters of the key. */
const API_KEY_PREFIX_PATTERN = /^ae_[A-Za-z0-9_-]{7}$/;

/** How one argument (or input field) is checked; `path` names it in the error. */
type Check = (value: unknown, path: string[], ctx: GraphQLContext) => Promise<unknown>;

/** A short, plain id as it is; anything else quoted and cut (a 100 kB id answers with a short message). */
function plainOrQuoted(text: string): string {
  return text.length <= 64 && /^[\w.-]+$/.test(text) ? text : shortInput(text);
}

/** What an `ID` argument names, from its name: `actionId` → action, `userId` → user, `id` → the field's object. */
function thingOf(name: string, fieldName: string): string {
  if (name === 'id') {
    const m = fieldName.match(/^(?:approve|reject|cancel|rollback|complete|revoke)([A-Z]\w*)$/);
    return (m ? m[1]! : fieldName).replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
  }
  return name.replace(/Id$/, '').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}

/**
 * An id argument: a UUID, checked before anything reaches the database. An argument that
 * names a user (`userId`) takes the user's id or handle, in the caller's space, and hands
 * the resolver the id.
 */
function idCheck(argName: string, fieldName: string): Check {
  const thing = thingOf(argName, fieldName);
  if (argName === 'userId') {
    return async (value, path, ctx) => {
      const text = String(value);
      if (UUID.test(text)) return text.toLowerCase();
      if (!HANDLE.test(text) || !ctx.principal) {
        throw new NotFoundError(`no user ${plainOrQuoted(text)} in this space (give the user's id or handle)`, path);
      }
      const user = await ctx.app.db.user.findFirst({ where: { spaceId: ctx.principal.spaceId, handle: text }, select: { id: true } });
      if (!user) throw new NotFoundError(`no user ${plainOrQuoted(text)} in this space (give the user's id or handle)`, path);
      return user.id;
    };
  }
  // `revokeApiKey(id)` also takes a key's prefix, as `keys revoke <id|prefix>` does.
  const alsoAccepts = fieldName === 'revokeApiKey' && argName === 'id' ? API_KEY_PREFIX_PATTERN : null;
  return async (value, path) => {
    const text = String(value);
    if (alsoAccepts?.test(text)) return text;
    if (!UUID.test(text)) throw new NotFoundError(`no ${thing} with id ${plainOrQuoted(text)}`, path);
    return text.toLowerCase();
  };
}

/** A Relay cursor of a Prisma connection: `GPC:` and an id (a UUID) or a number. */
const cursorCheck: Check = async (value, path) => {
  const text = String(value);
  let decoded: unknown;
  try {
    if (text.length > MAX_CURSOR_CHARS) throw new Error('too long');
    const raw = decodeBase64(text);
    if (!raw.startsWith('GPC:')) throw new Error('not a cursor');
    decoded = decodeCursorChunk(raw.slice(4));
  } catch {
    decoded = undefined;
  }
  const ok = typeof decoded === 'bigint' || typeof decoded === 'number' || (typeof decoded === 'string' && UUID.test(decoded));
  if (!ok) throw new InvalidInputError(`${path.join('.')} ${shortInput(text)} is not a cursor this API gave out (use pageInfo.endCursor)`, path);
  return value;
};

/** The check for a value of `type`, or null when nothing in it takes an id. */
function checkFor(type: GraphQLInputType, name: string, fieldName: string, seen: Set<unknown>): Check | null {
  const inner = getNullableType(type);
  if (isListType(inner)) {
    const item = checkFor(inner.ofType as GraphQLInputType, name, fieldName, seen);
    if (!item) return null;
    return async (value, path, ctx) =>
      Array.isArray(value) ? Promise.all(value.map((v, i) => (v == null ? v : item(v, [...path, String(i)], ctx)))) : item(value, path, ctx);
  }
  const named = getNamedType(inner);
  if (named.name === 'ID') return idCheck(name, fieldName);
  if (!isInputObjectType(named) || seen.has(named)) return null;
  seen.add(named);
  const fields = Object.values(named.getFields())
    .map((f) => [f.name, checkFor(f.type, f.name, fieldName, seen)] as const)
    .filter((entry): entry is readonly [string, Check] => entry[1] !== null);
  seen.delete(named);
  if (!fields.length) return null;
  return async (value, path, ctx) => {
    if (value == null || typeof value !== 'object') return value;
    const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const [key, check] of fields) {
      if (out[key] != null) out[key] = await check(out[key], [...path, key], ctx);
    }
    return out;
  };
}

function argumentChecks(field: GraphQLField<unknown, unknown>, isConnection: boolean): Array<[string, Check]> {
  const checks: Array<[string, Check]> = [];
  for (const arg of field.args as readonly GraphQLArgument[]) {
    const check = isConnection && (arg.name === 'after' || arg.name === 'before') ? cursorCheck : checkFor(arg.type, arg.name, field.name, new Set());
    if (check) checks.push([arg.name, check]);
  }
  return checks;
}

/** Whether the field answers with a mutation payload (`errors: [UserError!]!`) rather than by throwing. */
function answersWithErrors(field: GraphQLField<unknown, unknown>): boolean {
  const type = getNamedType(field.type);
  return isObjectType(type) && 'errors' in type.getFields();
}

function asGraphQLError(error: EngineError): GraphQLError {
  return new GraphQLError(error.message, { extensions: { code: error.code, ...(error.field ? { field: error.field } : {}) } });
}

/**
 * The one place where id arguments are parsed, for every field of the schema (queries,
 * mutations, subscriptions; arguments and input fields alike): a malformed id answers
 * NOT_FOUND naming the argument, before any resolver or database query runs; a user may be
 * named by id or handle. Mutations answer in their payload's `errors`, other fields with a
 * GraphQL error carrying the code. Callers without a key are left to the field's auth check.
 */
export function guardIdArguments(schema: GraphQLSchema): GraphQLSchema {
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__')) continue;
    for (const field of Object.values(type.getFields())) {
      const isConnection = getNamedType(field.type).name.endsWith('Connection');
      const checks = argumentChecks(field, isConnection);
      if (!checks.length) continue;
      const viaPayload = answersWithErrors(field);
      const checkArgs = async (args: Record<string, unknown>, ctx: GraphQLContext) => {
        const out = { ...args };
        for (const [name, check] of checks) {
          if (out[name] != null) out[name] = await check(out[name], [name], ctx);
        }
        return out;
      };
      const wrap = (inner: GraphQLFieldResolver<unknown, GraphQLContext> | undefined, payload: boolean) => {
        if (!inner) return inner;
        const wrapped: GraphQLFieldResolver<unknown, GraphQLContext> = async (source, args, ctx, info) => {
          if (!ctx.principal) return inner(source, args, ctx, info);
          let checked: Record<string, unknown>;
          try {
            checked = await checkArgs(args, ctx);
          } catch (error) {
            if (!(error instanceof EngineError)) throw error;
            if (payload) return { errors: [toUserError(error)] };
            throw asGraphQLError(error);
          }
          return inner(source, checked, ctx, info);
        };
        return wrapped;
      };
      if (type === schema.getSubscriptionType()) {
        field.subscribe = wrap(field.subscribe as GraphQLFieldResolver<unknown, GraphQLContext>, false) as typeof field.subscribe;
      } else {
        field.resolve = wrap((field.resolve ?? defaultResolve(field.name)) as GraphQLFieldResolver<unknown, GraphQLContext>, viaPayload) as typeof field.resolve;
      }
    }
  }
  return schema;
}

function defaultResolve(name: string): GraphQLFieldResolver<unknown, GraphQLContext> {
  return (source) => (source as Record<string, unknown> | null)?.[name];
}
