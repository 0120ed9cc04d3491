import { GraphQLError, GraphQLScalarType, Kind, type ValueNode } from 'graphql';
import { parseIsoDateTime } from '../engine/date-time.js';
import { shortInput } from '../engine/input-text.js';
import { findInputProblem, MAX_JSON_DEPTH } from './input-guard.js';

/** ISO 8601 date-time with an explicit offset, e.g. `2026-11-21T10:00:00Z`. */
export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  description: 'An ISO 8601 date-time with a time zone offset, e.g. 2026-11-21T10:00:00Z.',
  serialize(value) {
    const date = value instanceof Date ? value : new Date(String(value));
    if (Number.isNaN(date.getTime())) throw new GraphQLError('DateTime cannot represent an invalid date');
    return date.toISOString();
  },
  parseValue(value) {
    return parseDate(value);
  },
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) throw new GraphQLError('DateTime must be a string');
    return parseDate(ast.value);
  },
});

function parseDate(value: unknown): Date {
  if (typeof value !== 'string') {
    throw new GraphQLError('DateTime must be an ISO 8601 string with a time zone, e.g. 2026-11-21T10:00:00Z');
  }
  const parsed = parseIsoDateTime(value);
  if ('error' in parsed) throw new GraphQLError(`DateTime ${shortInput(value)} ${parsed.error}`, { extensions: { code: 'INVALID_INPUT' } });
  return parsed.date;
}

/**
 * A JSON value as it may be stored: no control character other than TAB, LF and CR, no
 * unpaired surrogate (in strings and keys), at most MAX_JSON_DEPTH deep.
 */
function checkedJson(value: unknown): unknown {
  const problem = findInputProblem(value, MAX_JSON_DEPTH);
  if (problem) {
    const where = problem.path.length ? `JSON value at ${problem.path.join('.')}` : 'JSON value';
    throw new GraphQLError(`${where} ${problem.message}`, { extensions: { code: 'INVALID_INPUT' } });
  }
  return value;
}

/** Any JSON value. */
export const JsonScalar = new GraphQLScalarType<unknown, unknown>({
  name: 'JSON',
  description: `Any JSON value, nested at most ${MAX_JSON_DEPTH} levels deep, without unpaired surrogates or control characters other than TAB, LF and CR (U+0000–U+0008, U+000B, U+000C, U+000E–U+001F, U+007F–U+009F are refused) in its strings and keys.`,
  serialize: (value) => value,
  parseValue: (value) => checkedJson(value),
  parseLiteral: (ast, variables) => checkedJson(jsonLiteral(ast, variables)),
});

const jsonLiteral = function literal(ast: ValueNode, variables?: Record<string, unknown> | null): unknown {
    switch (ast.kind) {
      case Kind.STRING:
      case Kind.BOOLEAN:
        return ast.value;
      case Kind.INT:
      case Kind.FLOAT:
        return Number(ast.value);
      case Kind.NULL:
        return null;
      case Kind.LIST:
        return ast.values.map((v) => literal(v, variables));
      case Kind.OBJECT:
        return Object.fromEntries(ast.fields.map((f) => [f.name.value, literal(f.value, variables)]));
      case Kind.VARIABLE:
        return variables ? variables[ast.name.value] : undefined;
      case Kind.ENUM:
        throw new GraphQLError(`JSON cannot represent the enum value ${ast.value}`);
      default:
        throw new GraphQLError('JSON cannot represent this value');
    }
};
