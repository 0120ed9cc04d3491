/**
 * Expected refusals. Each carries the `UserError.code` of spec §10; the API turns them into
 * `UserError`s in mutation payloads. Anything else is unexpected and stays masked.
 */
export type UserErrorCode =
  | 'INVALID_PAYLOAD'
  | 'UNKNOWN_TYPE'
  | 'BLOCKED'
  | 'RATE_LIMITED'
  | 'KYC_REQUIRED'
  | 'INVALID_TRANSITION'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'SAFETY_UNAVAILABLE'
  | 'IDEMPOTENCY_CONFLICT'
  | 'NOT_REVERSIBLE'
  | 'INVALID_INPUT'
  | 'INVALID_CONDITION'
  | 'REVOKED'
  | 'UNAVAILABLE';

export abstract class EngineError extends Error {
  abstract readonly code: UserErrorCode;
  /** Path of the offending input field, e.g. ['payload', 'to', 0]. */
  readonly field: string[] | undefined;
  constructor(message: string, field?: Array<string | number>) {
    super(message);
    this.name = new.target.name;
    this.field = field?.map(String);
  }
}

export class InvalidPayloadError extends EngineError {
  readonly code = 'INVALID_PAYLOAD';
}
export class UnknownTypeError extends EngineError {
  readonly code = 'UNKNOWN_TYPE';
}
export class BlockedError extends EngineError {
  readonly code = 'BLOCKED';
}
export class KycRequiredError extends EngineError {
  readonly code = 'KYC_REQUIRED';
}
export class RateLimitedError extends EngineError {
  readonly code = 'RATE_LIMITED';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}
export class InvalidTransitionError extends EngineError {
  readonly code = 'INVALID_TRANSITION';
}
export class ForbiddenError extends EngineError {
  readonly code = 'FORBIDDEN';
}
export class NotFoundError extends EngineError {
  readonly code = 'NOT_FOUND';
}
/** Rules or counters could not be read: the safety layer fails closed. Retryable. */
export class SafetyUnavailableError extends EngineError {
  readonly code = 'SAFETY_UNAVAILABLE';
}
export class IdempotencyConflictError extends EngineError {
  readonly code = 'IDEMPOTENCY_CONFLICT';
}
export class InvalidInputError extends EngineError {
  readonly code = 'INVALID_INPUT';
}
/** A safety rule's condition does not compile; the message says where (line and column) and why. */
export class InvalidConditionError extends EngineError {
  readonly code = 'INVALID_CONDITION';
}
/** The thing was already revoked (an API key): nothing changed. */
export class RevokedError extends EngineError {
  readonly code = 'REVOKED';
}

/** Every problem of a payload at once: one {@link InvalidPayloadError} per issue, in `errors`. */
export class PayloadErrors extends InvalidPayloadError {
  constructor(readonly errors: InvalidPayloadError[]) {
    super(errors.map((e) => e.message).join('; '), errors[0]?.field);
  }
}

/** The refusals an error stands for: each of a {@link PayloadErrors}, else the error itself. */
export function eachRefusal(error: EngineError): EngineError[] {
  return error instanceof PayloadErrors && error.errors.length ? error.errors : [error];
}
/** The service's own database or Redis is unreachable right now: nothing is wrong with the request. Retryable. */
export class UnavailableError extends EngineError {
  readonly code = 'UNAVAILABLE';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}
