import type { Redis } from 'ioredis';
import type { Prisma, PrismaClient } from '../generated/prisma/client.js';
import { checkpointEntriesText, checkpointHash, signCheckpoint, type SealedEntry } from './audit-checkpoints.js';
import { briefError, withRedisTimeout } from './infra-errors.js';
import { registerSigningKey, type Signer } from './signing.js';

/**
 * The audit sealer (spec §8): folds newly committed audit entries into signed checkpoints, so
 * that rewriting history takes the signing key, not just the database. Writers never wait for
 * it: they only append entries (each action's chain under its own row lock); the sealer reads
 * behind them.
 *
 * One sealer works at a time across all processes: each round is a transaction that first takes
 * `pg_try_advisory_xact_lock(AUDIT_SEALER_LOCK)` (a lock no writer takes) and skips the round
 * when another process holds it. It reads the last checkpoint's cursor (lastTxid, lastId), then
 * the entries after it in (txid, id) order whose transaction id is below the xmin of its own
 * snapshot: those transactions have all finished, so no entry can ever appear later inside a
 * sealed range (an entry of a transaction still running has a txid at or above xmin, and one
 * that starts later gets a larger txid). Up to `batchSize` entries make one checkpoint; a round
 * repeats until it has caught up.
 *
 * How far behind it runs: `intervalMs` plus the longest write transaction running at the time
 * (in the whole PostgreSQL cluster: transaction ids are cluster-wide).
 */

/** The advisory lock of the sealer (two-key form; migrations use ("AE", 1)). */
export const AUDIT_SEALER_LOCK: readonly [number, number] = [0x41450000 /* "AE" */, 3];

/** Entries per checkpoint at most. */
export const DEFAULT_SEAL_BATCH = 5000;

export interface AuditSealerOptions {
  db: PrismaClient;
  signer: Signer;
  logger: { info(details: object, message: string): void; warn(details: object, message: string): void; error(details: object, message: string): void };
  /** Pause between rounds (`AUDIT_SEAL_INTERVAL_MS`, default 250). */
  intervalMs: number;
  /** Entries per checkpoint at most (default 5000). */
  batchSize?: number;
  /** Rounds are skipped while this says no (e.g. the database is not migrated yet). */
  ready?: () => boolean;
  /**
   * Where the newest checkpoint is also recorded, outside the database (Redis: {@link redisCheckpointAnchor}),
   * so a sealer that starts after someone deleted or rewrote the newest checkpoints notices
   * instead of sealing over the gap. Best effort: an anchor that cannot be reached is skipped.
   */
  anchor?: CheckpointAnchor;
}

/** The newest checkpoint, kept where the database's administrators cannot rewrite it. */
export interface CheckpointAnchor {
  read(): Promise<CheckpointHead | null>;
  /** Records `head` unless a newer checkpoint (a higher id) is recorded already. */
  write(head: CheckpointHead): Promise<void>;
}

/** A running sealer. */
export interface AuditSealer {
  /**
   * Seals what has committed since the last checkpoint, now (after the round in progress, if
   * any); resolves with the number of entries this call sealed: 0 when there was nothing or
   * another process held the sealer's lock.
   */
  sealOnce(): Promise<number>;
  /** Stops the timer and waits for the round in progress. */
  close(): Promise<void>;
}

/** What one batch did. */
export interface SealBatchResult {
  /** false: another sealer holds the lock; nothing was read. */
  locked: boolean;
  sealed: number;
  checkpoint?: { id: bigint; hash: string; lastTxid: bigint; lastId: bigint };
  /** The newest checkpoint after this batch (whoever wrote it); null when there is none yet. */
  head?: CheckpointHead | null;
}

/** A checkpoint a sealer has seen: the log must still hold it, unchanged, with nothing cut after it. */
export interface CheckpointHead {
  id: bigint;
  hash: string;
}

/**
 * The checkpoint log lost or changed a checkpoint this sealer had seen: someone with the
 * database's owner rights removed or rewrote it. The sealer stops sealing (it would otherwise
 * sign whatever was put in its place) until restarted; `audit verify` shows what changed.
 */
export class AuditSealTamperedError extends Error {
  override name = 'AuditSealTamperedError';
}

/** How long a failing sealer stays quiet in the log between warnings. */
const FAILURE_LOG_EVERY_MS = 30_000;

/**
 * Starts sealing every `intervalMs` (timer unref'd: it never keeps a process alive). Errors (an
 * unreachable database) are logged, at most once per 30 s, and the next round tries again.
 */
export function startAuditSealer(options: AuditSealerOptions): AuditSealer {
  const { logger } = options;
  const batchSize = options.batchSize ?? DEFAULT_SEAL_BATCH;
  let queue: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  let failingSince: number | null = null;
  let lastWarnAt = 0;
  // The newest checkpoint this process has seen; it must never disappear or change.
  let seen: CheckpointHead | null = null;
  let tampered: AuditSealTamperedError | null = null;

  let anchored = false;
  let lastAnchorWarnAt = 0;
  const sealOnce = (): Promise<number> => {
    const run = queue.then(async () => {
      if (tampered) throw tampered;
      if (!anchored && options.anchor) {
        // Once per process: what the anchor last recorded must still be in the log.
        try {
          const recorded = await options.anchor.read();
          if (recorded && (!seen || recorded.id > seen.id)) seen = recorded;
          anchored = true;
        } catch (error) {
          // Once: this process then relies on what it sees itself.
          anchored = true;
          logger.warn({ err: briefError(error) }, 'cannot read the audit checkpoint anchor; sealing without comparing with it');
        }
      }
      let total = 0;
      const before = seen;
      for (;;) {
        let result: SealBatchResult;
        try {
          result = await sealAuditBatch(options.db, options.signer, { batchSize, seen });
        } catch (error) {
          if (error instanceof AuditSealTamperedError) {
            tampered = error;
            logger.error(
              { err: error.message },
              'audit sealer stopped: the checkpoint log was tampered with (a checkpoint it had seen, or the anchor in Redis recorded, is gone or changed); run `action-engine audit verify`',
            );
          }
          throw error;
        }
        if (result.head) seen = result.head;
        total += result.sealed;
        if (!result.locked || result.sealed < batchSize) break;
      }
      if (options.anchor && seen && seen.id !== before?.id) {
        await options.anchor.write(seen).catch((error: unknown) => {
          const now = Date.now();
          if (now - lastAnchorWarnAt < FAILURE_LOG_EVERY_MS) return;
          lastAnchorWarnAt = now;
          logger.warn({ err: briefError(error) }, 'cannot record the newest audit checkpoint in the anchor; retrying with the next checkpoint');
        });
      }
      return total;
    });
    queue = run.catch(() => undefined);
    return run;
  };

  const schedule = () => {
    if (closed) return;
    timer = setTimeout(() => {
      timer = null;
      if (options.ready && !options.ready()) return schedule();
      sealOnce().then(
        () => {
          if (failingSince !== null) logger.info({ failedForMs: Date.now() - failingSince }, 'audit sealer working again');
          failingSince = null;
        },
        (error: unknown) => {
          const now = Date.now();
          failingSince ??= now;
          if (now - lastWarnAt >= FAILURE_LOG_EVERY_MS) {
            lastWarnAt = now;
            logger.warn({ err: briefError(error), failingForMs: now - failingSince }, 'audit sealer round failed; retrying');
          }
        },
      ).finally(schedule);
    }, options.intervalMs);
    timer.unref();
  };
  schedule();

  return {
    sealOnce,
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await queue;
    },
  };
}

/**
 * One sealing transaction: takes the sealer's lock (or returns `locked: false`), reads up to
 * `batchSize` entries after the last checkpoint from finished transactions, and writes one signed
 * checkpoint over them. Writes nothing when there is nothing new.
 */
export async function sealAuditBatch(
  db: PrismaClient,
  signer: Signer,
  options: { batchSize?: number; seen?: CheckpointHead | null } = {},
): Promise<SealBatchResult> {
  const seen = options.seen ?? null;
  const batchSize = options.batchSize ?? DEFAULT_SEAL_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer (got ${batchSize})`);
  // Before any checkpoint names the key, so every stored signature names a listed key (once per process).
  await registerSigningKey(db, signer);
  return db.$transaction(async (tx) => {
    const [lock] = await tx.$queryRaw<Array<{ got: boolean }>>`SELECT pg_try_advisory_xact_lock(${AUDIT_SEALER_LOCK[0]}::int, ${AUDIT_SEALER_LOCK[1]}::int) AS "got"`;
    if (!lock?.got) return { locked: false, sealed: 0 };
    // After the lock, in a statement of its own: its snapshot sees the last checkpoint whoever wrote it.
    const rows = await tx.$queryRaw<
      Array<{ lastCp: bigint | null; prev: string; seenHash: string | null; id: bigint | null; txid: bigint | null; hash: string | null }>
    >`
      WITH last AS (SELECT "id", "hash", "lastTxid", "lastId" FROM "AuditCheckpoint" ORDER BY "id" DESC LIMIT 1),
      cur AS (
        SELECT (SELECT "id" FROM last) AS "lastCp",
               coalesce((SELECT "hash" FROM last), '') AS prev,
               coalesce((SELECT "lastTxid" FROM last), 0::bigint) AS t,
               coalesce((SELECT "lastId" FROM last), 0::bigint) AS i,
               (SELECT "hash" FROM "AuditCheckpoint" WHERE "id" = ${seen?.id ?? 0n}) AS "seenHash",
               pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
      SELECT cur."lastCp", cur.prev AS "prev", cur."seenHash", e."id", e."txid", e."hash"
      FROM cur LEFT JOIN LATERAL (
        SELECT "id", "txid", "hash" FROM "AuditEntry"
        WHERE ("txid", "id") > (cur.t, cur.i) AND "txid" < cur.xmin
        ORDER BY "txid", "id" LIMIT ${batchSize}::int) e ON true`;
    const { lastCp, prev: prevHash, seenHash } = rows[0]!;
    const head: CheckpointHead | null = lastCp === null ? null : { id: BigInt(lastCp), hash: prevHash };
    if (seen && (seenHash !== seen.hash || head === null || head.id < seen.id)) {
      throw new AuditSealTamperedError(
        `checkpoint ${seen.id} (hash ${seen.hash.slice(0, 12)}…), seen by this sealer, is ${seenHash === null ? 'gone' : 'changed'}${head === null || head.id < seen.id ? ' and the log ends before it' : ''}`,
      );
    }
    const entries: Array<SealedEntry & { txid: bigint }> = rows
      .filter((r) => r.id !== null)
      .map((r) => ({ id: BigInt(r.id!), txid: BigInt(r.txid!), hash: r.hash! }));
    if (entries.length === 0) return { locked: true, sealed: 0, head };
    const last = entries[entries.length - 1]!;
    const text = checkpointEntriesText(entries);
    const hash = checkpointHash({ prevHash, lastTxid: last.txid, lastId: last.id, entries: text });
    const { signature, keyId } = signCheckpoint(signer, hash);
    const [created] = await tx.$queryRaw<Array<{ id: bigint }>>`
      INSERT INTO "AuditCheckpoint" ("prevHash", "hash", "lastTxid", "lastId", "entryCount", "entries", "signature", "keyId")
      VALUES (${prevHash}, ${hash}, ${last.txid}, ${last.id}, ${entries.length}::int, ${text}, ${signature}, ${keyId})
      RETURNING "id"`;
    const id = BigInt(created!.id);
    return { locked: true, sealed: entries.length, checkpoint: { id, hash, lastTxid: last.txid, lastId: last.id }, head: { id, hash } };
  });
}

/** Entries not yet in a checkpoint: how many, and when the oldest was written (the sealer's lag). */
export async function unsealedAuditEntries(db: PrismaClient | Prisma.TransactionClient): Promise<{ count: number; oldestCreatedAt: Date | null }> {
  const [row] = await db.$queryRaw<Array<{ count: number; oldest: Date | null }>>`
    WITH last AS (SELECT "lastTxid", "lastId" FROM "AuditCheckpoint" ORDER BY "id" DESC LIMIT 1)
    SELECT count(*)::int AS "count", min(e."createdAt") AS "oldest" FROM "AuditEntry" e
    WHERE (e."txid", e."id") > (coalesce((SELECT "lastTxid" FROM last), 0::bigint), coalesce((SELECT "lastId" FROM last), 0::bigint))`;
  return { count: row?.count ?? 0, oldestCreatedAt: row?.oldest ?? null };
}

// Moves the recorded head forward only: two sealers' late writes cannot move it back.
const ANCHOR_WRITE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local id = tonumber(string.match(cur, '^(%d+) '))
  if id and id >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
return 1`;

/**
 * A {@link CheckpointAnchor} in Redis: key `<prefix>:audit:checkpoint-head:<database>:<oid>`,
 * value `<id> <hash>`, each command bounded by `timeoutMs`. Redis is a separate system from
 * PostgreSQL, so someone who can rewrite the database cannot also make the anchor agree (without
 * rights on Redis too). The key names the database by its name and oid, so a database created
 * afresh (tests, benchmarks, a reset) starts a new anchor instead of raising a false alarm; a
 * database dropped and restored from an edited dump does too, which is why `audit verify` and
 * the signatures remain the check of record.
 */
export function redisCheckpointAnchor(options: { redis: Redis; prefix: string; timeoutMs: number; db: PrismaClient }): CheckpointAnchor {
  const { redis, timeoutMs } = options;
  let key: string | null = null;
  const keyOf = async () => {
    if (key) return key;
    const [row] = await options.db.$queryRaw<Array<{ name: string; oid: string }>>`
      SELECT current_database() AS "name", oid::text AS "oid" FROM pg_database WHERE datname = current_database()`;
    key = `${options.prefix}:audit:checkpoint-head:${row!.name}:${row!.oid}`;
    return key;
  };
  return {
    async read() {
      const value = await withRedisTimeout(redis.get(await keyOf()), timeoutMs, 'reading the audit checkpoint anchor');
      const m = value ? /^(\d+) ([0-9a-f]{64})$/.exec(value) : null;
      return m ? { id: BigInt(m[1]!), hash: m[2]! } : null;
    },
    async write(head) {
      await withRedisTimeout(redis.eval(ANCHOR_WRITE, 1, await keyOf(), head.id.toString(), head.hash), timeoutMs, 'recording the audit checkpoint anchor');
    },
  };
}
