import type { Plugin } from 'graphql-yoga';
import { GraphQLError, Kind, type ASTNode, type DocumentNode, type SelectionSetNode, type ValueNode } from 'graphql';
import { controlCharacterProblem } from '../engine/input-text.js';

/** Deepest JSON value accepted anywhere (`payload`, `settings`, `outcome`, variables). */
export const MAX_JSON_DEPTH = 32;

/**
 * What is wrong with one string, or null: a control character other than TAB, LF and CR
 * (NUL, the rest of C0, DEL, C1), or an unpaired surrogate.
 */
export function stringProblem(value: string): string | null {
  const control = controlCharacterProblem(value);
  if (control) return control;
  // A high surrogate not followed by a low one, or a low one not preceded by a high one.
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value)) {
    return 'contains an unpaired UTF-16 surrogate (not valid Unicode text)';
  }
  return null;
}

/** A problem found in a caller's value: where (path from the value's root) and what. */
export interface InputProblem {
  path: string[];
  message: string;
}

/**
 * The first problem in a JSON-like value: a string (or object key) with a control character
 * other than TAB, LF and CR, or an unpaired surrogate, or nesting deeper than `maxDepth`. Iterative, so a 5,000-deep value costs nothing
 * beyond the walk to its 33rd level.
 */
export function findInputProblem(value: unknown, maxDepth = MAX_JSON_DEPTH): InputProblem | null {
  const stack: Array<{ value: unknown; path: string[]; depth: number }> = [{ value, path: [], depth: 0 }];
  while (stack.length) {
    const { value: v, path, depth } = stack.pop()!;
    if (typeof v === 'string') {
      const problem = stringProblem(v);
      if (problem) return { path, message: problem };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= maxDepth) return { path, message: `is nested more than ${maxDepth} levels deep` };
    const entries: Array<[string, unknown]> = Array.isArray(v) ? v.map((item, i) => [String(i), item]) : Object.entries(v);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, item] = entries[i]!;
      const keyProblem = Array.isArray(v) ? null : stringProblem(key);
      if (keyProblem) return { path: [...path, key], message: `has a key that ${keyProblem}` };
      stack.push({ value: item, path: [...path, key], depth: depth + 1 });
    }
  }
  return null;
}

function problemInLiteral(node: ValueNode, path: string[], depth: number): InputProblem | null {
  if (depth > MAX_JSON_DEPTH) return { path, message: `is nested more than ${MAX_JSON_DEPTH} levels deep` };
  switch (node.kind) {
    case Kind.STRING: {
      const problem = stringProblem(node.value);
      return problem ? { path, message: problem } : null;
    }
    case Kind.LIST:
      for (const [i, item] of node.values.entries()) {
        const found = problemInLiteral(item, [...path, String(i)], depth + 1);
        if (found) return found;
      }
      return null;
    case Kind.OBJECT:
      for (const field of node.fields) {
        const found = problemInLiteral(field.value, [...path, field.name.value], depth + 1);
        if (found) return found;
      }
      return null;
    default:
      return null;
  }
}

/** The first problem in the string literals of a document's arguments (path: argument name, then fields). */
function problemInDocument(document: DocumentNode): (InputProblem & { at: string }) | null {
  const fromArguments = (node: ASTNode & { arguments?: readonly { name: { value: string }; value: ValueNode }[] }, at: string) => {
    for (const arg of node.arguments ?? []) {
      const found = problemInLiteral(arg.value, [arg.name.value], 0);
      if (found) return { ...found, at };
    }
    return null;
  };
  const walk = (set: SelectionSetNode | undefined): (InputProblem & { at: string }) | null => {
    for (const selection of set?.selections ?? []) {
      const own = selection.kind === Kind.FIELD ? fromArguments(selection, selection.name.value) : null;
      if (own) return own;
      for (const directive of selection.directives ?? []) {
        const found = fromArguments(directive, `@${directive.name.value}`);
        if (found) return found;
      }
      if ('selectionSet' in selection) {
        const found = walk(selection.selectionSet);
        if (found) return found;
      }
    }
    return null;
  };
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION && definition.kind !== Kind.FRAGMENT_DEFINITION) continue;
    for (const variable of definition.kind === Kind.OPERATION_DEFINITION ? (definition.variableDefinitions ?? []) : []) {
      const found = variable.defaultValue ? problemInLiteral(variable.defaultValue, [variable.variable.name.value], 0) : null;
      if (found) return { ...found, at: `$${variable.variable.name.value}` };
    }
    const found = walk(definition.selectionSet);
    if (found) return found;
  }
  return null;
}

function invalidInput(where: string, problem: InputProblem, field: string[]): GraphQLError {
  return new GraphQLError(`${where}: ${problem.message}`, { extensions: { code: 'INVALID_INPUT', field } });
}

/**
 * Checks every string a caller sends (arguments written in the query and variables, object
 * keys included) for control characters other than TAB, LF and CR (C0, DEL, C1) and unpaired
 * surrogates, and every value for nesting
 * deeper than {@link MAX_JSON_DEPTH}, before the operation runs: over HTTP and graphql-ws
 * alike, it answers with a validation error naming the argument or variable, and nothing runs.
 */
export function useInputGuard(): Plugin {
  // Variables are checked at execute/subscribe, not at validation: Yoga caches validation
  // results by document, and the same document comes with other variables.
  const checkVariables = ({ args, setResultAndStopExecution }: { args: { variableValues?: unknown }; setResultAndStopExecution: (result: { errors: GraphQLError[] }) => void }) => {
    const variables = args.variableValues;
    if (!variables || typeof variables !== 'object') return;
    // Each variable's own JSON value may be MAX_JSON_DEPTH deep; allow for the input objects around it.
    const found = findInputProblem(variables, MAX_JSON_DEPTH + 8);
    if (!found) return;
    // Deeper than the allowance means the JSON value inside is deeper than MAX_JSON_DEPTH.
    const problem = found.message.startsWith('is nested') ? { ...found, message: `is nested more than ${MAX_JSON_DEPTH} levels deep` } : found;
    setResultAndStopExecution({ errors: [invalidInput(`variable $${found.path.join('.')}`, problem, found.path)] });
  };
  return {
    onValidate({ params, setResult }) {
      const literal = problemInDocument(params.documentAST);
      if (literal) setResult([invalidInput(`argument ${literal.at}(${literal.path.join('.')})`, literal, literal.path)]);
    },
    onExecute: checkVariables,
    onSubscribe: checkVariables,
  };
}
