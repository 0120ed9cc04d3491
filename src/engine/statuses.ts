import type { ActionStatus } from '../generated/prisma/enums.js';
import { InvalidTransitionError } from './errors.js';

export type { ActionStatus };

/** Every status, in the order of spec §10's enum. */
export const ACTION_STATUSES = [
  'PENDING',
  'APPROVED',
  'REJECTED',
  'EXECUTING',
  'COMPLETED',
  'FAILED',
  'ROLLED_BACK',
  'BLOCKED',
  'EXPIRED',
  'CANCELLED',
] as const satisfies readonly ActionStatus[];

/**
 * The whole state machine of spec §3: for each status, where it may go. A status missing
 * from this table is a compile error (the `Record` is exhaustive).
 */
export const TRANSITIONS: Readonly<Record<ActionStatus, readonly ActionStatus[]>> = {
  PENDING: ['APPROVED', 'REJECTED', 'EXPIRED', 'CANCELLED'],
  // FAILED: refused by the recheck right before dispatch (spec §5), nothing executed.
  APPROVED: ['EXECUTING', 'CANCELLED', 'FAILED'],
  EXECUTING: ['COMPLETED', 'FAILED'],
  COMPLETED: ['ROLLED_BACK'],
  REJECTED: [],
  FAILED: [],
  ROLLED_BACK: [],
  BLOCKED: [],
  EXPIRED: [],
  CANCELLED: [],
};

/** Statuses an action never leaves. */
export function isTerminal(status: ActionStatus): boolean {
  return TRANSITIONS[status].length === 0;
}

export function canTransition(from: ActionStatus, to: ActionStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Throws {@link InvalidTransitionError} naming both statuses when the move is not allowed. */
export function assertTransition(from: ActionStatus, to: ActionStatus): void {
  if (!canTransition(from, to)) {
    const allowed = TRANSITIONS[from];
    throw new InvalidTransitionError(
      `cannot move an action from ${from} to ${to}` +
        (allowed.length ? ` (from ${from} it may go to ${allowed.join(', ')})` : ` (${from} is final)`),
    );
  }
}

/** The status an action is created in, from the safety verdict. */
export function initialStatus(verdict: { blocked: boolean; requiresApproval: boolean }): ActionStatus {
  if (verdict.blocked) return 'BLOCKED';
  return verdict.requiresApproval ? 'PENDING' : 'APPROVED';
}
