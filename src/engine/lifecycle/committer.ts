import { createHash } from 'node:crypto';
import type pg from 'pg';
import { poolOf } from '../../db/prisma-client.js';
import type { Action, Prisma, PrismaClient } from '../../generated/prisma/client.js';
import { briefError, isSocketError, PostgresUnavailableError, unavailableDependency } from '../infra-errors.js';
import type { ActionStatus } from '../../generated/prisma/enums.js';
import { auditLink, prepareAuditEntries, type AuditInput } from '../audit.js';
import { actionAuditSql, SqlParams } from './audit-sql.js';
import type { Guard, Plan, Write } from './planner.js';

/** Runs one SQL statement (on the client, or inside the caller's transaction). */
export interface SqlRunner {
  /**
   * `planEach`: send it unnamed, so that PostgreSQL plans it for the values given every time (for
   * a statement whose best plan depends on them, such as a time window). By default it is a named
   * prepared statement, parsed once per connection (see newPoolRunner).
   */
  query<T>(text: string, values: readonly unknown[], options?: { planEach?: boolean }): Promise<T[]>;
}

/**
 * The runner for `db`: on a client of createPrismaClient, statements go to its node-postgres pool
 * directly (the same connections, without a round through Prisma's query engine); inside a
 * transaction, through Prisma's raw query on that transaction.
 */
export function prismaRunner(db: PrismaClient | Prisma.TransactionClient): SqlRunner {
  const pool = poolOf(db);
  if (pool) return poolRunner(pool);
  return { query: <T>(text: string, values: readonly unknown[]) => db.$queryRawUnsafe<T[]>(text, ...values) };
}

/**
 * Statements go as named prepared statements (named by a hash of their text) unless asked to be
 * planned each time: each connection parses a shape once, then only binds and executes it. The
 * writer has a few dozen shapes (one per step kind and number of status updates, audit entries
 * and rows).
 */
const runners = new WeakMap<pg.Pool, SqlRunner>();

/** SQLSTATEs of a statement that lost to another one and may simply run again: deadlock, serialization failure. */
const RETRYABLE_STATES = new Set(['40P01', '40001']);

function poolRunner(pool: pg.Pool): SqlRunner {
  let runner = runners.get(pool);
  if (!runner) runners.set(pool, (runner = newPoolRunner(pool)));
  return runner;
}

function newPoolRunner(pool: pg.Pool): SqlRunner {
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (!name) {
      name = `ae_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
      // Bounded: shapes are few, but never let an unexpected variety grow the map without end.
      if (names.size > 10_000) names.clear();
      names.set(text, name);
    }
    return name;
  };
  return {
    async query<T>(text: string, values: readonly unknown[], options?: { planEach?: boolean }): Promise<T[]> {
      const name = options?.planEach ? undefined : nameOf(text);
      const run = async () => (await pool.query({ name, text, values: values as unknown[] })).rows as T[];
      try {
        try {
          return await run();
        } catch (error) {
          // One statement is one transaction here: nothing of it was written, so it can run again once.
          if (RETRYABLE_STATES.has((error as { code?: string }).code ?? '')) return await run();
          throw error;
        }
      } catch (error) {
        // A lost or unobtainable connection is an outage of ours, whoever called (see infra-errors).
        if (unavailableDependency(error) === 'postgres' || isSocketError(error)) {
          throw new PostgresUnavailableError(`PostgreSQL is unavailable: ${briefError(error)}`, { cause: error });
        }
        throw error;
      }
    },
  };
}

/** What one committed step did. */
export interface CommitResult {
  /** The action after the move; null when the move did not happen (status or guard). */
  action: Action | null;
  /** The status the action had when the statement locked it. */
  previous: ActionStatus;
  /** Its scheduled time (why a claim was not due). */
  scheduledFor: Date | null;
  /** The process running it without a queue job, as found (why a claim of an EXECUTING action must not resume it). */
  runner: string | null;
  /** Webhook endpoints that got new deliveries from this step (null: none). */
  webhooks: string[] | null;
}

/** Every column of "Action", named (never `*`: a prepared statement must not change its result type when a column is added). */
const ACTION_COLUMNS = [
  'id', 'spaceId', 'userId', 'requestedById', 'type', 'payload', 'payloadHash', 'priority', 'scheduledFor', 'idempotencyKey', 'status',
  'statusSeq', 'requiresApproval', 'attempts', 'result', 'error', 'createdAt', 'updatedAt', 'approvalExpiresAt', 'decidedAt', 'decidedBy',
  'completedAt', 'auditSeq', 'auditHead', 'revision', 'approvalsRequired', 'runner',
] as const;
/** Steps whose caller needs the whole row back (GraphQL answers, the worker's handler); the others get it without `payload` and `result` (null). */
const FULL_ROW_STEPS: ReadonlySet<Plan['step']> = new Set(['decide', 'cancel', 'expire', 'claim', 'resume', 'rolledBack']);
const columnsOf = (alias: string, full: boolean) =>
  ACTION_COLUMNS.map((c) => (full || (c !== 'payload' && c !== 'result') ? `${alias}."${c}"` : `NULL::jsonb AS "${c}"`)).join(', ');

const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));

/**
 * The one statement that commits a plan: it locks the action row, checks the status and the
 * guards, moves the action (status, statusSeq, audit chain head, columns), and — only if it
 * moved — writes the status updates, the audit entries (chained under that row lock), and the
 * other rows. When the move lost a race nothing is written. Returns the statement and its
 * values; the last SELECT yields one row (the status found, and the moved row or nulls), or none
 * when there is no such action.
 */
export function buildCommitSql(plan: Plan): { text: string; values: unknown[] } {
  const p = new SqlParams();
  const id = p.add(plan.actionId, 'uuid');
  const at = p.add(plan.at.toISOString(), 'timestamptz');
  const audit = actionAuditSql(p, plan.actionId, plan.audit, plan.at);
  const conditions: string[] = [];
  if (plan.from) conditions.push(`old."status" = ANY(${p.add(plan.from, '"ActionStatus"[]')})`);
  for (const guard of plan.guards) conditions.push(guardSql(p, guard));

  const sets: string[] = [];
  if (plan.to) sets.push(`"status" = ${p.add(plan.to, '"ActionStatus"')}`);
  const updates = [...plan.notes, ...plan.messages];
  if (updates.length) sets.push(`"statusSeq" = a."statusSeq" + ${updates.length}`);
  if (audit.count) sets.push(`"auditSeq" = c."prevSeq" + ${audit.count}`, `"auditHead" = c."links"[${audit.count}]`);
  sets.push(`"updatedAt" = ${at}`);
  const s = plan.set;
  if (s.attempts !== undefined) sets.push(`"attempts" = ${p.add(s.attempts, 'int')}`);
  if (s.result !== undefined) sets.push(`"result" = ${p.add(json(s.result), 'jsonb')}`);
  if (s.error !== undefined) sets.push(`"error" = ${p.add(s.error, 'text')}`);
  if (s.completedAt !== undefined) sets.push(`"completedAt" = ${p.add(s.completedAt?.toISOString() ?? null, 'timestamptz')}`);
  if (s.decidedAt !== undefined) sets.push(`"decidedAt" = ${p.add(s.decidedAt?.toISOString() ?? null, 'timestamptz')}`);
  if (s.decidedBy !== undefined) sets.push(`"decidedBy" = ${p.add(s.decidedBy, 'text')}`);
  if (s.payload !== undefined) sets.push(`"payload" = ${p.add(JSON.stringify(s.payload), 'jsonb')}`);
  if (s.payloadHash !== undefined) sets.push(`"payloadHash" = ${p.add(s.payloadHash)}`);
  if (s.revision !== undefined) sets.push(`"revision" = ${p.add(s.revision, 'int')}`);
  if (s.approvalsRequired !== undefined) sets.push(`"approvalsRequired" = ${p.add(s.approvalsRequired, 'int')}`);
  if (s.scheduledFor !== undefined) sets.push(`"scheduledFor" = ${p.add(s.scheduledFor?.toISOString() ?? null, 'timestamptz')}`);
  if (s.runner !== undefined) sets.push(`"runner" = ${p.add(s.runner, 'text')}`);
  if (s.approvalExpiresAt !== undefined) sets.push(`"approvalExpiresAt" = ${p.add(s.approvalExpiresAt?.toISOString() ?? null, 'timestamptz')}`);

  const ctes = [
    `old AS (SELECT "id", "status", "scheduledFor", "runner", "auditSeq", "auditHead"${plan.guards.some((g) => g.kind === 'revisionIs') ? ', "revision"' : ''} FROM "Action" WHERE "id" = ${id} FOR UPDATE)`,
    `c AS (SELECT old."id", old."auditSeq" AS "prevSeq", old."auditHead" AS "prevHead"${audit.count ? `, ${audit.links('old')} AS "links"` : ''}
      FROM old${conditions.length ? ` WHERE ${conditions.join(' AND ')}` : ''})`,
    `moved AS (UPDATE "Action" a SET ${sets.join(', ')} FROM c WHERE a."id" = c."id" RETURNING ${columnsOf('a', FULL_ROW_STEPS.has(plan.step))})`,
  ];
  if (updates.length) {
    // Notes come first and keep the status the action had; the step's own updates carry the new one.
    const via = plan.via ? ` WHEN u.ord <= ${plan.notes.length + plan.via.messages} THEN ${p.add(plan.via.status, '"ActionStatus"')}` : '';
    const status = plan.notes.length || via ? `CASE${plan.notes.length ? ` WHEN u.ord <= ${plan.notes.length} THEN o."status"` : ''}${via} ELSE m."status" END` : 'm."status"';
    ctes.push(`su AS (INSERT INTO "StatusUpdate" ("id", "actionId", "seq", "status", "message", "createdAt")
      SELECT gen_random_uuid(), m."id", m."statusSeq" - ${updates.length} + u.ord::int, ${status}, u.msg, ${at}
      FROM moved m, old o, unnest(${p.add(updates, 'text[]')}) WITH ORDINALITY AS u(msg, ord)
      RETURNING "actionId", "seq", "status", "message", "createdAt")`);
    ctes.push(`wh AS (${webhookDeliveriesSql('moved')})`);
  }
  const insertAudit = audit.insert('c');
  if (insertAudit) ctes.push(`au AS (${insertAudit})`);
  const usedTokens = plan.writes.flatMap((w) => (w.kind === 'token.use' ? [w.id] : []));
  plan.writes.forEach((write, i) => ctes.push(`w${i} AS (${writeSql(p, write, id, usedTokens)})`));

  const text = `WITH ${ctes.join(',\n')}
SELECT old."status" AS "_previous", old."scheduledFor" AS "_scheduledFor", old."runner" AS "_runner", ${updates.length ? WEBHOOKS_WRITTEN : 'NULL::uuid[]'} AS "_webhooks", ${columnsOf('m', true)} FROM old LEFT JOIN moved m ON true`;
  return { text, values: p.values };
}

function guardSql(p: SqlParams, guard: Guard): string {
  switch (guard.kind) {
    case 'due':
      return `(old."scheduledFor" IS NULL OR old."scheduledFor" <= ${p.add(guard.now.toISOString(), 'timestamptz')} + interval '50 milliseconds')`;
    case 'taskOpen':
      return `EXISTS (SELECT 1 FROM "ManualTask" t WHERE t."id" = ${p.add(guard.id, 'uuid')} AND t."actionId" = old."id" AND t."status" = 'OPEN')`;
    case 'tokenUsable':
      return `EXISTS (SELECT 1 FROM "ApprovalToken" t WHERE t."id" = ${p.add(guard.id, 'uuid')} AND t."actionId" = old."id" AND t."usedAt" IS NULL AND t."voidedAt" IS NULL)`;
    case 'revisionIs':
      return `old."revision" = ${p.add(guard.revision, 'int')}`;
  }
}

const ifMoved = 'EXISTS (SELECT 1 FROM moved)';

/**
 * Outbound webhooks (spec §6): one PENDING delivery per status update just written (CTE `su`)
 * and enabled endpoint of the action's space whose filter takes its status, so a delivery
 * exists iff the status change committed. With no endpoint this is one index lookup.
 */
function webhookDeliveriesSql(action: string): string {
  return `INSERT INTO "WebhookDelivery" ("id", "endpointId", "actionId", "status", "seq", "message", "statusAt", "createdAt")
      SELECT gen_random_uuid(), e."id", s."actionId", s."status", s."seq", s."message", s."createdAt", s."createdAt"
      FROM ${action} x JOIN "WebhookEndpoint" e ON e."spaceId" = x."spaceId" AND e."enabled", su s
      WHERE e."events" IS NULL OR cardinality(e."events") = 0 OR s."status" = ANY(e."events")
      ORDER BY e."id", s."seq"
      RETURNING "endpointId"`;
}
/** The endpoints that got deliveries (null: none), as the statement's last SELECT returns them. */
const WEBHOOKS_WRITTEN = '(SELECT array_agg(DISTINCT wh."endpointId") FROM wh)';

function writeSql(p: SqlParams, w: Write, actionId: string, usedTokens: readonly string[]): string {
  switch (w.kind) {
    case 'execution.insert': {
      const e = w.execution;
      return `INSERT INTO "Execution" ("id", "actionId", "attempt", "handler", "kind", "status", "startedAt", "finishedAt", "error", "permanent", "externalRef", "rollbackData", "waitKey")
        SELECT ${p.add(e.id, 'uuid')}, m."id", ${p.add(e.attempt, 'int')}, ${p.add(e.handler)}, ${p.add(e.kind.toUpperCase(), '"HandlerKind"')},
          ${p.add(w.status, '"ExecutionStatus"')}, ${p.add(e.startedAt.toISOString(), 'timestamptz')}, ${p.add(w.finishedAt?.toISOString() ?? null, 'timestamptz')},
          ${p.add(w.outcome.error ?? null, 'text')}, ${p.add(w.outcome.permanent ?? false, 'boolean')}, ${p.add(w.outcome.externalRef ?? null, 'text')},
          ${p.add(json(w.outcome.rollbackData), 'jsonb')}, ${p.add(w.outcome.waitKey ?? null, 'text')}
        FROM moved m`;
    }
    case 'execution.update': {
      const sets = [`"status" = ${p.add(w.status, '"ExecutionStatus"')}`, `"finishedAt" = ${p.add(w.finishedAt?.toISOString() ?? null, 'timestamptz')}`];
      if (w.outcome.error !== undefined) sets.push(`"error" = ${p.add(w.outcome.error, 'text')}`);
      if (w.outcome.permanent !== undefined) sets.push(`"permanent" = ${p.add(w.outcome.permanent, 'boolean')}`);
      if (w.outcome.externalRef !== undefined) sets.push(`"externalRef" = ${p.add(w.outcome.externalRef, 'text')}`);
      if (w.outcome.rollbackData !== undefined) sets.push(`"rollbackData" = ${p.add(json(w.outcome.rollbackData), 'jsonb')}`);
      if (w.outcome.waitKey !== undefined) sets.push(`"waitKey" = ${p.add(w.outcome.waitKey, 'text')}`);
      return `UPDATE "Execution" SET ${sets.join(', ')} WHERE "id" = ${p.add(w.id, 'uuid')} AND "actionId" = ${actionId} AND ${ifMoved}`;
    }
    case 'executions.interrupt':
      return `UPDATE "Execution" SET "status" = 'FAILED', "finishedAt" = ${p.add(w.at.toISOString(), 'timestamptz')}, "error" = ${p.add(w.error)}
        WHERE "id" = ANY(${p.add(w.ids, 'uuid[]')}) AND "actionId" = ${actionId} AND "status" = 'RUNNING' AND ${ifMoved}`;
    case 'receipt.insert':
      return `INSERT INTO "Receipt" ("id", "spaceId", "actionId", "executionId", "receiptNumber", "provider", "handler", "externalRef", "data", "createdAt", "statement", "signature", "keyId")
        SELECT ${p.add(w.receipt.id, 'uuid')}, m."spaceId", m."id", ${p.add(w.executionId, 'uuid')}, ${p.add(w.receipt.receiptNumber)}, ${p.add(w.provider)},
          ${p.add(w.handler)}, ${p.add(w.externalRef, 'text')}, ${p.add(json(w.data), 'jsonb')}, ${p.add(w.receipt.createdAt.toISOString(), 'timestamptz')},
          ${p.add(w.receipt.statement)}, ${p.add(w.receipt.signature, 'text')}, ${p.add(w.receipt.keyId, 'text')}
        FROM moved m`;
    case 'task.open':
      return `INSERT INTO "ManualTask" ("id", "spaceId", "actionId", "executionId", "status", "instructions", "createdAt")
        SELECT ${p.add(w.id, 'uuid')}, m."spaceId", m."id", ${p.add(w.executionId, 'uuid')}, 'OPEN', ${p.add(w.instructions)}, now()
        FROM moved m ON CONFLICT ("actionId") WHERE "status" = 'OPEN' DO NOTHING`;
    case 'task.complete':
      return `UPDATE "ManualTask" SET "status" = 'COMPLETED', "outcome" = ${p.add(json(w.outcome), 'jsonb')}, "completedAt" = ${p.add(w.at.toISOString(), 'timestamptz')},
          "completedById" = ${p.add(w.completedById, 'uuid')}
        WHERE "id" = ${p.add(w.id, 'uuid')} AND "actionId" = ${actionId} AND "status" = 'OPEN' AND ${ifMoved}`;
    case 'tasks.cancel':
      return `UPDATE "ManualTask" SET "status" = 'CANCELLED', "completedAt" = ${p.add(w.at.toISOString(), 'timestamptz')}
        WHERE "actionId" = ${actionId} AND "status" = 'OPEN' AND ${ifMoved}`;
    case 'tokens.void':
      // A token used by this very step is written by its own CTE (one row, one writer per statement).
      return `UPDATE "ApprovalToken" SET "voidedAt" = ${p.add(w.at.toISOString(), 'timestamptz')}
        WHERE "actionId" = ${actionId} AND "usedAt" IS NULL AND "voidedAt" IS NULL AND NOT ("id" = ANY(${p.add(usedTokens, 'uuid[]')})) AND ${ifMoved}`;
    case 'token.insert': {
      const t = w.token;
      return `INSERT INTO "ApprovalToken" ("id", "actionId", "tokenHash", "payloadHash", "codeHash", "recipient", "expiresAt", "createdAt")
        SELECT ${p.add(t.id, 'uuid')}, m."id", ${p.add(t.tokenHash)}, m."payloadHash", ${p.add(t.codeHash, 'text')}, ${p.add(t.recipient)},
          ${p.add(t.expiresAt.toISOString(), 'timestamptz')}, ${p.add(w.at.toISOString(), 'timestamptz')} FROM moved m`;
    }
    case 'decision.insert':
      return `INSERT INTO "ApprovalDecision" ("id", "actionId", "approver", "decision", "comment", "revision", "createdAt")
        SELECT gen_random_uuid(), m."id", ${p.add(w.approver)}, ${p.add(w.decision)}, ${p.add(w.comment, 'text')}, ${p.add(w.revision, 'int')}, ${p.add(w.at.toISOString(), 'timestamptz')}
        FROM moved m ON CONFLICT ("actionId", "revision", "approver") DO NOTHING`;
    case 'revision.insert':
      return `INSERT INTO "ActionRevision" ("id", "actionId", "revision", "payload", "payloadHash", "author", "diff", "createdAt")
        SELECT gen_random_uuid(), m."id", ${p.add(w.revision, 'int')}, ${p.add(JSON.stringify(w.payload), 'jsonb')}, ${p.add(w.payloadHash)}, ${p.add(w.author)},
          ${p.add(json(w.diff), 'jsonb')}, ${p.add(w.at.toISOString(), 'timestamptz')}
        FROM moved m ON CONFLICT ("actionId", "revision") DO NOTHING`;
    case 'token.use':
      return `UPDATE "ApprovalToken" SET "usedAt" = ${p.add(w.at.toISOString(), 'timestamptz')}
        WHERE "id" = ${p.add(w.id, 'uuid')} AND "actionId" = ${actionId} AND "usedAt" IS NULL AND "voidedAt" IS NULL AND ${ifMoved}`;
    case 'rollback.insert': {
      const r = w.rollback;
      return `INSERT INTO "Rollback" ("id", "actionId", "requestedById", "reason", "handler", "status", "error", "data", "startedAt", "finishedAt")
        SELECT ${p.add(r.id, 'uuid')}, m."id", ${p.add(w.requestedById)}, ${p.add(r.reason)}, ${p.add(r.handler, 'text')},
          ${p.add(r.ok ? 'SUCCEEDED' : 'FAILED', '"RollbackStatus"')}, ${p.add(r.error, 'text')}, ${p.add(json(r.data), 'jsonb')},
          ${p.add(r.startedAt.toISOString(), 'timestamptz')}, ${p.add(w.at.toISOString(), 'timestamptz')}
        FROM moved m`;
    }
  }
}

type CommitRow = Action & { _previous: ActionStatus; _scheduledFor: Date | null; _runner: string | null; _webhooks: string[] | null };

/** Runs a plan's statement; null when there is no such action. */
export async function commitPlan(sql: SqlRunner, plan: Plan): Promise<CommitResult | null> {
  const { text, values } = buildCommitSql(plan);
  const [row] = await sql.query<CommitRow>(text, values);
  if (!row) return null;
  const { _previous: previous, _scheduledFor: scheduledFor, _runner: runner, _webhooks: webhooks, ...rest } = row;
  return { action: rest.id ? (rest as Action) : null, previous, scheduledFor, runner, webhooks };
}

/** A new action as the creating statement writes it. */
export interface NewAction {
  id: string;
  spaceId: string;
  userId: string;
  requestedById: string;
  type: string;
  payload: unknown;
  payloadHash: string;
  priority: number;
  scheduledFor: Date | null;
  idempotencyKey: string | null;
  status: ActionStatus;
  requiresApproval: boolean;
  error: string | null;
  approvalExpiresAt: Date | null;
  createdAt: Date;
  /** Distinct approvals needed (quorum); default 1. */
  approvalsRequired?: number;
  /** Set when something approved it at creation in place of a person (`standing-approval:<id>`). */
  decidedBy?: string | null;
  /** Claimed at creation (see CreateStep.claim): the attempt it starts with, and the process running it. */
  attempts?: number;
  runner?: string | null;
}

/** Rows written with a new action, in the same statement. */
export interface CreateExtras {
  idempotency: { principalId: string; key: string; requestHash: string } | null;
  token: { id: string; tokenHash: string; codeHash: string | null; recipient: string; expiresAt: Date } | null;
}

/**
 * The one statement that records a new action: the action row (with its audit chain head), its
 * status updates, its first audit entries (hashed here: the chain starts empty), its idempotency
 * record and its approval token. A repeated idempotency key fails the whole statement (unique
 * violation) and nothing is written.
 */
export function buildCreateSql(
  action: NewAction,
  messages: readonly string[],
  inputs: readonly AuditInput[],
  extras: CreateExtras,
  via: { status: ActionStatus; messages: number } | null = null,
): { text: string; values: unknown[] } {
  const p = new SqlParams();
  const entries = prepareAuditEntries(action.id, inputs, action.createdAt);
  let head = '';
  const links = entries.map((entry, i) => {
    const prev = head;
    head = auditLink(prev, i + 1, entry.contentHash);
    return { prev, hash: head };
  });
  const at = p.add(action.createdAt.toISOString(), 'timestamptz');
  const ctes = [
    `a AS (INSERT INTO "Action" ("id", "spaceId", "userId", "requestedById", "type", "payload", "payloadHash", "priority", "scheduledFor", "idempotencyKey",
        "status", "statusSeq", "requiresApproval", "error", "approvalExpiresAt", "createdAt", "updatedAt", "auditSeq", "auditHead", "approvalsRequired", "decidedBy", "decidedAt",
        "attempts", "runner")
      VALUES (${p.add(action.id, 'uuid')}, ${p.add(action.spaceId, 'uuid')}, ${p.add(action.userId, 'uuid')}, ${p.add(action.requestedById, 'uuid')}, ${p.add(action.type)},
        ${p.add(JSON.stringify(action.payload), 'jsonb')}, ${p.add(action.payloadHash)}, ${p.add(action.priority, 'smallint')},
        ${p.add(action.scheduledFor?.toISOString() ?? null, 'timestamptz')}, ${p.add(action.idempotencyKey, 'text')}, ${p.add(action.status, '"ActionStatus"')},
        ${messages.length}, ${p.add(action.requiresApproval, 'boolean')}, ${p.add(action.error, 'text')}, ${p.add(action.approvalExpiresAt?.toISOString() ?? null, 'timestamptz')},
        ${at}, ${at}, ${entries.length}, ${p.add(head)}, ${p.add(action.approvalsRequired ?? 1, 'int')}, ${p.add(action.decidedBy ?? null, 'text')}, ${action.decidedBy ? at : 'NULL'},
        ${p.add(action.attempts ?? 0, 'int')}, ${p.add(action.runner ?? null, 'text')})
      RETURNING ${columnsOf('"Action"', true)})`,
    `su AS (INSERT INTO "StatusUpdate" ("id", "actionId", "seq", "status", "message", "createdAt")
      SELECT gen_random_uuid(), a."id", u.ord::int, ${via ? `CASE WHEN u.ord <= ${via.messages} THEN ${p.add(via.status, '"ActionStatus"')} ELSE a."status" END` : 'a."status"'}, u.msg, ${at}
      FROM a, unnest(${p.add(messages, 'text[]')}) WITH ORDINALITY AS u(msg, ord)
      RETURNING "actionId", "seq", "status", "message", "createdAt")`,
    `wh AS (${webhookDeliveriesSql('a')})`,
  ];
  if (entries.length) {
    const col = (values: unknown[], type: string) => p.add(values, `${type}[]`);
    ctes.push(`au AS (INSERT INTO "AuditEntry" ("chain", "chainSeq", "spaceId", "actionId", "event", "actor", "ip", "userAgent", "data", "prevHash", "hash", "createdAt")
      SELECT a."id"::text, e.ord::int, e.space_id, a."id", e.event, e.actor, e.ip, e.user_agent, e.data, e.prev, e.hash, ${at}
      FROM a, unnest(${col(entries.map((e) => e.spaceId), 'uuid')}, ${col(entries.map((e) => e.event), 'text')}, ${col(entries.map((e) => e.actor), 'text')},
        ${col(entries.map((e) => e.ip), 'text')}, ${col(entries.map((e) => e.userAgent), 'text')}, ${col(entries.map((e) => e.data), 'jsonb')},
        ${col(links.map((l) => l.prev), 'text')}, ${col(links.map((l) => l.hash), 'text')})
        WITH ORDINALITY AS e(space_id, event, actor, ip, user_agent, data, prev, hash, ord))`);
  }
  if (extras.idempotency) {
    const r = extras.idempotency;
    ctes.push(`idem AS (INSERT INTO "IdempotencyRecord" ("id", "principalId", "key", "requestHash", "actionId", "createdAt")
      SELECT gen_random_uuid(), ${p.add(r.principalId, 'uuid')}, ${p.add(r.key)}, ${p.add(r.requestHash)}, a."id", ${at} FROM a)`);
  }
  if (extras.token) {
    const t = extras.token;
    ctes.push(`tok AS (INSERT INTO "ApprovalToken" ("id", "actionId", "tokenHash", "payloadHash", "codeHash", "recipient", "expiresAt", "createdAt")
      SELECT ${p.add(t.id, 'uuid')}, a."id", ${p.add(t.tokenHash)}, a."payloadHash", ${p.add(t.codeHash, 'text')}, ${p.add(t.recipient)},
        ${p.add(t.expiresAt.toISOString(), 'timestamptz')}, ${at} FROM a)`);
  }
  return { text: `WITH ${ctes.join(',\n')}\nSELECT ${columnsOf('a', true)}, ${WEBHOOKS_WRITTEN} AS "_webhooks" FROM a`, values: p.values };
}
