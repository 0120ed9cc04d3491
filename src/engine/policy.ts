import type { Principal } from '../context.js';
import { NotFoundError } from './errors.js';

/** The fields of an action that decide who may see or touch it. */
export interface ActionScope {
  spaceId: string;
  userId: string;
  requestedById: string;
}

/** Roles that see every action of their space. */
const SPACE_WIDE: ReadonlySet<Principal['role']> = new Set(['ADMIN', 'ANALYST', 'OPERATOR']);

/**
 * Who may read an action (spec §9): nobody outside its space; admins, analysts and operators
 * of the space; agents and approvers only for the user they act for.
 */
export function canRead(p: Principal, a: ActionScope): boolean {
  if (p.spaceId !== a.spaceId) return false;
  return SPACE_WIDE.has(p.role) || p.userId === a.userId;
}

/** Only the user's approver decides, and never the principal that requested the action. */
export function canDecide(p: Principal, a: ActionScope): boolean {
  return canRead(p, a) && p.role === 'APPROVER' && p.userId === a.userId && p.id !== a.requestedById;
}

/** The requesting agent may withdraw its request; the user's approvers and admins may cancel. */
export function canCancel(p: Principal, a: ActionScope): boolean {
  if (!canRead(p, a)) return false;
  return p.id === a.requestedById || p.role === 'ADMIN' || (p.role === 'APPROVER' && p.userId === a.userId);
}

/** Rate limits of a user: that user's agents and approvers, and the space's admins and analysts. */
export function canReadUser(p: Principal, user: { spaceId: string; id: string }): boolean {
  if (p.spaceId !== user.spaceId) return false;
  return p.role === 'ADMIN' || p.role === 'ANALYST' || p.userId === user.id;
}

/**
 * Loads-then-checks helper: an action of another space, or one the caller may not read,
 * answers as not found (ids of another space must not be probeable).
 */
export function assertReadable<A extends ActionScope>(p: Principal, a: A | null, id: string): A {
  if (!a || !canRead(p, a)) throw new NotFoundError(`no action with id ${id}`, ['id']);
  return a;
}
