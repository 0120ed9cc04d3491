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
  const unknown = freeIdentifiers(parsed.expr).filter((name) => !(CONDITION_VARIABLES as readonly string[]).includes(name));
  if (unknown.length) {
    throw new ConditionError(`unknown variable ${unknown.map((n) => `"${n}"`).join(', ')}: a condition may use ${CONDITION_VARIABLES.join(', ')}`);
  }
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

/** Identifiers of `expr` not bound by a comprehension (`list.exists(x, …)` binds `x`). */
function freeIdentifiers(expr: unknown): string[] {
  const found = new Set<string>();
  const walk = (node: unknown, bound: ReadonlySet<string>): void => {
    const kind = (node as { exprKind?: { case?: string; value?: Record<string, unknown> } } | undefined)?.exprKind;
    if (!kind?.case || !kind.value) return;
    const v = kind.value;
    switch (kind.case) {
      case 'identExpr':
        if (!bound.has(v.name as string)) found.add(v.name as string);
        return;
      case 'selectExpr':
        return walk(v.operand, bound);
      case 'callExpr':
        walk(v.target, bound);
        for (const arg of (v.args as unknown[]) ?? []) walk(arg, bound);
        return;
      case 'listExpr':
        for (const element of (v.elements as unknown[]) ?? []) walk(element, bound);
        return;
      case 'structExpr':
        for (const entry of (v.entries as Array<{ keyKind?: { case?: string; value?: unknown }; value?: unknown }>) ?? []) {
          if (entry.keyKind?.case === 'mapKey') walk(entry.keyKind.value, bound);
          walk(entry.value, bound);
        }
        return;
      case 'comprehensionExpr': {
        walk(v.iterRange, bound);
        walk(v.accuInit, bound);
        const inner = new Set([...bound, v.iterVar as string, v.accuVar as string, ...(v.iterVar2 ? [v.iterVar2 as string] : [])]);
        walk(v.loopCondition, inner);
        walk(v.loopStep, inner);
        walk(v.result, inner);
        return;
      }
      default:
        return;
    }
  };
  walk(expr, new Set());
  return [...found];
}
