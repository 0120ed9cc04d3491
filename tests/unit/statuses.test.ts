import { describe, expect, it } from 'vitest';
import { InvalidTransitionError } from '../../src/engine/errors.js';
import { ACTION_STATUSES, assertTransition, canTransition, initialStatus, isTerminal } from '../../src/engine/statuses.js';

/** Spec §3, written out independently of the module's table. */
const ALLOWED = new Set([
  'PENDING>APPROVED',
  'PENDING>REJECTED',
  'PENDING>EXPIRED',
  'PENDING>CANCELLED',
  'APPROVED>EXECUTING',
  'APPROVED>CANCELLED',
  'APPROVED>FAILED', // spec §5 recheck at dispatch: refused before any handler runs
  'EXECUTING>COMPLETED',
  'EXECUTING>FAILED',
  'COMPLETED>ROLLED_BACK',
]);

describe('the action state machine', () => {
  it('allows exactly the transitions of spec §3, for every pair of statuses', () => {
    for (const from of ACTION_STATUSES) {
      for (const to of ACTION_STATUSES) {
        expect(canTransition(from, to), `${from} → ${to}`).toBe(ALLOWED.has(`${from}>${to}`));
      }
    }
  });

  it('refuses any other move with INVALID_TRANSITION naming both statuses', () => {
    let caught: unknown;
    try {
      assertTransition('COMPLETED', 'APPROVED');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidTransitionError);
    expect((caught as InvalidTransitionError).code).toBe('INVALID_TRANSITION');
    expect((caught as Error).message).toMatch(/from COMPLETED to APPROVED/);
    expect((caught as Error).message).toMatch(/ROLLED_BACK/);
    expect(() => assertTransition('BLOCKED', 'APPROVED')).toThrow(/BLOCKED is final/);
  });

  it('calls final exactly the statuses with no way out', () => {
    expect(ACTION_STATUSES.filter(isTerminal).sort()).toEqual(['BLOCKED', 'CANCELLED', 'EXPIRED', 'FAILED', 'REJECTED', 'ROLLED_BACK']);
  });

  it('starts an action BLOCKED, PENDING or APPROVED from the safety verdict', () => {
    expect(initialStatus({ blocked: true, requiresApproval: true })).toBe('BLOCKED');
    expect(initialStatus({ blocked: false, requiresApproval: true })).toBe('PENDING');
    expect(initialStatus({ blocked: false, requiresApproval: false })).toBe('APPROVED');
  });
});
