import { z } from 'zod';
import type { PrismaClient } from '../generated/prisma/client.js';
import { auditContentHash, auditLink, hashAuditEntry } from './audit.js';
import { CheckpointFormatError, checkpointHash, parseCheckpointEntries, verifyCheckpointSignature } from './audit-checkpoints.js';
import { UUID } from './ids.js';
import { publicKeysFromJwks, signingJwk, SigningKeyError, type SigningJwk } from './signing.js';

/**
 * `audit export --action ID` (spec §8): one action's audit entries with the signed checkpoints
 * that sealed them and the public keys that signed those, as one JSON bundle that verifies
 * offline ({@link verifyAuditBundle}, `audit verify --bundle FILE`), with no database.
 *
 * What a bundle proves: each entry is the one that was sealed (its hash is listed in a checkpoint
 * whose hash recomputes and whose Ed25519 signature verifies), its content is what was hashed,
 * and the action's chain runs 1..n with each entry linked to the one before. What it cannot
 * prove alone: that no entry followed the last one exported (a later checkpoint would list it).
 */

/** The `format` of a bundle. */
export const AUDIT_BUNDLE_FORMAT = 'action-engine audit bundle v1';

/** The action does not exist, or its entries cannot be exported yet. */
export class AuditExportError extends Error {
  override name = 'AuditExportError';
}

/** The file is not an audit bundle (not JSON, or fields missing or malformed). */
export class AuditBundleError extends Error {
  override name = 'AuditBundleError';
}

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 hash in hex');
const decimal = z.string().regex(/^\d{1,19}$/, 'a decimal integer');
const isoDate = z.iso.datetime({ offset: true });

const bundleEntry = z.object({
  id: decimal,
  chain: z.string(),
  chainSeq: z.number().int().min(1),
  format: z.union([z.literal(1), z.literal(2)]),
  txid: decimal,
  spaceId: z.string().nullable(),
  actionId: z.string().nullable(),
  event: z.string(),
  actor: z.string(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  data: z.unknown(),
  createdAt: isoDate,
  prevHash: z.union([hex64, z.literal('')]),
  hash: hex64,
});

const bundleCheckpoint = z.object({
  id: decimal,
  prevHash: z.union([hex64, z.literal('')]),
  hash: hex64,
  lastTxid: decimal,
  lastId: decimal,
  entryCount: z.number().int().min(1),
  entries: z.string(),
  signature: z.string(),
  keyId: z.string(),
  createdAt: isoDate,
});

const bundleSchema = z.object({
  format: z.literal(AUDIT_BUNDLE_FORMAT),
  exportedAt: isoDate,
  actionId: z.string().regex(UUID, 'a UUID'),
  entries: z.array(bundleEntry).min(1),
  checkpoints: z.array(bundleCheckpoint).min(1),
  keys: z.array(z.unknown()),
});

/** An exported bundle (bigints as decimal strings, dates as ISO 8601). */
export type AuditBundle = Omit<z.infer<typeof bundleSchema>, 'keys'> & { keys: SigningJwk[] };
export type AuditBundleEntry = z.infer<typeof bundleEntry>;
export type AuditBundleCheckpoint = z.infer<typeof bundleCheckpoint>;

export interface ExportOptions {
  /** How long to wait for the sealer to seal the action's newest entries (default 5000 ms). */
  waitMs?: number;
  /** Between looks while waiting (default 250 ms). */
  pollMs?: number;
}

/**
 * The bundle of action `actionId`. When some of its entries are not sealed yet, waits up to
 * `waitMs` for the sealer, then throws {@link AuditExportError} saying how many are missing.
 */
export async function exportActionAudit(db: PrismaClient, actionId: string, options: ExportOptions = {}): Promise<AuditBundle> {
  if (!UUID.test(actionId)) throw new AuditExportError(`"${actionId.slice(0, 64)}" is not an action id (a UUID)`);
  const id = actionId.toLowerCase();
  const action = await db.action.findUnique({ where: { id }, select: { id: true } });
  if (!action) throw new AuditExportError(`no action ${id}`);
  const entries = await db.auditEntry.findMany({ where: { OR: [{ chain: id }, { actionId: id }] }, orderBy: { id: 'asc' } });
  if (entries.length === 0) throw new AuditExportError(`action ${id} has no audit entries`);

  const deadline = Date.now() + (options.waitMs ?? 5000);
  for (;;) {
    // For each entry the checkpoint with the first cursor at or after it: that is the one that
    // sealed it (cursors only grow). Without an index on the cursor this reads the checkpoint
    // table once per entry; an export is rare and small.
    const covering = await db.$queryRaw<Array<{ entryId: bigint; checkpointId: bigint | null }>>`
      SELECT e.id AS "entryId", c.id AS "checkpointId"
      FROM unnest(${entries.map((e) => e.txid)}::bigint[], ${entries.map((e) => e.id)}::bigint[]) AS e(txid, id)
      LEFT JOIN LATERAL (
        SELECT c."id" FROM "AuditCheckpoint" c WHERE (c."lastTxid", c."lastId") >= (e.txid, e.id)
        ORDER BY c."lastTxid", c."lastId" LIMIT 1) c ON true`;
    const unsealed = covering.filter((r) => r.checkpointId === null).length;
    if (unsealed === 0) {
      const ids = [...new Set(covering.map((r) => BigInt(r.checkpointId!)))];
      const checkpoints = await db.auditCheckpoint.findMany({ where: { id: { in: ids } }, orderBy: { id: 'asc' } });
      const keys = await db.signingKey.findMany({ where: { keyId: { in: [...new Set(checkpoints.map((c) => c.keyId))] } }, orderBy: { createdAt: 'asc' } });
      return {
        format: AUDIT_BUNDLE_FORMAT,
        exportedAt: new Date().toISOString(),
        actionId: id,
        entries: entries.map((e) => ({
          id: e.id.toString(),
          chain: e.chain,
          chainSeq: e.chainSeq,
          format: e.format as 1 | 2,
          txid: e.txid.toString(),
          spaceId: e.spaceId,
          actionId: e.actionId,
          event: e.event,
          actor: e.actor,
          ip: e.ip,
          userAgent: e.userAgent,
          data: e.data,
          createdAt: e.createdAt.toISOString(),
          prevHash: e.prevHash,
          hash: e.hash,
        })),
        checkpoints: checkpoints.map((c) => ({
          id: c.id.toString(),
          prevHash: c.prevHash,
          hash: c.hash,
          lastTxid: c.lastTxid.toString(),
          lastId: c.lastId.toString(),
          entryCount: c.entryCount,
          entries: c.entries,
          signature: c.signature,
          keyId: c.keyId,
          createdAt: c.createdAt.toISOString(),
        })),
        keys: keys.map(signingJwk),
      };
    }
    if (Date.now() >= deadline) {
      throw new AuditExportError(
        `${unsealed} of action ${id}'s ${entries.length} audit entries are not sealed into a checkpoint yet: the sealer runs in the worker processes ` +
          '(`start`, `worker`) every AUDIT_SEAL_INTERVAL_MS; start one, or try again in a moment',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 250));
  }
}

/** The result of {@link verifyAuditBundle}. */
export interface BundleVerification {
  ok: boolean;
  actionId: string;
  entries: number;
  checkpoints: number;
  /** Ids of the keys whose signatures were checked. */
  keyIds: string[];
  /** true when the keys came from the bundle itself (no trusted keys given): compare them with the engine's published keys. */
  keysFromBundle: boolean;
  firstBad?: { entryId?: string; checkpointId?: string; reason: BundleBreakReason };
}

export type BundleBreakReason =
  | 'checkpoint malformed'
  | 'checkpoint hash mismatch: checkpoint altered'
  | 'checkpoint signed by an unknown or untrusted key'
  | 'checkpoint signature invalid'
  | 'entry not of this action'
  | 'hash mismatch: content altered'
  | 'chain gap: an entry is missing'
  | 'prevHash does not match previous entry'
  | 'entry not sealed by any checkpoint in the bundle';

/**
 * Verifies a bundle with no database: every checkpoint's hash and signature (with `trustedKeys`,
 * key id → raw public key, when given; else with the bundle's own keys, each key id recomputed
 * from its key), every entry's hash from its content, the action's chain (chainSeq 1..n, each
 * prevHash the previous hash), and each entry's id and hash listed in a checkpoint of the bundle
 * whose cursor is at or after it. Names the first failure. Throws {@link AuditBundleError}
 * when `value` is not a bundle at all.
 */
export function verifyAuditBundle(value: unknown, options: { trustedKeys?: ReadonlyMap<string, string> } = {}): BundleVerification {
  const parsed = bundleSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new AuditBundleError(`not an audit bundle: ${issue.path.join('.') || 'the file'}: ${issue.message}`);
  }
  const bundle = parsed.data;
  let keys: ReadonlyMap<string, string>;
  if (options.trustedKeys) keys = options.trustedKeys;
  else {
    try {
      keys = new Map(publicKeysFromJwks(bundle.keys).map((k) => [k.keyId, k.publicKey] as const));
    } catch (error) {
      if (error instanceof SigningKeyError) throw new AuditBundleError(`not an audit bundle: keys: ${error.message}`);
      throw error;
    }
  }
  const usedKeys = new Set<string>();
  const base = { actionId: bundle.actionId, entries: bundle.entries.length, checkpoints: bundle.checkpoints.length, keysFromBundle: !options.trustedKeys };
  const fail = (reason: BundleBreakReason, at: { entryId?: string; checkpointId?: string }): BundleVerification => ({
    ok: false,
    ...base,
    keyIds: [...usedKeys].sort(),
    firstBad: { ...at, reason },
  });

  // Checkpoints: each on its own (they need not be consecutive).
  const sealedBy = new Map<string, Array<{ hash: string; lastTxid: bigint; lastId: bigint }>>();
  for (const c of bundle.checkpoints) {
    let listed;
    try {
      listed = parseCheckpointEntries(c.entries);
    } catch (error) {
      if (error instanceof CheckpointFormatError) return fail('checkpoint malformed', { checkpointId: c.id });
      throw error;
    }
    if (listed.length !== c.entryCount || listed[listed.length - 1]!.id.toString() !== c.lastId) return fail('checkpoint malformed', { checkpointId: c.id });
    if (checkpointHash(c) !== c.hash) return fail('checkpoint hash mismatch: checkpoint altered', { checkpointId: c.id });
    const publicKey = keys.get(c.keyId);
    if (!publicKey) return fail('checkpoint signed by an unknown or untrusted key', { checkpointId: c.id });
    usedKeys.add(c.keyId);
    if (!verifyCheckpointSignature(publicKey, c.hash, c.signature)) return fail('checkpoint signature invalid', { checkpointId: c.id });
    for (const e of listed) {
      const list = sealedBy.get(e.id.toString()) ?? [];
      list.push({ hash: e.hash, lastTxid: BigInt(c.lastTxid), lastId: BigInt(c.lastId) });
      sealedBy.set(e.id.toString(), list);
    }
  }

  // Entries: the action's chain in order, then each one's seal.
  const ordered = [...bundle.entries].sort((a, b) => (a.format !== b.format ? a.format - b.format : a.format === 2 ? a.chainSeq - b.chainSeq : Number(BigInt(a.id) - BigInt(b.id))));
  let previous: AuditBundleEntry | null = null;
  for (const e of ordered) {
    const at = { entryId: e.id };
    const inChain = e.format === 2 && e.chain === bundle.actionId && e.actionId === bundle.actionId;
    const legacy = e.format === 1 && e.chain === 'legacy' && e.actionId === bundle.actionId;
    if (!inChain && !legacy) return fail('entry not of this action', at);
    const fields = { ...e, id: BigInt(e.id), createdAt: new Date(e.createdAt) };
    const hash = e.format === 1 ? hashAuditEntry(fields) : auditLink(e.prevHash, e.chainSeq, auditContentHash(fields));
    if (hash !== e.hash) return fail('hash mismatch: content altered', at);
    if (inChain) {
      const expectedSeq = previous ? previous.chainSeq + 1 : 1;
      if (e.chainSeq !== expectedSeq) return fail('chain gap: an entry is missing', at);
      if (e.prevHash !== (previous?.hash ?? '')) return fail('prevHash does not match previous entry', at);
      previous = e;
    }
    const txid = BigInt(e.txid);
    const id = BigInt(e.id);
    const seal = (sealedBy.get(e.id) ?? []).find((s) => s.hash === e.hash && (txid < s.lastTxid || (txid === s.lastTxid && id <= s.lastId)));
    if (!seal) return fail('entry not sealed by any checkpoint in the bundle', at);
  }
  return { ok: true, ...base, keyIds: [...usedKeys].sort() };
}

/** Parses bundle text (JSON); throws {@link AuditBundleError} when it is not JSON. */
export function parseAuditBundle(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new AuditBundleError('not an audit bundle: the file is not JSON');
  }
}
