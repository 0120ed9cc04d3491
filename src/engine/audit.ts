import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';

export { canonicalJson };
import { Prisma, type PrismaClient } from '../generated/prisma/client.js';
import type { ActionStatus, KycStatus, Role, SafetyRuleKind } from '../generated/prisma/enums.js';
import { UUID } from './ids.js';
import { checkpointHash, parseCheckpointEntries, verifyCheckpointSignature, type SealedEntry } from './audit-checkpoints.js';

/**
 * What each audit event records in `data`, by event name (spec §8). Timestamps are ISO 8601
 * strings; absent values are `null`, never missing, so every entry of an event has one shape.
 */
export interface AuditEventData {
  'action.created': {
    type: string;
    status: ActionStatus;
    priority: number;
    requestedBy: string;
    payloadHash: string;
    /** How the conditions of the rules in force came out (only when some rule has one). */
    conditions?: Array<{ rule: string; applies: boolean; error: string | null }>;
  };
  /** `rule` is the blocking rule's `ruleKey`. */
  'action.blocked': { rule: string; kind: SafetyRuleKind; reason: string };
  /** `recipient` is where the approval email went, null when none was sent. */
  'approval.requested': {
    expiresAt: string;
    recipient: string | null;
    /** When, and to whom (the rule's escalateTo), the request escalates without a decision; absent: it does not. */
    escalation?: { rule: string; at: string; afterMinutes: number; to: string[] };
  };
  /** No decision came in time: `to` were asked as well (each with a link of their own); `skipped`: handles with no email address. */
  'approval.escalated': { afterMinutes: number; to: string[]; skipped: string[] };
  /** A wrong one-time code on an approval link; `attemptsLeft` before the link locks. */
  'approval.code_rejected': { attemptsLeft: number };
  /** The link locked after `attempts` wrong codes; the action must be decided another way. */
  'approval.locked': { attempts: number };
  /** `standingApproval`: the grant that approved it at creation (its actor is whoever granted it). */
  'action.approved': { comment: string | null; standingApproval?: string; approvals?: number; required?: number; revision?: number };
  /** An approver edited the payload before approving: revision `revision`, `diff` against the previous one. */
  'action.revised': { revision: number; payloadHash: string; diff: unknown[] };
  /** One approval of a quorum, the action still PENDING: `approvals` of `required` for `revision`. */
  'approval.recorded': { comment: string | null; revision: number; approvals: number; required: number };
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
  'standing_approval.created': { standingApprovalId: string; actionType: string; userId: string | null; condition: string | null; expiresAt: string };
  'standing_approval.revoked': { standingApprovalId: string; actionType: string; userId: string | null };
  /**
   * An outbound webhook endpoint registered or changed; `before` is null when it is new. The
   * secret appears only as whether it changed, never its value.
   */
  'webhook_endpoint.upserted': { endpointId: string; url: string; before: WebhookEndpointState | null; after: WebhookEndpointState; secretChanged: boolean };
  /** The engine disabled an endpoint after repeated failed deliveries (actor `system`). */
  'webhook_endpoint.disabled': { endpointId: string; url: string; reason: string; consecutiveFailures: number; failedDeliveries: number };
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
  /** Absent in entries written before conditions existed. */
  condition?: string | null;
  /** Absent in entries written before grace periods existed. */
  graceSeconds?: number | null;
  /** Absent in entries written before quorums existed. */
  approvalsRequired?: number | null;
  /** Absent in entries written before escalation existed. */
  escalateAfterMinutes?: number | null;
  escalateTo?: string[];
}

/** A handler configuration as audited: never the secrets' values. */
export interface HandlerConfigState {
  settings: unknown;
  enabled: boolean;
  hasSecrets: boolean;
  secretNames: string[];
}

/** An outbound webhook endpoint as audited: never its secret. */
export interface WebhookEndpointState {
  url: string;
  /** The statuses delivered; empty: every status. */
  events: ActionStatus[];
  enabled: boolean;
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

/** The stored fields a format-2 entry's content hash covers (an `AuditEntry` row has them all). */
export interface AuditContentFields {
  chain: string;
  spaceId: string | null;
  actionId: string | null;
  event: string;
  actor: string;
  ip: string | null;
  userAgent: string | null;
  data: unknown;
  createdAt: Date;
}

/** The stored fields a format-1 entry's hash covers (entries of the `legacy` chain): its id and prevHash instead of its chain. */
export type AuditHashFields = Omit<AuditContentFields, 'chain'> & { id: bigint; prevHash: string };

/** Thrown when an entry cannot be written as given; the caller's transaction should roll back. */
export class AuditWriteError extends Error {
  override name = 'AuditWriteError';
}

/** The chain of an admin event (no action): one per space, `admin:global` for events of no space. */
export function adminChain(spaceId: string | null): string {
  return `admin:${spaceId ?? 'global'}`;
}

/**
 * Format 1 (entries written before per-chain hashing, chain `legacy`): SHA-256 (hex) of the
 * canonical JSON of id, spaceId, actionId, event, actor, ip, userAgent, data, createdAt and prevHash.
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
 * Format 2, step 1: SHA-256 (hex) of the canonical JSON of an entry's content: chain, spaceId,
 * actionId, event, actor, ip, userAgent, data and createdAt (ISO 8601, milliseconds).
 */
export function auditContentHash(entry: AuditContentFields): string {
  return contentHashOf(entry, canonicalJson(entry.data));
}

/**
 * {@link auditContentHash} with `data` already in canonical JSON: the envelope's keys are written
 * in canonicalJson's (sorted) order around it, so the text is the same canonicalJson would make
 * of the whole entry, without encoding `data` twice.
 */
function contentHashOf(entry: Omit<AuditContentFields, 'data'>, data: string): string {
  const str = (value: string | null) => (value === null ? 'null' : JSON.stringify(value));
  const content =
    `{"actionId":${str(entry.actionId)},"actor":${JSON.stringify(entry.actor)},"chain":${JSON.stringify(entry.chain)},` +
    `"createdAt":${JSON.stringify(entry.createdAt.toISOString())},"data":${data},"event":${JSON.stringify(entry.event)},` +
    `"ip":${str(entry.ip)},"spaceId":${str(entry.spaceId)},"userAgent":${str(entry.userAgent)}}`;
  return createHash('sha256').update(content).digest('hex');
}

/**
 * Format 2, step 2: an entry's hash = SHA-256 (hex) of `prevHash LF chainSeq LF contentHash`,
 * the same as the SQL function `ae_audit_links` computes inside the writing statement.
 */
export function auditLink(prevHash: string, chainSeq: number, contentHash: string): string {
  return createHash('sha256').update(`${prevHash}\n${chainSeq}\n${contentHash}`).digest('hex');
}

/** An entry ready to be written: ids checked, data canonical, content hashed. */
export interface PreparedAuditEntry {
  chain: string;
  event: string;
  actor: string;
  spaceId: string | null;
  actionId: string | null;
  ip: string | null;
  userAgent: string | null;
  /** Canonical JSON text of `data`. */
  data: string;
  createdAt: Date;
  contentHash: string;
}

/**
 * Checks and hashes entries for `chain`, all stamped `createdAt`. Throws AuditWriteError when
 * an id is not a UUID (PostgreSQL would store another spelling than the one hashed).
 */
export function prepareAuditEntries(chain: string, inputs: readonly AuditInput[], createdAt: Date): PreparedAuditEntry[] {
  return inputs.map((input) => {
    const entry = {
      chain,
      event: input.event,
      actor: input.actor,
      spaceId: uuidOrNull(input.spaceId, 'spaceId'),
      actionId: uuidOrNull(input.actionId, 'actionId'),
      ip: input.ip ?? null,
      userAgent: input.userAgent ?? null,
      createdAt,
    };
    const data = canonicalJson(input.data);
    return { ...entry, data, contentHash: contentHashOf(entry, data) };
  });
}

/** Appends one admin entry; see {@link appendAuditEntries}. */
export async function appendAuditEntry(tx: Prisma.TransactionClient, input: AuditInput): Promise<AppendedAuditEntry> {
  const [appended] = await appendAuditEntries(tx, [input]);
  return appended!;
}

/**
 * Appends admin entries (events of no action: rules, handler configuration, keys, KYC, email)
 * to their space's admin chain, in the order given, inside the caller's transaction. The chain's
 * head row (`AuditChainHead`) is locked until the transaction ends, so admin writers of one space
 * take turns; nothing else waits for them. Action events are written by the lifecycle writer
 * (src/engine/lifecycle), in the statement that moves the action.
 *
 * @throws AuditWriteError when `tx` is not a transaction, an entry names an action, the entries
 *   span spaces, or an id is not a UUID.
 */
export async function appendAuditEntries(tx: Prisma.TransactionClient, inputs: readonly AuditInput[]): Promise<AppendedAuditEntry[]> {
  if (inputs.length === 0) return [];
  // A PrismaClient type-checks as a TransactionClient, but outside a transaction the row lock
  // would end with its statement. Prisma's transaction clients lack $disconnect; clients have it.
  if (typeof (tx as { $disconnect?: unknown }).$disconnect === 'function') {
    throw new AuditWriteError('audit entries must be appended inside a transaction (the tx of db.$transaction), not on the client');
  }
  if (inputs.some((input) => input.actionId)) {
    throw new AuditWriteError('an action\'s audit entries are written by the lifecycle writer (src/engine/lifecycle), not appended');
  }
  const spaces = new Set(inputs.map((input) => input.spaceId ?? null));
  if (spaces.size !== 1) throw new AuditWriteError('admin audit entries appended together must belong to one space');
  const chain = adminChain(uuidOrNull([...spaces][0], 'spaceId'));
  await tx.$executeRaw`INSERT INTO "AuditChainHead" ("chain", "seq", "head") VALUES (${chain}, 0, '') ON CONFLICT ("chain") DO NOTHING`;
  const [head] = await tx.$queryRaw<Array<{ seq: number; head: string }>>`
    SELECT "seq", "head" FROM "AuditChainHead" WHERE "chain" = ${chain} FOR UPDATE`;
  // Taken after the lock, so createdAt follows chain order on any one clock.
  const prepared = prepareAuditEntries(chain, inputs, new Date());
  let prevHash = head!.head;
  let seq = head!.seq;
  const rows = prepared.map((entry) => {
    seq += 1;
    const hash = auditLink(prevHash, seq, entry.contentHash);
    const row = { ...entry, chainSeq: seq, prevHash, hash };
    prevHash = hash;
    return row;
  });
  const values = rows.map(
    (r) =>
      Prisma.sql`(${r.chain}, ${r.chainSeq}::int, ${r.spaceId}::uuid, NULL::uuid, ${r.event}, ${r.actor}, ${r.ip}, ${r.userAgent},
        ${r.data}::jsonb, ${r.prevHash}, ${r.hash}, ${r.createdAt.toISOString()}::timestamptz)`,
  );
  const inserted = await tx.$queryRaw<Array<{ id: bigint; hash: string }>>`
    INSERT INTO "AuditEntry" ("chain", "chainSeq", "spaceId", "actionId", "event", "actor", "ip", "userAgent", "data", "prevHash", "hash", "createdAt")
    VALUES ${Prisma.join(values)} RETURNING "id", "hash"`;
  await tx.$executeRaw`UPDATE "AuditChainHead" SET "seq" = ${seq}::int, "head" = ${prevHash} WHERE "chain" = ${chain}`;
  return inserted.map(({ id, hash }) => ({ id: BigInt(id), hash }));
}

// PostgreSQL stores a uuid in lower case; hashing any other spelling would never verify.
function uuidOrNull(value: string | null | undefined, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (!UUID.test(value)) throw new AuditWriteError(`audit ${field} is not a UUID: "${value}"`);
  return value.toLowerCase();
}

/** The result of {@link verifyAuditChain}. */
export interface AuditVerification {
  ok: boolean;
  /** Entries examined, including the first bad one. */
  checked: number;
  /**
   * The first bad entry in (chain, chainSeq) order. `id` is null only when a chain's recorded
   * head names entries of which none remain.
   */
  firstBad?: { id: bigint | null; chain: string; reason: AuditBreakReason };
}

export type AuditBreakReason =
  | 'hash mismatch: content altered'
  | 'prevHash does not match previous entry'
  | 'chain gap: an entry before this one was deleted'
  | 'chain head mismatch: entries were cut off the end'
  | 'chain head mismatch: entries past the recorded head';

/** A stored entry with every field its hash and chain position depend on. */
export interface StoredAuditEntry extends AuditContentFields {
  id: bigint;
  chainSeq: number;
  format: number;
  prevHash: string;
  hash: string;
}

/**
 * Walks every chain in (chain, chainSeq) order, in keyset-paginated batches (constant memory):
 * each entry's hash against its content and its prevHash against the previous entry's hash
 * ("" for the first), no gap in chainSeq. Then, in one query, each chain's last entry against
 * the head its owner records (`Action.auditSeq`/`auditHead`, `AuditChainHead`), so entries cut
 * off the end, a chain deleted whole, or entries added past the head show too. Stops at the
 * first bad entry.
 *
 * This proves each chain consistent with itself and its head, not that nobody rewrote a chain
 * consistently (someone who can also recompute every later hash and the head can); that is what
 * the signed checkpoints of {@link verifyAuditLog} add.
 */
export async function verifyAuditChain(
  db: PrismaClient | Prisma.TransactionClient,
  options: { batchSize?: number } = {},
): Promise<AuditVerification> {
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer (got ${batchSize})`);
  let checked = 0;
  let last: StoredAuditEntry | null = null;
  const bad = (entry: StoredAuditEntry, reason: AuditBreakReason): AuditVerification => ({
    ok: false,
    checked,
    firstBad: { id: entry.id, chain: entry.chain, reason },
  });
  for (;;) {
    const batch: StoredAuditEntry[] = await db.auditEntry.findMany({
      where: last ? { OR: [{ chain: { gt: last.chain } }, { chain: last.chain, chainSeq: { gt: last.chainSeq } }] } : {},
      orderBy: [{ chain: 'asc' }, { chainSeq: 'asc' }],
      take: batchSize,
    });
    for (const entry of batch) {
      checked += 1;
      const sameChain = last !== null && last.chain === entry.chain;
      const expectedSeq = sameChain ? last!.chainSeq + 1 : 1;
      const expectedPrev = sameChain ? last!.hash : '';
      if (entry.chainSeq !== expectedSeq) return bad(entry, 'chain gap: an entry before this one was deleted');
      if (storedEntryHash(entry) !== entry.hash) return bad(entry, 'hash mismatch: content altered');
      if (entry.prevHash !== expectedPrev) return bad(entry, 'prevHash does not match previous entry');
      last = entry;
    }
    if (batch.length < batchSize) break;
  }
  const [head] = await db.$queryRaw<Array<{ chain: string; seq: number; lastId: bigint | null; lastSeq: number | null }>>`
    WITH heads AS (
      SELECT a."id"::text AS chain, a."auditSeq" AS seq, a."auditHead" AS head FROM "Action" a
      UNION ALL
      SELECT h."chain", h."seq", h."head" FROM "AuditChainHead" h)
    SELECT heads.chain AS "chain", heads.seq AS "seq", l."id" AS "lastId", l."chainSeq" AS "lastSeq"
    FROM heads LEFT JOIN LATERAL (
      SELECT e."id", e."chainSeq", e."hash" FROM "AuditEntry" e WHERE e."chain" = heads.chain ORDER BY e."chainSeq" DESC LIMIT 1) l ON true
    WHERE CASE WHEN heads.seq = 0 THEN l."id" IS NOT NULL
               ELSE l."id" IS NULL OR l."chainSeq" <> heads.seq OR l."hash" <> heads.head END
    ORDER BY heads.chain LIMIT 1`;
  if (head) {
    const past = head.lastSeq !== null && head.lastSeq > head.seq;
    return {
      ok: false,
      checked,
      firstBad: {
        id: head.lastId === null ? null : BigInt(head.lastId),
        chain: head.chain,
        reason: past ? 'chain head mismatch: entries past the recorded head' : 'chain head mismatch: entries were cut off the end',
      },
    };
  }
  return { ok: true, checked };
}

/** An entry's hash recomputed from its stored fields, by its format. */
export function storedEntryHash(entry: StoredAuditEntry): string {
  return entry.format === 1 ? hashAuditEntry(entry) : auditLink(entry.prevHash, entry.chainSeq, auditContentHash(entry));
}

/** The result of {@link verifyAuditSeal}. */
export interface SealVerification {
  ok: boolean;
  /** Checkpoints examined, including the first bad one. */
  checkpoints: number;
  /** Entries compared with the checkpoints that sealed them. */
  sealed: number;
  /** Entries after the last checkpoint (not yet sealed): how many, and the oldest one's time. */
  unsealed: number;
  oldestUnsealedAt: Date | null;
  /** The keys whose signatures were checked. */
  keyIds: string[];
  /**
   * true when signatures were checked against the public keys stored in the database (no
   * trusted keys given): someone who can write the database could then have added a key of
   * their own. Pass `trustedKeys` to rule that out.
   */
  keysFromDatabase: boolean;
  /** The first checkpoint that fails, and the entry at fault when it is an entry's. */
  firstBad?: { checkpointId: bigint; entryId?: bigint; reason: SealBreakReason };
}

export type SealBreakReason =
  | 'checkpoint malformed'
  | 'checkpoint does not follow the previous one'
  | 'checkpoint hash mismatch: checkpoint altered'
  | 'checkpoint signed by an unknown or untrusted key'
  | 'checkpoint signature invalid'
  | 'entry altered after sealing'
  | 'entry deleted after sealing'
  | 'entry inserted into a sealed range'
  | 'entry reordered after sealing'
  | 'checkpoint missing or changed: the newest one recorded outside the database is not in the log';

/** Options of {@link verifyAuditSeal} and {@link verifyAuditLog}. */
export interface AuditSealOptions {
  batchSize?: number;
  trustedKeys?: ReadonlyMap<string, string>;
  expectedHead?: { id: bigint; hash: string } | null;
}

interface CheckpointRow {
  id: bigint;
  prevHash: string;
  hash: string;
  lastTxid: bigint;
  lastId: bigint;
  entryCount: number;
  entries: string;
  signature: string;
  keyId: string;
}

interface SealedRow {
  id: bigint;
  txid: bigint;
  hash: string;
}

/** (txid, id) ≤ (t, i) */
const atOrBefore = (e: { txid: bigint; id: bigint }, t: bigint, i: bigint) => e.txid < t || (e.txid === t && e.id <= i);

/**
 * Checks every checkpoint in order (spec §8): it follows the previous one (prevHash, a cursor
 * further on), its hash recomputes, its Ed25519 signature verifies with its key, and the
 * entries now stored in its (txid, id) range are exactly the ones it lists with the hashes it
 * lists, naming the first that is not: altered (another hash), deleted (listed, missing),
 * inserted (present, not listed) or reordered (present, but moved in (txid, id) order by a
 * changed txid). Entries after the last checkpoint are counted as unsealed. Reads entries and
 * checkpoints in keyset pages (constant memory; one checkpoint's range at a time).
 *
 * `trustedKeys` (key id → raw public key, base64url): only these may have signed; without it the
 * keys in `SigningKey` are used and `keysFromDatabase` says so. `expectedHead`: the newest
 * checkpoint as recorded outside the database (the sealer's anchor); it must be in the log,
 * unchanged, so newest checkpoints deleted along with what they sealed are noticed too.
 */
export async function verifyAuditSeal(
  db: PrismaClient | Prisma.TransactionClient,
  options: AuditSealOptions = {},
): Promise<SealVerification> {
  const batchSize = options.batchSize ?? 5000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer (got ${batchSize})`);
  const keys = options.trustedKeys ?? new Map((await db.signingKey.findMany()).map((k) => [k.keyId, k.publicKey] as const));
  const usedKeys = new Set<string>();
  let checkpoints = 0;
  let sealed = 0;
  let prevHash = '';
  let cursor = { txid: 0n, id: 0n };
  let expected = options.expectedHead ?? null;

  // Stored entries in (txid, id) order, a page at a time.
  let page: SealedRow[] = [];
  let pos = 0;
  let exhausted = false;
  let after = { txid: 0n, id: 0n };
  const peek = async (): Promise<SealedRow | null> => {
    if (pos < page.length) return page[pos]!;
    if (exhausted) return null;
    page = (
      await db.$queryRaw<SealedRow[]>`
        SELECT "id", "txid", "hash" FROM "AuditEntry" WHERE ("txid", "id") > (${after.txid}, ${after.id})
        ORDER BY "txid", "id" LIMIT ${batchSize}::int`
    ).map((r) => ({ id: BigInt(r.id), txid: BigInt(r.txid), hash: r.hash }));
    pos = 0;
    if (page.length < batchSize) exhausted = true;
    if (page.length === 0) return null;
    after = page[page.length - 1]!;
    return page[0]!;
  };

  const result = (firstBad?: SealVerification['firstBad']) => ({ firstBad, checkpoints, sealed, keyIds: [...usedKeys].sort() });
  let lastCheckpointId: bigint | null = null;
  for (;;) {
    const batch: CheckpointRow[] = await db.auditCheckpoint.findMany({
      where: lastCheckpointId === null ? {} : { id: { gt: lastCheckpointId } },
      orderBy: { id: 'asc' },
      take: 20,
    });
    for (const c of batch) {
      checkpoints += 1;
      lastCheckpointId = c.id;
      const fail = (reason: SealBreakReason, entryId?: bigint) =>
        finish(db, cursor, options.trustedKeys === undefined, result({ checkpointId: c.id, ...(entryId === undefined ? {} : { entryId }), reason }));
      let listed: SealedEntry[];
      try {
        listed = parseCheckpointEntries(c.entries);
      } catch {
        return fail('checkpoint malformed');
      }
      const lastListed = listed[listed.length - 1];
      if (listed.length === 0 || listed.length !== c.entryCount || lastListed!.id !== c.lastId) return fail('checkpoint malformed');
      if (c.prevHash !== prevHash || atOrBefore({ txid: c.lastTxid, id: c.lastId }, cursor.txid, cursor.id)) {
        return fail('checkpoint does not follow the previous one');
      }
      if (checkpointHash(c) !== c.hash) return fail('checkpoint hash mismatch: checkpoint altered');
      const publicKey = keys.get(c.keyId);
      if (!publicKey) return fail('checkpoint signed by an unknown or untrusted key');
      usedKeys.add(c.keyId);
      if (!verifyCheckpointSignature(publicKey, c.hash, c.signature)) return fail('checkpoint signature invalid');

      // The entries stored in this checkpoint's range now.
      const stored: SealedRow[] = [];
      for (let e = await peek(); e && atOrBefore(e, c.lastTxid, c.lastId); e = await peek()) {
        stored.push(e);
        pos += 1;
      }
      const storedIds = new Set(stored.map((e) => e.id));
      const listedIds = new Set(listed.map((e) => e.id));
      for (let k = 0; k < Math.max(listed.length, stored.length); k++) {
        const want = listed[k];
        const have = stored[k];
        if (want && have && want.id === have.id) {
          if (want.hash !== have.hash) return fail('entry altered after sealing', want.id);
          continue;
        }
        if (want && !storedIds.has(want.id)) {
          // Missing from its place: deleted, or moved elsewhere in (txid, id) order by a changed txid.
          const moved = await db.auditEntry.count({ where: { id: want.id } });
          return fail(moved ? 'entry reordered after sealing' : 'entry deleted after sealing', want.id);
        }
        if (have && !listedIds.has(have.id)) return fail('entry inserted into a sealed range', have.id);
        return fail('entry reordered after sealing', (have ?? want)!.id);
      }
      sealed += stored.length;
      prevHash = c.hash;
      cursor = { txid: c.lastTxid, id: c.lastId };
      if (expected && c.id === expected.id) {
        if (c.hash !== expected.hash) return fail('checkpoint missing or changed: the newest one recorded outside the database is not in the log');
        expected = null;
      }
    }
    if (batch.length < 20) break;
  }
  if (expected) {
    return finish(db, cursor, options.trustedKeys === undefined, result({ checkpointId: expected.id, reason: 'checkpoint missing or changed: the newest one recorded outside the database is not in the log' }));
  }
  return finish(db, cursor, options.trustedKeys === undefined, result());
}

async function finish(
  db: PrismaClient | Prisma.TransactionClient,
  cursor: { txid: bigint; id: bigint },
  keysFromDatabase: boolean,
  partial: Pick<SealVerification, 'firstBad' | 'checkpoints' | 'sealed' | 'keyIds'>,
): Promise<SealVerification> {
  const [row] = await db.$queryRaw<Array<{ count: number; oldest: Date | null }>>`
    SELECT count(*)::int AS "count", min("createdAt") AS "oldest" FROM "AuditEntry" WHERE ("txid", "id") > (${cursor.txid}, ${cursor.id})`;
  const { firstBad, ...rest } = partial;
  return {
    ok: !firstBad,
    ...rest,
    unsealed: firstBad ? 0 : (row?.count ?? 0),
    oldestUnsealedAt: firstBad ? null : (row?.oldest ?? null),
    keysFromDatabase,
    ...(firstBad ? { firstBad } : {}),
  };
}

/** The result of {@link verifyAuditLog}: the chains and the checkpoints, each with its first bad entry. */
export interface AuditLogVerification {
  ok: boolean;
  chains: AuditVerification;
  seal: SealVerification;
}

/**
 * `audit verify`: {@link verifyAuditChain} and {@link verifyAuditSeal}, both run in full, so
 * a rewrite that keeps the chains consistent (a superuser who recomputes hashes and heads) is
 * still named by the checkpoints, and one that breaks a chain is named by both.
 */
export async function verifyAuditLog(db: PrismaClient | Prisma.TransactionClient, options: AuditSealOptions = {}): Promise<AuditLogVerification> {
  const chains = await verifyAuditChain(db, { batchSize: options.batchSize ?? 1000 });
  const seal = await verifyAuditSeal(db, { ...options, batchSize: options.batchSize ?? 5000 });
  return { ok: chains.ok && seal.ok, chains, seal };
}
