import { describe, expect, it } from 'vitest';
import { PendingScopes } from '../../src/engine/pending-scopes.js';
import type { ActionScopeRow } from '../../src/engine/lifecycle/index.js';

const row = (id: string, status: ActionScopeRow['status'] = 'PENDING'): ActionScopeRow => ({
  id, spaceId: 's', userId: 'u', requestedById: 'p', type: 'noop', priority: 5, scheduledFor: null, revision: 1, approvalsRequired: 1, status, payloadHash: 'h',
});

describe('PendingScopes', () => {
  it('keeps at most its bound, forgetting the oldest first', () => {
    const scopes = new PendingScopes(2);
    scopes.remember(row('a'));
    scopes.remember(row('b'));
    scopes.remember(row('c'));
    expect(scopes.size).toBe(2);
    expect(scopes.get('a')).toBeNull();
    expect(scopes.get('b')?.id).toBe('b');
    expect(scopes.get('c')?.id).toBe('c');
  });

  it('remembering again makes an entry the newest', () => {
    const scopes = new PendingScopes(2);
    scopes.remember(row('a'));
    scopes.remember(row('b'));
    scopes.remember(row('a'));
    scopes.remember(row('c'));
    expect(scopes.get('b')).toBeNull();
    expect(scopes.get('a')?.id).toBe('a');
  });

  it('holds PENDING actions only: another status forgets the action', () => {
    const scopes = new PendingScopes();
    scopes.remember(row('a'));
    scopes.remember(row('a', 'APPROVED'));
    scopes.remember(row('b', 'CANCELLED'));
    expect(scopes.get('a')).toBeNull();
    expect(scopes.get('b')).toBeNull();
    expect(scopes.size).toBe(0);
  });
});
