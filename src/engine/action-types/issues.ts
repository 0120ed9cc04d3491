import type { z } from 'zod';
import { InvalidPayloadError } from '../errors.js';
import { shortInput } from '../input-text.js';

/**
 * One {@link InvalidPayloadError} per zod issue, each naming its field under `root` (e.g.
 * `payload.to.0`) and the rule broken; an unknown field is named on that field.
 */
export function issueErrors(issues: readonly z.core.$ZodIssue[], root: string): InvalidPayloadError[] {
  return issues.flatMap((issue) => {
    const path = issue.path.map(String);
    const at = (p: string[], message: string) => new InvalidPayloadError(`${[root, ...p].join('.')}: ${message}`, [root, ...p]);
    if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => at([...path, key], `unknown field ${shortInput(key)}`));
    return [at(path, describeIssue(issue))];
  });
}

/** A JSON value's kind, as a caller would name it. */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number') return Number.isInteger(value) ? 'a whole number' : 'a number';
  return `a ${typeof value}`;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'an array',
  object: 'an object',
};

/** What a zod issue says was wrong, in the words of our other errors (`is required`, `must be at most 10 characters`). */
export function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      return `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${kindOf(issue.input)}`;
    case 'unrecognized_keys':
      return `unknown field(s) ${issue.keys.map((k) => shortInput(k)).join(', ')}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      if (issue.origin === 'string') return issue.minimum === 1 ? 'must not be empty' : `must be at least ${issue.minimum} characters`;
      if (issue.origin === 'array') return issue.message.startsWith('Too small') ? `needs at least ${issue.minimum} item(s)` : issue.message;
      return issue.message.startsWith('Too small') ? `must be ${issue.inclusive ? 'at least' : 'more than'} ${issue.minimum}` : issue.message;
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${issue.maximum} characters`;
      if (issue.origin === 'array') return `must have at most ${issue.maximum} items`;
      return `must be ${issue.inclusive ? 'at most' : 'less than'} ${issue.maximum}`;
    default:
      return issue.message;
  }
}
