import { celEnv, isCelError, parse, plan, type CelInput } from '@bufbuild/cel';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';

/**
 * Conditions on safety rules (spec §4): CEL expressions, evaluated by Buf's CEL implementation
 * (`@bufbuild/cel`, conformance-tested, never `eval`), over four variables:
 *
 * - `payload`: the action's payload as validated (numbers are CEL doubles, so `payload.amount > 100` works);
 * - `type`: the action type;
 * - `user`: `{ id, handle, email, domain, kycStatus }` of the user the action is for (`email` and `domain` empty when unknown);
 * - `now`: the time of the request, a CEL timestamp.
 *
 * A condition that does not compile is refused when the rule is saved ({@link compileCondition}
 * throws a {@link ConditionError} with its position). One that fails while running (a missing
 * field, a wrong type) counts as true — the rule applies — and the caller records why.
 */

/** The variables a condition may use. */
export const CONDITION_VARIABLES = ['payload', 'type', 'user', 'now'] as const;

/** Longest condition accepted. */
export const MAX_CONDITION_LENGTH = 2000;
/** Deepest nesting of comprehensions (`all`, `exists`, `map`, `filter`) accepted: one (a payload list may be long; two nested would multiply). */
export const MAX_COMPREHENSION_NESTING = 1;
/** Most expression nodes accepted (literals, variables, calls…). */
export const MAX_CONDITION_NODES = 300;

/** A condition that cannot be compiled: where and why. */
export class ConditionError extends Error {
  override name = 'ConditionError';
  constructor(
    message: string,
    /** 1-based line and column of the problem, when known. */
    readonly line: number | null = null,
    readonly column: number | null = null,
  ) {
    super(line !== null ? `${message} (line ${line}, column ${column})` : message);
  }
}

/** What a condition runs on. */
export interface ConditionSubject {
  payload: unknown;
  type: string;
  user: { id: string; handle: string | null; email: string | null; kycStatus: string } | null;
  now: Date;
}

/** The outcome of one condition: whether the rule applies, and the error that made it apply, if any. */
export interface ConditionOutcome {
  applies: boolean;
  error: string | null;
}

type Compiled = (bindings: Record<string, CelInput>) => unknown;

const env = celEnv();
const cache = new Map<string, Compiled>();
const CACHE_MAX = 500;

/** Parses and plans `text`; throws {@link ConditionError} (with line and column where known). */
export function compileCondition(text: string): Compiled {
  const cached = cache.get(text);
  if (cached) return cached;
  if (text.trim() === '') throw new ConditionError('the condition is empty');
  if (text.length > MAX_CONDITION_LENGTH) throw new ConditionError(`the condition is longer than ${MAX_CONDITION_LENGTH} characters`);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(text);
  } catch (error) {
    const e = error as { message?: string; location?: { start?: { line?: number; column?: number } }; rawMessage?: string };
    const start = e.location?.start;
    const fromMessage = /:(\d+):(\d+):\s*(.*)$/s.exec(e.message ?? '');
    const line = start?.line ?? (fromMessage ? Number(fromMessage[1]) : null);
    const column = start?.column ?? (fromMessage ? Number(fromMessage[2]) : null);
    const why = e.rawMessage ?? fromMessage?.[3] ?? e.message ?? 'not a valid expression';
    throw new ConditionError(`not a valid CEL expression: ${why}`, line, column);
  }
  const shape = inspect(parsed.expr);
  const at = (id: bigint | undefined) => positionOf(text, id === undefined ? undefined : parsed.sourceInfo?.positions[String(id)]);
  const unknown = shape.identifiers.filter((i) => !(CONDITION_VARIABLES as readonly string[]).includes(i.name));
  if (unknown.length) {
    const first = at(unknown[0]!.id);
    throw new ConditionError(
      `unknown variable ${[...new Set(unknown.map((i) => `"${i.name}"`))].join(', ')}: a condition may use ${CONDITION_VARIABLES.join(', ')}`,
      first?.line ?? null,
      first?.column ?? null,
    );
  }
  // Bounded work per action: CEL has no loops, but nested comprehensions multiply (10 levels of
  // [0..9].all(…) would take minutes on the event loop).
  if (shape.maxNesting > MAX_COMPREHENSION_NESTING) {
    const where = at(shape.deepestId);
    throw new ConditionError(`comprehensions (all, exists, map, filter…) nest ${shape.maxNesting} deep; at most ${MAX_COMPREHENSION_NESTING} are allowed`, where?.line ?? null, where?.column ?? null);
  }
  if (shape.nodes > MAX_CONDITION_NODES) throw new ConditionError(`the condition has ${shape.nodes} parts; at most ${MAX_CONDITION_NODES} are allowed`);
  let compiled: Compiled;
  try {
    compiled = plan(env, parsed) as Compiled;
  } catch (error) {
    throw new ConditionError(`cannot be evaluated: ${(error as Error).message}`);
  }
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(text, compiled);
  return compiled;
}

/** Runs `text` on `subject`. Never throws: a failure (or a result that is not a bool) applies the rule and says why. */
export function evaluateCondition(text: string, subject: ConditionSubject): ConditionOutcome {
  let result: unknown;
  try {
    result = compileCondition(text)(bindingsOf(subject));
  } catch (error) {
    return { applies: true, error: (error as Error).message };
  }
  if (isCelError(result)) return { applies: true, error: result.message };
  if (typeof result !== 'boolean') return { applies: true, error: `the condition gave ${describeValue(result)}, not true or false` };
  return { applies: result, error: null };
}

function bindingsOf(subject: ConditionSubject): Record<string, CelInput> {
  const email = subject.user?.email ?? '';
  return {
    payload: toCel(subject.payload),
    type: subject.type,
    user: toCel({
      id: subject.user?.id ?? '',
      handle: subject.user?.handle ?? '',
      email,
      domain: email.includes('@') ? email.slice(email.lastIndexOf('@') + 1).toLowerCase() : '',
      kycStatus: subject.user?.kycStatus ?? 'NONE',
    }),
    now: timestampFromDate(subject.now) as unknown as CelInput,
  };
}

/** JSON to CEL input: objects become maps (so any key can be read), nulls stay null. */
function toCel(value: unknown): CelInput {
  if (Array.isArray(value)) return value.map(toCel) as CelInput;
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return new Map(Object.entries(value).map(([k, v]) => [k, toCel(v)])) as unknown as CelInput;
  }
  if (value instanceof Date) return value.toISOString();
  return value as CelInput;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'bigint' || typeof value === 'number') return `the number ${String(value)}`;
  if (typeof value === 'string') return 'a string';
  return 'a value';
}

/** 1-based line and column of a character offset in `text`. */
function positionOf(text: string, offset: number | undefined): { line: number; column: number } | null {
  if (offset === undefined) return null;
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before.at(-1)!.length + 1 };
}

/**
 * What a parsed condition is made of: identifiers not bound by a comprehension (`list.exists(x,
 * …)` binds `x`), with their expression ids (for positions), the deepest comprehension nesting
 * and the number of nodes.
 */
function inspect(expr: unknown): { identifiers: Array<{ name: string; id: bigint | undefined }>; maxNesting: number; deepestId: bigint | undefined; nodes: number } {
  const identifiers: Array<{ name: string; id: bigint | undefined }> = [];
  let maxNesting = 0;
  let deepestId: bigint | undefined;
  let nodes = 0;
  const walk = (node: unknown, bound: ReadonlySet<string>, nesting: number): void => {
    const n = node as { id?: bigint; exprKind?: { case?: string; value?: Record<string, unknown> } } | undefined;
    const kind = n?.exprKind;
    if (!kind?.case || !kind.value) return;
    nodes += 1;
    const v = kind.value;
    switch (kind.case) {
      case 'identExpr':
        if (!bound.has(v.name as string)) identifiers.push({ name: v.name as string, id: n!.id });
        return;
      case 'selectExpr':
        return walk(v.operand, bound, nesting);
      case 'callExpr':
        walk(v.target, bound, nesting);
        for (const arg of (v.args as unknown[]) ?? []) walk(arg, bound, nesting);
        return;
      case 'listExpr':
        for (const element of (v.elements as unknown[]) ?? []) walk(element, bound, nesting);
        return;
      case 'structExpr':
        for (const entry of (v.entries as Array<{ keyKind?: { case?: string; value?: unknown }; value?: unknown }>) ?? []) {
          if (entry.keyKind?.case === 'mapKey') walk(entry.keyKind.value, bound, nesting);
          walk(entry.value, bound, nesting);
        }
        return;
      case 'comprehensionExpr': {
        const depth = nesting + 1;
        if (depth > maxNesting) {
          maxNesting = depth;
          deepestId = n!.id;
        }
        walk(v.iterRange, bound, nesting);
        walk(v.accuInit, bound, depth);
        const inner = new Set([...bound, v.iterVar as string, v.accuVar as string, ...(v.iterVar2 ? [v.iterVar2 as string] : [])]);
        walk(v.loopCondition, inner, depth);
        walk(v.loopStep, inner, depth);
        walk(v.result, inner, depth);
        return;
      }
      default:
        return;
    }
  };
  walk(expr, new Set(), 0);
  return { identifiers, maxNesting, deepestId, nodes };
}
