import { eachRefusal, EngineError, RateLimitedError, UnavailableError } from '../engine/errors.js';
import { UNAVAILABLE_RETRY_AFTER_SECONDS, unavailableError } from '../engine/infra-errors.js';
import { builder } from './builder.js';

/** An expected refusal, as spec §10 shapes it. */
export interface UserErrorShape {
  code: string;
  message: string;
  field: string[] | null;
  retryAfterSeconds: number | null;
}

export const UserError = builder.objectRef<UserErrorShape>('UserError').implement({
  description: 'An expected refusal: the request was understood and declined. Nothing was changed unless the payload says otherwise.',
  fields: (t) => ({
    code: t.exposeString('code', {
      description:
        'INVALID_PAYLOAD, UNKNOWN_TYPE, BLOCKED, RATE_LIMITED, KYC_REQUIRED, INVALID_TRANSITION, FORBIDDEN, NOT_FOUND, SAFETY_UNAVAILABLE, IDEMPOTENCY_CONFLICT, INVALID_INPUT, REVOKED or UNAVAILABLE (the database or Redis is unreachable; retry after retryAfterSeconds).',
    }),
    message: t.exposeString('message'),
    field: t.exposeStringList('field', { nullable: true, description: 'Path of the input field at fault, e.g. ["payload", "to", "0"].' }),
    retryAfterSeconds: t.exposeInt('retryAfterSeconds', { nullable: true, description: 'For RATE_LIMITED, SAFETY_UNAVAILABLE and UNAVAILABLE: seconds to wait before trying again.' }),
  }),
});

export function toUserError(error: EngineError): UserErrorShape {
  return {
    code: error.code,
    message: error.message,
    field: error.field ?? null,
    retryAfterSeconds:
      error instanceof RateLimitedError || error instanceof UnavailableError
        ? error.retryAfterSeconds
        : error.code === 'SAFETY_UNAVAILABLE'
          ? UNAVAILABLE_RETRY_AFTER_SECONDS
          : null,
  };
}

/**
 * Runs a mutation's engine call and turns expected refusals into `errors`; anything else is
 * rethrown and masked by Yoga.
 */
export async function asPayload<T extends object>(
  run: () => Promise<T & { errors?: UserErrorShape[] }>,
  empty: T,
): Promise<T & { errors: UserErrorShape[] }> {
  try {
    const result = await run();
    return { errors: [], ...result };
  } catch (error) {
    if (error instanceof EngineError) return { ...empty, errors: eachRefusal(error).map(toUserError) };
    // PostgreSQL or Redis unreachable: a retryable UNAVAILABLE, not "Unexpected error."
    const unavailable = unavailableError(error);
    if (unavailable) return { ...empty, errors: [toUserError(unavailable)] };
    throw error;
  }
}
