import { createHash } from 'node:crypto';
import { verifySignature, type Signer } from './signing.js';

/**
 * Audit checkpoints (spec §8), the pure part: what a checkpoint's hash covers and what its
 * signature signs. The sealer (src/engine/audit-sealer.ts) writes them; `verifyAuditLog`
 * (src/engine/audit.ts) and offline bundles (src/engine/audit-export.ts) check them.
 *
 * A checkpoint seals the entries committed after the previous checkpoint's cursor, in
 * (txid, id) order, up to its own cursor (lastTxid, lastId):
 *
 *     entries = "<id> <hash>" lines joined by LF, in (txid, id) order
 *     hash    = SHA-256 hex of  prevHash LF lastTxid LF lastId LF entries
 *     signed  = "action-engine audit checkpoint v1" LF hash          (Ed25519, base64url)
 *
 * `prevHash` is the previous checkpoint's hash ("" for the first), so checkpoints form a chain;
 * the signed text starts with a fixed context, so a checkpoint signature can never be passed
 * off as a receipt's or the other way round.
 */

/** The fixed first line of what a checkpoint signature signs. */
export const CHECKPOINT_SIGNATURE_CONTEXT = 'action-engine audit checkpoint v1';

/** The fields a checkpoint's hash covers. */
export interface CheckpointContent {
  prevHash: string;
  lastTxid: bigint | string;
  lastId: bigint | string;
  /** `<id> <hash>` lines joined by LF. */
  entries: string;
}

/** One sealed entry as a checkpoint lists it. */
export interface SealedEntry {
  id: bigint;
  hash: string;
}

/** A malformed checkpoint entries text. */
export class CheckpointFormatError extends Error {
  override name = 'CheckpointFormatError';
}

/** SHA-256 (hex) of `prevHash LF lastTxid LF lastId LF entries`. */
export function checkpointHash(c: CheckpointContent): string {
  return createHash('sha256').update(`${c.prevHash}\n${c.lastTxid.toString()}\n${c.lastId.toString()}\n${c.entries}`).digest('hex');
}

/** What is signed for a checkpoint of hash `hash`. */
export function checkpointSigningInput(hash: string): string {
  return `${CHECKPOINT_SIGNATURE_CONTEXT}\n${hash}`;
}

/** Signs a checkpoint hash: `{ signature, keyId }`. */
export function signCheckpoint(signer: Signer, hash: string): { signature: string; keyId: string } {
  return { signature: signer.sign(checkpointSigningInput(hash)), keyId: signer.keyId };
}

/** Whether `signature` signs checkpoint hash `hash` with `publicKey` (raw, base64url). */
export function verifyCheckpointSignature(publicKey: string, hash: string, signature: string): boolean {
  return verifySignature(publicKey, checkpointSigningInput(hash), signature);
}

/** The entries text of a checkpoint: `<id> <hash>` lines joined by LF. */
export function checkpointEntriesText(entries: readonly SealedEntry[]): string {
  return entries.map((e) => `${e.id.toString()} ${e.hash}`).join('\n');
}

const LINE = /^(\d{1,19}) ([0-9a-f]{64})$/;

/** Parses an entries text; throws {@link CheckpointFormatError} naming the first malformed line. */
export function parseCheckpointEntries(text: string): SealedEntry[] {
  if (text === '') return [];
  return text.split('\n').map((line, i) => {
    const m = LINE.exec(line);
    if (!m) throw new CheckpointFormatError(`checkpoint entries line ${i + 1} is not "<id> <64 hex>"`);
    return { id: BigInt(m[1]!), hash: m[2]! };
  });
}
