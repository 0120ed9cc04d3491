import { GraphQLError } from 'graphql';
import { maskError as yogaMaskError, type MaskError } from 'graphql-yoga';
import { EngineError } from '../engine/errors.js';
import { briefError, unavailableDependency, unavailableError } from '../engine/infra-errors.js';
import type { Logger } from '../logger.js';

/**
 * Yoga's error mask, with one class of error told apart: PostgreSQL or Redis unreachable (in a
 * resolver, a subscription, or while resolving the caller's key) is answered as a retryable
 * `UNAVAILABLE` GraphQL error with `retryAfterSeconds` (HTTP 503 and `Retry-After`), not as
 * "Unexpected error.". Everything else unexpected stays masked.
 */
export function createMaskError(logger: Logger): MaskError {
  return (error, message) => {
    // Yoga's request parser puts the JSON parser's message (which quotes the body) in
    // `extensions.originalError`: the caller gets the problem, not their input back.
    if (error instanceof GraphQLError && !error.originalError && error.extensions?.originalError) {
      // Replaced in place, not removed: Yoga answers such a request error with 400 (not 200)
      // because it carries one.
      (error.extensions as Record<string, unknown>).originalError = { name: 'BadRequest', message: error.message };
      return error;
    }
    const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
    // An expected refusal thrown outside a mutation payload (a query, a subscription) keeps its
    // code and field.
    if (original instanceof EngineError && !unavailableError(original) && error instanceof GraphQLError) {
      return new GraphQLError(original.message, {
        nodes: error.nodes,
        path: error.path,
        extensions: {
          code: original.code,
          ...(original.field ? { field: original.field } : {}),
          ...('retryAfterSeconds' in original ? { retryAfterSeconds: original.retryAfterSeconds } : {}),
        },
      });
    }
    const unavailable = unavailableError(original);
    // Never in development mode either: `extensions.originalError` would echo a caller's input
    // (a malformed body) and the machine's details back.
    if (!unavailable) return yogaMaskError(error, message, false);
    logger.warn({ dependency: unavailableDependency(original), err: briefError(original) }, 'request met an unavailable dependency');
    const located = error instanceof GraphQLError ? error : null;
    return new GraphQLError(unavailable.message, {
      nodes: located?.nodes,
      source: located?.source,
      positions: located?.positions,
      path: located?.path,
      extensions: {
        code: 'UNAVAILABLE',
        retryAfterSeconds: unavailable.retryAfterSeconds,
        http: { status: 503, headers: { 'retry-after': String(unavailable.retryAfterSeconds) } },
      },
    });
  };
}
