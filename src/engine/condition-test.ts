import type { Principal } from '../context.js';
import { compileCondition, ConditionError, evaluateCondition } from './conditions.js';
import type { EngineDeps } from './deps.js';
import { loadUser } from './rule-inputs.js';
import { eachRefusal, EngineError, ForbiddenError, InvalidConditionError } from './errors.js';

/** What a rule's condition would say about one sample action. */
export interface ConditionTestResult {
  /** Whether the rule would apply: null when the request itself was refused (`errors`). */
  matches: boolean | null;
  /** Why the condition could not be evaluated on this payload (the rule then applies, as at run time). */
  evaluationError: string | null;
  /** Where a condition that does not compile goes wrong (1-based), when known. */
  line: number | null;
  column: number | null;
  /** Refusals of the request: UNKNOWN_TYPE, INVALID_CONDITION, INVALID_PAYLOAD (one per problem). */
  errors: EngineError[];
}

export interface ConditionTestInput {
  type: string;
  condition: string;
  payload: unknown;
  /** The user the sample action would be for (an id of the caller's space); none: `user` is empty. */
  userId?: string | null;
}

/**
 * The admin's rule tester (issue #11): runs `condition` on a sample action exactly as a safety
 * rule's condition runs when an action is created. The same compiler and checks as
 * `upsertSafetyRule` ({@link compileCondition}: syntax, known variables, size), the payload
 * validated and normalised by the type's schema as `createAction` does, the user read from the
 * caller's space, and {@link evaluateCondition} building the same variables (`payload`, `type`,
 * `user`, `now`) from them. Reads only; writes nothing.
 */
export async function testCondition(deps: Pick<EngineDeps, 'db' | 'types' | 'clock' | 'logger'>, principal: Principal, input: ConditionTestInput): Promise<ConditionTestResult> {
  if (principal.role !== 'ADMIN') throw new ForbiddenError('only admins test rule conditions');
  const result: ConditionTestResult = { matches: null, evaluationError: null, line: null, column: null, errors: [] };
  try {
    deps.types.get(input.type);
  } catch (error) {
    if (!(error instanceof EngineError)) throw error;
    result.errors.push(error);
    return result;
  }
  // The condition and the payload are checked independently, so one answer names both problems.
  try {
    compileCondition(input.condition);
  } catch (error) {
    if (!(error instanceof ConditionError)) throw error;
    result.errors.push(new InvalidConditionError(`condition: ${error.message}`, ['condition']));
    result.line = error.line;
    result.column = error.column;
  }
  let payload: Record<string, unknown> | null = null;
  try {
    payload = deps.types.validate(input.type, input.payload);
  } catch (error) {
    if (!(error instanceof EngineError)) throw error;
    result.errors.push(...eachRefusal(error));
  }
  if (result.errors.length || payload === null) return result;

  // The user as a rule's condition sees them at run time (rule-inputs.ts loadUser: the same fields, read fresh).
  const user = input.userId ? await loadUser(deps, principal.spaceId, input.userId) : null;
  const outcome = evaluateCondition(input.condition, { payload, type: input.type, user, now: deps.clock() });
  result.matches = outcome.applies;
  result.evaluationError = outcome.error;
  return result;
}
