import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';

export { canonicalJson };
import { Prisma, type PrismaClient } from '../generated/prisma/client.js';
import type { ActionStatus, KycStatus, Role, SafetyRuleKind } from '../generated/prisma/enums.js';
import { UUID } from './ids.js';

/**
 * What each audit event records in `data`, by event name (spec §8). Timestamps are ISO 8601
 * strings; absent values are `null`, never missing, so every entry of an event has one shape.
 */
export interface AuditEventData {
  'action.created': { type: string; status: ActionStatus; priority: number; requestedBy: string; payloadHash: string };
  /** `rule` is the blocking rule's `ruleKey`. */
  'action.blocked': { rule: string; kind: SafetyRuleKind; reason: string };
  /** `recipient` is where the approval email went, null when none was sent. */
  'approval.requested': { expiresAt: string; recipient: string | null };
  /** A wrong one-time code on an approval link; `attemptsLeft` before the link locks. */
  'approval.code_rejected': { attemptsLeft: number };
  /** The link locked after `attempts` wrong codes; the action must be decided another way. */
  'approval.locked': { attempts: number };
  'action.approved': { comment: string | null };
  'action.rejected': { reason: string };
  'action.cancelled': { reason: string | null };
  /** `expiresAt` is the approval deadline that passed. */
  'action.expired': { expiresAt: string };
  'action.queued': { priority: number; scheduledFor: string | null };
  /** `chain`: the handlers to be tried, in order. */
  'execution.started': { attempt: number; chain: string[] };
  'execution.attempt_failed': { attempt: number; handler: string; error: string; permanent: boolean };
  'execution.completed': { attempt: number; handler: string; receiptNumber: string | null; externalRef: string | null };
  'execution.failed': { attempts: number; error: string };
  /** Refused by the recheck before dispatch (e.g. a payment with no person's approval); nothing ran. */
  'execution.refused': { reason: string };
  'manual_task.completed': { taskId: string };
  'rollback.succeeded': { rollbackId: string; handler: string | null; reason: string };
  'rollback.failed': { rollbackId: string; handler: string | null; reason: string; error: string };
  /** The flat fields are the rule as saved (= `after`); `before` is null when the rule is new. */
  'safety_rule.upserted': {
    ruleKey: string;
    actionType: string;
    kind: SafetyRuleKind;
    limit: number | null;
    windowSeconds: number | null;
    enabled: boolean;
    before: SafetyRuleState | null;
    after: SafetyRuleState;
  };
  /** `from`/`to` repeat `before`/`after` for older readers. */
  'user.kyc_changed': { userId: string; from: KycStatus; to: KycStatus; before: KycStatus; after: KycStatus };
  /** The user's approval email replaced (e.g. by `keys create --email`); null when there was or is none. */
  'user.email_changed': { userId: string; before: string | null; after: string | null };
  /**
   * A handler configuration created or changed; `before` is null when it is new. Secrets appear
   * only as their names and whether they changed, never their values.
   */
  'handler_config.upserted': {
    configKey: string;
    handler: string;
    provider: string;
    before: HandlerConfigState | null;
    after: HandlerConfigState;
    secretsChanged: boolean;
  };
  /** Never the key itself: only its prefix. */
  'api_key.created': { principalId: string; role: Role; prefix: string };
  /** Never the key itself: its id and prefix, and `revokedAt` before and after. */
  'api_key.revoked': { apiKeyId: string; principalId: string; prefix: string; before: { revokedAt: string | null }; after: { revokedAt: string } };
}

/** A safety rule's changeable fields, as audited. */
export interface SafetyRuleState {
  limit: number | null;
  windowSeconds: number | null;
  enabled: boolean;
  description: string | null;
}

/** A handler configuration as audited: never the secrets' values. */
export interface HandlerConfigState {
  settings: unknown;
  enabled: boolean;
  hasSecrets: boolean;
  secretNames: string[];
}

/** Every audit event name. */
export type AuditEvent = keyof AuditEventData;

/** The shape of `data` for event `E`. */
export type AuditData<E extends AuditEvent> = AuditEventData[E];

/**
 * One entry to append. A union discriminated by `event` (distributive over `E`), so `data`
 * must match its event: `{ event: 'action.rejected', data: { reason } }`.
 */
export type AuditInput<E extends AuditEvent = AuditEvent> = E extends AuditEvent
  ? {
      event: E;
      /** Principal id, `system`, or `email-link:<tokenId>`. */
      actor: string;
      spaceId?: string | null;
      actionId?: string | null;
      ip?: string | null;
      userAgent?: string | null;
      data: AuditData<E>;
    }
  : never;

/** An appended entry: its place in the chain and its hash. */
export interface AppendedAuditEntry {
  id: bigint;
  hash: string;
}

/** The stored fields an entry's hash covers (an `AuditEntry` row has them all). */
export interface AuditHashFields {
  id: bigint;
  spaceId: string | null;
  actionId: string | null;
  event: string;
  actor: string;
  ip: string | null;
  userAgent: string | null;
  data: unknown;
  createdAt: Date;
  prevHash: string;
}

/** The result of {@link verifyAuditChain}. */
export interface AuditVerification {
  ok: boolean;
  /** Entries examined, including the first bad one. */
  checked: number;
  firstBad?: { id: bigint; reason: AuditBreakReason };
}

export type AuditBreakReason = 'hash mismatch: content altered' | 'prevHash does not match previous entry';

/** Thrown when an entry cannot be written as given; the caller's transaction should roll back. */
export class AuditWriteError extends Error {
  override name = 'AuditWriteError';
}

// Two-key advisory lock ("AE", 1): every chain writer takes it, so appends are serial.
const LOCK_SQL = `SELECT pg_advisory_xact_lock(${0x41450000}, 1)::text AS "locked", current_setting('transaction_isolation') AS "isolation"`;
// 11 parameters a row; PostgreSQL allows 65535 per statement.
const ROWS_PER_INSERT = 1000;

/**
 * SHA-256 (hex) of an entry's canonical JSON: id, spaceId, actionId, event, actor, ip,
 * userAgent, data, createdAt (ISO 8601, milliseconds) and prevHash. Pure; `verifyAuditChain`
 * recomputes it from each stored row.
 */
export function hashAuditEntry(entry: AuditHashFields): string {
  const content = canonicalJson({
    id: entry.id.toString(),
    spaceId: entry.spaceId,
    actionId: entry.actionId,
    event: entry.event,
    actor: entry.actor,
    ip: entry.ip,
    userAgent: entry.userAgent,
    data: entry.data,
    createdAt: entry.createdAt.toISOString(),
    prevHash: entry.prevHash,
  });
  return createHash('sha256').update(content).digest('hex');
}

/**
 * Appends one entry to the audit chain inside the caller's transaction, so it commits or
 * rolls back with the change it records. See {@link appendAuditEntries}.
 */
export async function appendAuditEntry(tx: Prisma.TransactionClient, input: AuditInput): Promise<AppendedAuditEntry> {
  const [appended] = await appendAuditEntries(tx, [input]);
  return appended!;
}

/**
 * Appends entries, chained in the order given, inside the caller's transaction: three round
 * trips whatever their number (advisory lock; last hash and new ids; one INSERT).
 *
 * The lock is held until the caller's transaction ends, so every other audit writer waits
 * for it: append late in the transaction. The transaction must be READ COMMITTED (Prisma's
 * default), since a snapshot older than the lock would read a stale last hash and fork the chain.
 *
 * @throws AuditWriteError when `tx` is not a transaction, the isolation level is not READ
 *   COMMITTED, or an id is not a UUID.
 */
export async function appendAuditEntries(tx: Prisma.TransactionClient, inputs: readonly AuditInput[]): Promise<AppendedAuditEntry[]> {
  if (inputs.length === 0) return [];
  // A PrismaClient type-checks as a TransactionClient, but outside a transaction the lock would
  // end with its statement. Prisma's transaction clients lack $disconnect; clients have it.
  if (typeof (tx as { $disconnect?: unknown }).$disconnect === 'function') {
    throw new AuditWriteError('audit entries must be appended inside a transaction (the tx of db.$transaction), not on the client');
  }
  const prepared = inputs.map((input) => ({
    event: input.event,
    actor: input.actor,
    spaceId: uuidOrNull(input.spaceId, 'spaceId'),
    actionId: uuidOrNull(input.actionId, 'actionId'),
    ip: input.ip ?? null,
    userAgent: input.userAgent ?? null,
    data: canonicalJson(input.data),
  }));

  const [lock] = await tx.$queryRawUnsafe<Array<{ isolation: string }>>(LOCK_SQL);
  if (lock?.isolation !== 'read committed') {
    throw new AuditWriteError(`audit entries need a READ COMMITTED transaction (this one is ${lock?.isolation ?? 'unknown'})`);
  }
  // The id is drawn here, not by the column default, because the hash covers it.
  const slots = await tx.$queryRaw<Array<{ id: bigint; prevHash: string | null }>>`
    SELECT nextval(pg_get_serial_sequence('"AuditEntry"', 'id')) AS "id",
           (SELECT "hash" FROM "AuditEntry" ORDER BY "id" DESC LIMIT 1) AS "prevHash"
    FROM generate_series(1, ${prepared.length}::int)`;
  const ids = slots.map((s) => BigInt(s.id)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let prevHash = slots[0]?.prevHash ?? '';
  // Taken after the lock, so createdAt follows chain order on any one clock.
  const createdAt = new Date();

  const rows = prepared.map((entry, i) => {
    const id = ids[i]!;
    const hash = hashAuditEntry({ ...entry, id, data: JSON.parse(entry.data) as unknown, createdAt, prevHash });
    const row = { ...entry, id, prevHash, hash };
    prevHash = hash;
    return row;
  });

  for (let start = 0; start < rows.length; start += ROWS_PER_INSERT) {
    const values = rows.slice(start, start + ROWS_PER_INSERT).map(
      (r) =>
        Prisma.sql`(${r.id}::bigint, ${r.spaceId}::uuid, ${r.actionId}::uuid, ${r.event}, ${r.actor}, ${r.ip}, ${r.userAgent},
          ${r.data}::jsonb, ${r.prevHash}, ${r.hash}, ${createdAt.toISOString()}::timestamptz)`,
    );
    await tx.$executeRaw`
      INSERT INTO "AuditEntry" ("id", "spaceId", "actionId", "event", "actor", "ip", "userAgent", "data", "prevHash", "hash", "createdAt")
      VALUES ${Prisma.join(values)}`;
  }
  return rows.map(({ id, hash }) => ({ id, hash }));
}

// PostgreSQL stores a uuid in lower case; hashing any other spelling would never verify.
function uuidOrNull(value: string | null | undefined, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (!UUID.test(value)) throw new AuditWriteError(`audit ${field} is not a UUID: "${value}"`);
  return value.toLowerCase();
}

/**
 * Walks the whole chain by id in keyset-paginated batches (constant memory) and checks each
 * entry's hash against its content and its prevHash against the previous entry's hash (""
 * for the first). Stops at the first bad entry. Entries appended while it runs are checked
 * too if they land in a later batch.
 *
 * Cutting entries off the end of the chain leaves a valid chain; that is not detectable here.
 */
export async function verifyAuditChain(
  db: PrismaClient | Prisma.TransactionClient,
  options: { batchSize?: number } = {},
): Promise<AuditVerification> {
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer (got ${batchSize})`);
  let checked = 0;
  let prevHash = '';
  let after: bigint | undefined;
  for (;;) {
    const batch = await db.auditEntry.findMany({
      where: after === undefined ? {} : { id: { gt: after } },
      orderBy: { id: 'asc' },
      take: batchSize,
    });
    for (const entry of batch) {
      checked += 1;
      if (hashAuditEntry(entry) !== entry.hash) return { ok: false, checked, firstBad: { id: entry.id, reason: 'hash mismatch: content altered' } };
      if (entry.prevHash !== prevHash) {
        return { ok: false, checked, firstBad: { id: entry.id, reason: 'prevHash does not match previous entry' } };
      }
      prevHash = entry.hash;
    }
    if (batch.length < batchSize) return { ok: true, checked };
    after = batch[batch.length - 1]!.id;
  }
}
