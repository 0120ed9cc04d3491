import type { AuditInput, PreparedAuditEntry } from '../audit.js';
import { prepareAuditEntries } from '../audit.js';

/**
 * SQL pieces that append entries to an action's audit chain inside the statement that moves the
 * action: the chain's head and length come from the action row the statement has locked
 * (`old."auditHead"`, `old."auditSeq"`), the links are computed by `ae_audit_links` in the same
 * statement, and the row's head is advanced with them. No lock beyond the action's own row.
 */

/** A statement under construction: `$n` placeholders and their values. */
export class SqlParams {
  readonly values: unknown[] = [];
  /**
   * Adds a value; returns its placeholder with its type (`$3::uuid`; `text` unless told), since
   * PostgreSQL cannot infer the type of a parameter in a SELECT list.
   */
  add(value: unknown, cast = 'text'): string {
    this.values.push(value);
    return `$${this.values.length}::${cast}`;
  }
}

/**
 * Prepares `inputs` for the action's chain and returns:
 * - `links(oldRef)`: the SQL expression of the new links (`text[]`) from the locked row `oldRef`;
 * - `insert(linksRef, gateRef)`: an INSERT … SELECT of the entries, one row per entry, only
 *   when `gateRef` (the CTE of the moved row) has a row.
 */
export function actionAuditSql(params: SqlParams, actionId: string, inputs: readonly AuditInput[], createdAt: Date) {
  const entries = prepareAuditEntries(actionId, inputs, createdAt);
  const n = entries.length;
  // Only placed when used: PostgreSQL refuses a parameter the statement never mentions.
  let contents: string | null = null;
  const col = (pick: (e: PreparedAuditEntry) => unknown, type: string) => params.add(entries.map(pick), `${type}[]`);
  return {
    count: n,
    /** `text[]` of the n new links, from the locked row's head and length. */
    links: (old: string) => `ae_audit_links(${old}."auditHead", ${old}."auditSeq", ${(contents ??= params.add(entries.map((e) => e.contentHash), 'text[]'))})`,
    /** INSERT … SELECT of the entries from `source` (a CTE with columns "prevHead", "prevSeq", "links"). */
    insert: (source: string) => {
      if (n === 0) return null;
      return `INSERT INTO "AuditEntry" ("chain", "chainSeq", "spaceId", "actionId", "event", "actor", "ip", "userAgent", "data", "prevHash", "hash", "createdAt")
  SELECT ${params.add(actionId)}, s."prevSeq" + e.ord::int, e.space_id, e.action_id, e.event, e.actor, e.ip, e.user_agent, e.data,
         CASE WHEN e.ord = 1 THEN s."prevHead" ELSE s."links"[e.ord - 1] END, s."links"[e.ord], ${params.add(createdAt.toISOString(), 'timestamptz')}
  FROM ${source} s,
       unnest(${col((e) => e.spaceId, 'uuid')}, ${col((e) => e.actionId, 'uuid')}, ${col((e) => e.event, 'text')}, ${col((e) => e.actor, 'text')},
              ${col((e) => e.ip, 'text')}, ${col((e) => e.userAgent, 'text')}, ${col((e) => e.data, 'jsonb')})
         WITH ORDINALITY AS e(space_id, action_id, event, actor, ip, user_agent, data, ord)`;
    },
  };
}

/**
 * One statement that appends `inputs` to an action's chain with no change of status (used by
 * tests and tools; the lifecycle writer embeds the same pieces in its transition statement).
 * Returns the new head, or null when there is no such action.
 */
export function appendActionAuditSql(actionId: string, inputs: readonly AuditInput[], createdAt = new Date()): { text: string; values: unknown[] } {
  const params = new SqlParams();
  const id = params.add(actionId, 'uuid');
  const audit = actionAuditSql(params, actionId, inputs, createdAt);
  const text = `WITH old AS (SELECT "id", "auditSeq", "auditHead" FROM "Action" WHERE "id" = ${id} FOR UPDATE),
chain AS (SELECT old."id", old."auditSeq" AS "prevSeq", old."auditHead" AS "prevHead", ${audit.links('old')} AS "links" FROM old),
moved AS (UPDATE "Action" a SET "auditSeq" = chain."prevSeq" + ${audit.count}, "auditHead" = chain."links"[${audit.count}] FROM chain WHERE a."id" = chain."id" RETURNING a."auditSeq", a."auditHead"),
entries AS (${audit.insert('chain')})
SELECT "auditSeq", "auditHead" FROM moved`;
  return { text, values: params.values };
}
