import { GraphQLError, Kind, visit, type DocumentNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { GraphQLContext } from '../context.js';

/** Whether a document asks for `__schema` or `__type` anywhere (fragments included); `__typename` is fine. */
export function asksForIntrospection(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    [Kind.FIELD](node) {
      if (node.name.value === '__schema' || node.name.value === '__type') {
        found = true;
        return false;
      }
      return undefined;
    },
  });
  return found;
}

/**
 * Introspection needs a valid key: only `apiVersion` is public (README). Checked at execution,
 * after the caller is resolved, for HTTP and graphql-ws alike.
 */
export function useIntrospectionNeedsKey(): Plugin<GraphQLContext> {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const ctx = args.contextValue as Partial<GraphQLContext>;
      if (ctx.principal || !asksForIntrospection(args.document)) return;
      setResultAndStopExecution({
        errors: [
          new GraphQLError('authentication required for introspection: send "Authorization: Bearer <API key>"', {
            extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
          }),
        ],
      });
    },
  };
}
