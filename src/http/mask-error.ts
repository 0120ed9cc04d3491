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
  return (error, message, isDev) => {
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
    if (!unavailable) return yogaMaskError(error, message, isDev);
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
