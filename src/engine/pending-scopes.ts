import type { ActionScopeRow } from './lifecycle/index.js';

/** How many PENDING actions' scopes one process remembers (about 0.5 kB each). */
const MAX_PENDING_SCOPES = 10_000;

/**
 * What this process last wrote of PENDING actions, so that deciding one does not read it again
 * first. The lifecycle writer keeps it: remembered at creation and by any step here that leaves an
 * action PENDING (a recorded approval, an edit, a note), forgotten by any other step here. Only a
 * hint: who may decide it (space, user, requester), its type, priority and schedule never change
 * while it is PENDING; its status and revision may have moved on in another process, which the
 * decision's statement checks (status and `revisionIs` guards). A decision that did not move is
 * made again from a fresh read (see decideAction), so a stale entry costs a round trip and never
 * changes an answer. Oldest entries go first beyond the cap.
 */
export class PendingScopes {
  private readonly rows = new Map<string, ActionScopeRow>();

  constructor(private readonly max = MAX_PENDING_SCOPES) {}

  /** Remembers a PENDING action's scope (any other status: forgets it, nothing is left to decide). */
  remember(row: ActionScopeRow): void {
    this.rows.delete(row.id);
    if (row.status !== 'PENDING') return;
    this.rows.set(row.id, row);
    if (this.rows.size > this.max) this.rows.delete(this.rows.keys().next().value!);
  }

  get(id: string): ActionScopeRow | null {
    return this.rows.get(id) ?? null;
  }

  forget(id: string): void {
    this.rows.delete(id);
  }

  get size(): number {
    return this.rows.size;
  }
}

/** The scope columns of a full action row. */
export function scopeOf(action: ActionScopeRow): ActionScopeRow {
  const { id, spaceId, userId, requestedById, type, priority, scheduledFor, revision, approvalsRequired, status, payloadHash } = action;
  return { id, spaceId, userId, requestedById, type, priority, scheduledFor, revision, approvalsRequired, status, payloadHash };
}
