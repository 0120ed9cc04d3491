/**
 * Stored history for the growth run: completed actions with their status updates, execution,
 * receipt and audit entries, written with INSERT … SELECT generate_series in batches, so the
 * engine's indexes and tables are as large as after months of use.
 *
 * Seeded rows are plausible, not genuine: ids are md5-derived UUIDs, audit hashes are linked
 * (each entry's prevHash is the previous entry's hash, the action records its chain's length and
 * head) but not computed over the content, so a full `audit verify` stops at them; the growth
 * run verifies the chains of its own actions only. The actions belong to the bench's agent (its
 * space and user) and are dated over the past 30 days, outside every rate-limit window.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type { TestDatabase } from '../tests/helpers/postgres.js';

/** Rows per INSERT statement (each its own transaction). */
const BATCH = 20_000;

export interface SeedResult {
  actions: number;
  auditEntries: number;
  statusUpdates: number;
  executions: number;
  receipts: number;
  seconds: number;
  /** VACUUM (ANALYZE) of the seeded tables, as autovacuum would have done by then. */
  vacuumSeconds: number;
  /** Per-chain audit (chain, chainSeq); false: the single global chain from before #8. */
  perChain: boolean;
}

/**
 * Seeds `actions` completed noop actions of the principal `agentPrincipalId` and `auditEntries`
 * audit entries spread over them (entry g belongs to action g mod actions, so each chain's
 * seqs are 1, 2, 3 … with no gap). `progress` is told after each batch.
 */
export async function seedHistory(
  db: TestDatabase,
  who: { spaceId: string; userId: string; principalId: string },
  counts: { actions: number; auditEntries: number },
  progress: (text: string) => void = () => {},
): Promise<SeedResult> {
  const client = new pg.Client({ connectionString: db.url, application_name: 'bench-seed' });
  await client.connect();
  const started = performance.now();
  try {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'AuditEntry' AND column_name IN ('chain', 'chainSeq')`,
    );
    const perChain = rows[0]?.n === 2;
    const { actions, auditEntries } = counts;
    if (actions < 1) throw new Error('seeding needs at least one action');
    // Action i (1-based) has entries g = i, i + actions, i + 2·actions, … ≤ auditEntries: chainSeq 1 … k(i).
    const entriesOf = (i: string) => `(CASE WHEN ${i} <= ${auditEntries} THEN (${auditEntries} - ${i}) / ${actions} + 1 ELSE 0 END)`;
    const seeded = (kind: string, i: string) => `md5('bench-seed-${kind}-' || ${i})::uuid`;
    const linkHash = (chain: string, seq: string) => `encode(sha256(convert_to(${chain} || ':' || ${seq}, 'UTF8')), 'hex')`;
    const params = [who.spaceId, who.userId, who.principalId];

    for (let from = 1; from <= actions; from += BATCH) {
      const to = Math.min(actions, from + BATCH - 1);
      const range = `generate_series(${from}, ${to}) AS i`;
      const created = `now() - interval '30 days' + (i::double precision / ${actions}) * interval '29 days'`;
      const audited = perChain ? ', "auditSeq", "auditHead"' : '';
      const auditedValues = perChain
        ? `, ${entriesOf('i')}, CASE WHEN ${entriesOf('i')} = 0 THEN '' ELSE ${linkHash(`${seeded('action', 'i')}::text`, entriesOf('i'))} END`
        : '';
      await client.query(
        `INSERT INTO "Action" ("id", "spaceId", "userId", "requestedById", "type", "payload", "payloadHash", "priority", "status", "statusSeq",
                               "requiresApproval", "attempts", "result", "createdAt", "updatedAt", "decidedAt", "decidedBy", "completedAt"${audited})
         SELECT ${seeded('action', 'i')}, $1::uuid, $2::uuid, $3::uuid, 'noop', jsonb_build_object('note', 'seeded ' || i),
                md5('payload' || i) || md5('payload-2' || i), 5, 'COMPLETED', 3, false, 1, '{"ok": true}'::jsonb,
                ${created}, ${created} + interval '20 ms', ${created}, 'system', ${created} + interval '20 ms'${auditedValues}
           FROM ${range}`,
        params,
      );
      await client.query(
        `INSERT INTO "StatusUpdate" ("id", "actionId", "seq", "status", "createdAt")
         SELECT ${seeded('status', "i || '-' || s")}, ${seeded('action', 'i')}, s,
                (ARRAY['APPROVED', 'EXECUTING', 'COMPLETED'])[s]::"ActionStatus", ${created} + s * interval '5 ms'
           FROM ${range}, generate_series(1, 3) AS s`,
      );
      await client.query(
        `INSERT INTO "Execution" ("id", "actionId", "attempt", "handler", "kind", "status", "startedAt", "finishedAt")
         SELECT ${seeded('execution', 'i')}, ${seeded('action', 'i')}, 1, 'noop', 'API', 'SUCCEEDED', ${created} + interval '10 ms', ${created} + interval '15 ms'
           FROM ${range}`,
      );
      await client.query(
        `INSERT INTO "Receipt" ("id", "spaceId", "actionId", "executionId", "receiptNumber", "provider", "handler", "data", "createdAt")
         SELECT ${seeded('receipt', 'i')}, $1::uuid, ${seeded('action', 'i')}, ${seeded('execution', 'i')}, 'RCP-SEED-' || lpad(i::text, 9, '0'),
                'noop', 'noop', '{"ok": true}'::jsonb, ${created} + interval '15 ms'
           FROM ${range}`,
        [who.spaceId],
      );
      progress(`seeded actions ${to}/${actions}`);
    }

    const events = `(ARRAY['action.created', 'action.queued', 'execution.started', 'execution.completed', 'audit.seeded'])[LEAST(seq, 5)]`;
    for (let from = 1; from <= auditEntries; from += BATCH) {
      const to = Math.min(auditEntries, from + BATCH - 1);
      // Entry g: action ((g - 1) mod actions) + 1, chainSeq ((g - 1) div actions) + 1.
      const source = `(SELECT g, ((g - 1) % ${actions}) + 1 AS i, ((g - 1) / ${actions}) + 1 AS seq FROM generate_series(${from}, ${to}) AS g) e`;
      const created = `now() - interval '30 days' + (i::double precision / ${actions}) * interval '29 days' + seq * interval '4 ms'`;
      const chain = `${seeded('action', 'i')}::text`;
      if (perChain) {
        await client.query(
          `INSERT INTO "AuditEntry" ("chain", "chainSeq", "format", "spaceId", "actionId", "event", "actor", "data", "prevHash", "hash", "createdAt")
           SELECT ${chain}, seq, 2, $1::uuid, ${seeded('action', 'i')}, ${events}, 'system', jsonb_build_object('seeded', g),
                  CASE WHEN seq = 1 THEN '' ELSE ${linkHash(chain, '(seq - 1)')} END, ${linkHash(chain, 'seq')}, ${created}
             FROM ${source}`,
          [who.spaceId],
        );
      } else {
        await client.query(
          `INSERT INTO "AuditEntry" ("spaceId", "actionId", "event", "actor", "data", "prevHash", "hash", "createdAt")
           SELECT $1::uuid, ${seeded('action', 'i')}, ${events}, 'system', jsonb_build_object('seeded', g),
                  ${linkHash(chain, '(seq - 1)')}, ${linkHash(chain, 'seq')}, ${created}
             FROM ${source}`,
          [who.spaceId],
        );
      }
      progress(`seeded audit entries ${to}/${auditEntries}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const v0 = performance.now();
    await client.query('VACUUM (ANALYZE) "Action", "StatusUpdate", "Execution", "Receipt", "AuditEntry"');
    return {
      actions,
      auditEntries,
      statusUpdates: 3 * actions,
      executions: actions,
      receipts: actions,
      seconds,
      vacuumSeconds: (performance.now() - v0) / 1000,
      perChain,
    };
  } finally {
    await client.end();
  }
}
