import type { Principal } from '../context.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { ActionStatus } from '../generated/prisma/enums.js';
import { ForbiddenError, InvalidInputError } from './errors.js';
import { prismaRunner } from './lifecycle/committer.js';
import { ACTION_STATUSES } from './statuses.js';

/**
 * The numbers behind the console's overview (issue #11): actions created in a window by status,
 * type and time bucket; how long approvals took; how handlers fared; and how much work is waiting
 * now. Four aggregate statements, each served by an index (see {@link statsStatements}), scoped
 * to the caller's space (and, for an approver, to the one user it acts for).
 */

/** Width of one point of `series`: whole UTC minutes, hours or days. */
export type StatsBucket = 'MINUTE' | 'HOUR' | 'DAY';
export const STATS_BUCKETS = ['MINUTE', 'HOUR', 'DAY'] as const satisfies readonly StatsBucket[];

const BUCKET_MS: Record<StatsBucket, number> = { MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 };
const BUCKET_UNIT: Record<StatsBucket, string> = { MINUTE: 'minute', HOUR: 'hour', DAY: 'day' };

/** Longest window accepted, in days. */
export const MAX_STATS_WINDOW_DAYS = 93;
/** Most buckets a window may cut into. */
export const MAX_STATS_BUCKETS = 2000;
/** The window when `from` is not given: the 24 hours before `to`. */
export const DEFAULT_STATS_WINDOW_MS = 24 * 3_600_000;

/** The half-open window [from, to) and the width of its buckets. */
export interface StatsWindow {
  from: Date;
  to: Date;
  bucket: StatsBucket;
}

/** Whose actions are counted: one space, and for an approver only its user's actions. */
export interface StatsScope {
  spaceId: string;
  /** Null: every user of the space. */
  userId: string | null;
}

export interface StatusCount {
  status: ActionStatus;
  count: number;
}
export interface TypeCount {
  type: string;
  count: number;
}
export interface StatsPoint {
  bucketStart: Date;
  type: string;
  status: ActionStatus;
  count: number;
}
export interface ApprovalWaitStats {
  count: number;
  p50Seconds: number | null;
  p90Seconds: number | null;
  maxSeconds: number | null;
}
export interface HandlerStats {
  handler: string;
  attempts: number;
  succeeded: number;
  failed: number;
  fellBack: number;
  unfinished: number;
  successRate: number;
  fallbackRate: number;
}
export interface QueueDepth {
  pendingApproval: number;
  queued: number;
  scheduled: number;
  executing: number;
  waitingOnProvider: number;
  waitingOnOperator: number;
  openManualTasks: number;
}
export interface ActionStats extends StatsWindow {
  total: number;
  byStatus: StatusCount[];
  byType: TypeCount[];
  series: StatsPoint[];
  approvalWait: ApprovalWaitStats;
  handlers: HandlerStats[];
  queue: QueueDepth;
}

/**
 * Who may read the overview, and over what: admins, analysts and operators read every action
 * of their space, so their overview is the space's; an approver reads its one user's actions, so
 * its overview counts only those (the same rows `actions` shows it). Agents are refused: the
 * overview is for people, an agent follows its own actions by id (`action`, `actionStatus`, MCP
 * `get_action`), and a wide aggregate read is nothing an automated caller should run in a loop.
 */
export function statsScope(p: Principal): StatsScope {
  switch (p.role) {
    case 'ADMIN':
    case 'ANALYST':
    case 'OPERATOR':
      return { spaceId: p.spaceId, userId: null };
    case 'APPROVER':
      if (!p.userId) throw new ForbiddenError('this approver key acts for no user, so it has no actions to count');
      return { spaceId: p.spaceId, userId: p.userId };
    case 'AGENT':
      throw new ForbiddenError('agents may not read the overview statistics: follow your own actions with `action` or `actionStatus`');
    default: {
      const never: never = p.role;
      throw new Error(`unknown role ${String(never)}`);
    }
  }
}

/** How many buckets of `bucket` the window [from, to) touches (the first and last may be partial). */
export function bucketCount(window: StatsWindow): number {
  const width = BUCKET_MS[window.bucket];
  // Buckets are aligned to the Unix epoch, which is aligned to UTC minutes, hours and days.
  return Math.floor((window.to.getTime() - 1) / width) - Math.floor(window.from.getTime() / width) + 1;
}

/**
 * The window asked for, with its defaults (`to` now, `from` 24 hours before `to`, HOUR
 * buckets), or an {@link InvalidInputError} naming the argument: `from` not before `to`, a
 * window longer than {@link MAX_STATS_WINDOW_DAYS} days, or more than {@link MAX_STATS_BUCKETS}
 * buckets.
 */
export function statsWindow(args: { from?: Date | null; to?: Date | null; bucket?: StatsBucket | null }, now: Date): StatsWindow {
  const to = args.to ?? now;
  const from = args.from ?? new Date(to.getTime() - DEFAULT_STATS_WINDOW_MS);
  const bucket = args.bucket ?? 'HOUR';
  if (from.getTime() >= to.getTime()) {
    throw new InvalidInputError(
      `from (${from.toISOString()}) must be before to (${to.toISOString()})${args.to ? '' : ', which defaults to now'}`,
      ['from'],
    );
  }
  const days = (to.getTime() - from.getTime()) / 86_400_000;
  if (days > MAX_STATS_WINDOW_DAYS) {
    throw new InvalidInputError(
      `the window from ${from.toISOString()} to ${to.toISOString()} is ${formatDays(days)} days long; at most ${MAX_STATS_WINDOW_DAYS} days are allowed: move from closer to to`,
      ['from'],
    );
  }
  const window = { from, to, bucket };
  const buckets = bucketCount(window);
  if (buckets > MAX_STATS_BUCKETS) {
    const wider = STATS_BUCKETS.filter((b) => BUCKET_MS[b] > BUCKET_MS[bucket]).join(' or ');
    throw new InvalidInputError(
      `bucket ${bucket} cuts the window from ${from.toISOString()} to ${to.toISOString()} into ${buckets.toLocaleString('en-US')} buckets; at most ${MAX_STATS_BUCKETS.toLocaleString('en-US')} are allowed: choose ${wider ? `a wider bucket (${wider}) or ` : ''}a shorter window`,
      ['bucket'],
    );
  }
  return window;
}

function formatDays(days: number): string {
  return Number.isInteger(days) ? String(days) : days.toFixed(days < MAX_STATS_WINDOW_DAYS + 1 ? 3 : 1);
}

/** One SQL statement and its parameters. */
export interface StatsStatement {
  text: string;
  values: unknown[];
}

/**
 * The four statements, each named by the part of {@link ActionStats} it fills, and the index
 * that serves it (tests/integration/stats.test.ts checks the plans use an index):
 *
 * - `created`: `Action (spaceId, createdAt)`; counts per UTC bucket × type × current status;
 * - `approvalWait`: `Action (spaceId, decidedAt)`;
 * - `handlers`: the window's actions as for `created`, each joined to its executions by
 *   `Execution (actionId, startedAt)`, which also shows whether the chain moved on (the work
 *   grows with the caller's space only, never with other tenants' traffic);
 * - `queue`: `Action (spaceId, status, createdAt)` for the statuses in flight, `ManualTask
 *   (spaceId, status, createdAt)`, and per executing action `Execution (actionId, startedAt)` and
 *   `ManualTask (actionId)`.
 *
 * An approver's variant adds `"userId" = …` to each. They are sent unnamed (see readStats), so
 * PostgreSQL plans each for the window it is given.
 */
export function statsStatements(scope: StatsScope, window: StatsWindow, now: Date): Record<'created' | 'approvalWait' | 'handlers' | 'queue', StatsStatement> {
  const own = scope.userId !== null;
  const range = [scope.spaceId, window.from.toISOString(), window.to.toISOString()];
  const user = (alias: string, param: number) => (own ? ` AND ${alias}."userId" = $${param}::uuid` : '');
  const withUser = (values: unknown[]) => (own ? [...values, scope.userId] : values);
  return {
    created: {
      text: `SELECT date_trunc($4::text, a."createdAt", 'UTC') AS "bucketStart", a."type", a."status"::text AS "status", count(*)::int AS "count"
        FROM "Action" a
        WHERE a."spaceId" = $1::uuid AND a."createdAt" >= $2::timestamptz AND a."createdAt" < $3::timestamptz${user('a', 5)}
        GROUP BY 1, a."type", a."status"
        ORDER BY 1, a."type", a."status"`,
      values: withUser([...range, BUCKET_UNIT[window.bucket]]),
    },
    approvalWait: {
      // Approved or rejected (by an approver or an approval link) within the window. A cancelled
      // action is left out: cancelling records its own time in decidedAt, over an approval's.
      text: `SELECT count(*)::int AS "count",
          percentile_cont(0.5) WITHIN GROUP (ORDER BY d."wait") AS "p50",
          percentile_cont(0.9) WITHIN GROUP (ORDER BY d."wait") AS "p90",
          max(d."wait") AS "max"
        FROM (
          SELECT extract(epoch FROM a."decidedAt" - a."createdAt")::float8 AS "wait"
          FROM "Action" a
          WHERE a."spaceId" = $1::uuid AND a."decidedAt" >= $2::timestamptz AND a."decidedAt" < $3::timestamptz
            AND a."requiresApproval" AND a."status" NOT IN ('CANCELLED', 'PENDING')${user('a', 4)}
        ) d`,
      values: withUser(range),
    },
    handlers: {
      // A failure "fell back" when it was permanent and the chain went on in the same attempt: a
      // later handler's execution exists (a retry is a new attempt, not a fallback).
      text: `SELECT e."handler",
          count(*)::int AS "attempts",
          count(*) FILTER (WHERE e."status" = 'SUCCEEDED')::int AS "succeeded",
          count(*) FILTER (WHERE e."status" = 'FAILED')::int AS "failed",
          count(*) FILTER (WHERE e."status" = 'FAILED' AND e."permanent" AND EXISTS (
            SELECT 1 FROM "Execution" n
            WHERE n."actionId" = e."actionId" AND n."attempt" = e."attempt" AND n."handler" <> e."handler" AND n."startedAt" >= e."startedAt"
          ))::int AS "fellBack"
        FROM "Action" a
        JOIN "Execution" e ON e."actionId" = a."id"
        WHERE a."spaceId" = $1::uuid AND a."createdAt" >= $2::timestamptz AND a."createdAt" < $3::timestamptz${user('a', 4)}
        GROUP BY e."handler"
        ORDER BY e."handler"`,
      values: withUser(range),
    },
    queue: {
      text: `SELECT
          count(*) FILTER (WHERE a."status" = 'PENDING')::int AS "pendingApproval",
          count(*) FILTER (WHERE a."status" = 'APPROVED')::int AS "queued",
          count(*) FILTER (WHERE a."status" = 'APPROVED' AND a."scheduledFor" > $2::timestamptz)::int AS "scheduled",
          count(*) FILTER (WHERE a."status" = 'EXECUTING' AND NOT w."operator" AND NOT w."provider")::int AS "executing",
          count(*) FILTER (WHERE a."status" = 'EXECUTING' AND NOT w."operator" AND w."provider")::int AS "waitingOnProvider",
          count(*) FILTER (WHERE a."status" = 'EXECUTING' AND w."operator")::int AS "waitingOnOperator",
          (SELECT count(*)::int FROM "ManualTask" m
            WHERE m."spaceId" = $1::uuid AND m."status" = 'OPEN'${own ? ` AND EXISTS (SELECT 1 FROM "Action" t WHERE t."id" = m."actionId" AND t."userId" = $3::uuid)` : ''}) AS "openManualTasks"
        FROM "Action" a
        CROSS JOIN LATERAL (
          SELECT
            CASE WHEN a."status" = 'EXECUTING' THEN EXISTS (SELECT 1 FROM "ManualTask" m WHERE m."actionId" = a."id" AND m."status" = 'OPEN') ELSE false END AS "operator",
            CASE WHEN a."status" = 'EXECUTING' THEN EXISTS (SELECT 1 FROM "Execution" x WHERE x."actionId" = a."id" AND x."status" = 'WAITING') ELSE false END AS "provider"
        ) w
        WHERE a."spaceId" = $1::uuid AND a."status" IN ('PENDING', 'APPROVED', 'EXECUTING')${user('a', 3)}`,
      values: withUser([scope.spaceId, now.toISOString()]),
    },
  };
}

interface CreatedRow {
  bucketStart: Date | string;
  type: string;
  status: ActionStatus;
  count: number;
}
interface WaitRow {
  count: number;
  p50: number | null;
  p90: number | null;
  max: number | null;
}
interface HandlerRow {
  handler: string;
  attempts: number;
  succeeded: number;
  failed: number;
  fellBack: number;
}
type QueueRow = { [K in keyof QueueDepth]: number };

/** Reads the overview for `scope` over `window` (queue depth as of `now`). */
export async function readStats(db: PrismaClient, scope: StatsScope, window: StatsWindow, now: Date): Promise<ActionStats> {
  const sql = prismaRunner(db);
  const statements = statsStatements(scope, window, now);
  // Unnamed, so planned for their window each time: a day and 93 days may want different plans,
  // and a named statement may settle on one generic plan after five runs.
  const planEach = { planEach: true };
  const [created, waits, handlers, queues] = await Promise.all([
    sql.query<CreatedRow>(statements.created.text, statements.created.values, planEach),
    sql.query<WaitRow>(statements.approvalWait.text, statements.approvalWait.values, planEach),
    sql.query<HandlerRow>(statements.handlers.text, statements.handlers.values, planEach),
    sql.query<QueueRow>(statements.queue.text, statements.queue.values, planEach),
  ]);

  const series = created.map((r) => ({ bucketStart: new Date(r.bucketStart), type: r.type, status: r.status, count: Number(r.count) }));
  const byStatus = new Map<ActionStatus, number>();
  const byType = new Map<string, number>();
  for (const p of series) {
    byStatus.set(p.status, (byStatus.get(p.status) ?? 0) + p.count);
    byType.set(p.type, (byType.get(p.type) ?? 0) + p.count);
  }
  const wait = waits[0];
  const queue = queues[0];
  // Timestamps are kept to the millisecond: so are the waits (interpolation adds float noise below it).
  const seconds = (v: number | null | undefined) => (v === null || v === undefined ? null : Math.round(Number(v) * 1000) / 1000);
  return {
    ...window,
    total: series.reduce((sum, p) => sum + p.count, 0),
    byStatus: ACTION_STATUSES.filter((s) => byStatus.has(s)).map((status) => ({ status, count: byStatus.get(status)! })),
    byType: [...byType].map(([type, count]) => ({ type, count })).sort((a, b) => b.count - a.count || (a.type < b.type ? -1 : 1)),
    series,
    approvalWait: {
      count: Number(wait?.count ?? 0),
      p50Seconds: seconds(wait?.p50),
      p90Seconds: seconds(wait?.p90),
      maxSeconds: seconds(wait?.max),
    },
    handlers: handlers.map((r) => {
      const [attempts, succeeded, failed, fellBack] = [r.attempts, r.succeeded, r.failed, r.fellBack].map(Number) as [number, number, number, number];
      const finished = succeeded + failed;
      return {
        handler: r.handler,
        attempts,
        succeeded,
        failed,
        fellBack,
        unfinished: attempts - finished,
        successRate: finished ? succeeded / finished : 0,
        fallbackRate: finished ? fellBack / finished : 0,
      };
    }),
    queue: {
      pendingApproval: Number(queue?.pendingApproval ?? 0),
      queued: Number(queue?.queued ?? 0),
      scheduled: Number(queue?.scheduled ?? 0),
      executing: Number(queue?.executing ?? 0),
      waitingOnProvider: Number(queue?.waitingOnProvider ?? 0),
      waitingOnOperator: Number(queue?.waitingOnOperator ?? 0),
      openManualTasks: Number(queue?.openManualTasks ?? 0),
    },
  };
}
