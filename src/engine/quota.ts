import { createHash } from 'node:crypto';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { RateLimitSubject, RateWindow, RecordedUnit } from './rate-limiter.js';

/**
 * The counters of approval requests (spec §4: every type that needs approval also has a default
 * limit on approval requests per user), one per user per type. Their "type" starts with a
 * character no action type's name has (those are snake_case identifiers), so a counter never
 * shares a key with an action type's own rate limit.
 */
const APPROVAL_REQUESTS = '*approval-requests:';

/** The approval-request subject of a user and type, and its one window. */
export function approvalRequestQuota(spaceId: string, userId: string, type: string, perHour: number): { subject: RateLimitSubject; windows: RateWindow[] } {
  return {
    subject: { spaceId, userId, type: `${APPROVAL_REQUESTS}${type}`, label: `${type} approval requests` },
    windows: [{ limit: perHour, windowSeconds: 3600 }],
  };
}

/**
 * The name of the rate-limit unit an action consumes. With an idempotency key, the unit is named
 * by the key (per principal), so racing duplicates of one request consume one unit; otherwise
 * by the action id. The rebuild from the database names recorded actions the same way.
 */
export function rateUnitId(action: { id: string; requestedById: string; idempotencyKey: string | null }): string {
  if (action.idempotencyKey === null) return action.id;
  const digest = createHash('sha256').update(`${action.requestedById}\0${action.idempotencyKey}`, 'utf8').digest('base64url');
  return `idem:${digest}`;
}

/**
 * The units a subject consumed since `sinceMs`, read from the recorded actions, for the limiter
 * to rebuild a counter Redis lost. Which actions consumed quota: every action recorded for the
 * user (and type) except those refused at creation (`BLOCKED`: a blocked or KYC-refused request
 * consumes nothing). Actions later rejected, cancelled, expired, failed or rolled back still
 * count: they were requested, and the limit is on requests. Rate-limited requests were never
 * recorded, so they do not count either. For the approval-request counter: every recorded
 * action of that type that needed approval (it went to PENDING and asked its user).
 */
export async function recordedUnits(db: PrismaClient, subject: RateLimitSubject, sinceMs: number): Promise<RecordedUnit[]> {
  const rows = await db.action.findMany({
    where: {
      spaceId: subject.spaceId,
      userId: subject.userId,
      ...(subject.type.startsWith(APPROVAL_REQUESTS)
        ? { type: subject.type.slice(APPROVAL_REQUESTS.length), requiresApproval: true }
        : { type: subject.type }),
      status: { not: 'BLOCKED' },
      createdAt: { gt: new Date(sinceMs) },
    },
    select: { id: true, requestedById: true, idempotencyKey: true, createdAt: true },
  });
  return rows.map((a) => ({ unitId: rateUnitId(a), atMs: a.createdAt.getTime() }));
}
