import { randomBytes, randomUUID } from 'node:crypto';
import type { NewReceipt } from './lifecycle/steps.js';
import { canonicalJson } from './canonical-json.js';
import { verifySignature, type Signer } from './signing.js';

const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/** A human-readable, unique receipt number, e.g. RCP-20261121-7K3QZ9AB (40 random bits; the column is unique). */
export function newReceiptNumber(now: Date): string {
  const day = now.toISOString().slice(0, 10).replace(/-/g, '');
  let suffix = '';
  // 256 is a multiple of 32, so `% 32` has no bias.
  for (const b of randomBytes(8)) suffix += ALPHABET[b % ALPHABET.length];
  return `RCP-${day}-${suffix}`;
}

/** The fixed first line of what a receipt signature signs (never a checkpoint's; see audit-checkpoints.ts). */
export const RECEIPT_SIGNATURE_CONTEXT = 'action-engine receipt v1';

/** What a receipt binds (spec §6): the action and the revision that ran, its approvals, the handler path, the outcome. */
export interface ReceiptStatementInput {
  receiptNumber: string;
  action: {
    id: string;
    type: string;
    /** The payload revision that ran (an approver's edit makes the next). */
    revision: number;
    /** SHA-256 of that revision's canonical payload (`Action.payloadHash`). */
    payloadHash: string;
  };
  /** The decisions that let it run, in order; empty when no person's approval was needed. */
  approvals: ReadonlyArray<{ decidedBy: string; decidedAt: Date | string }>;
  /**
   * The handlers tried for the attempt that completed, in order, each with its outcome (an
   * `Execution.status` such as `FAILED` or `SUCCEEDED`, or `SKIPPED` for one not configured).
   */
  handlerPath: ReadonlyArray<{ handler: string; outcome: string }>;
  /** The handler that completed it (the last of `handlerPath`). */
  handler: string;
  provider: string;
  externalRef: string | null;
  /** The confirmation data stored on the receipt. */
  data: unknown;
  createdAt: Date | string;
}

/**
 * The canonical JSON text a receipt's signature covers: sorted keys, no whitespace, dates as
 * ISO 8601 with milliseconds, so anyone holding the same values rebuilds the same text.
 */
export function receiptStatement(input: ReceiptStatementInput): string {
  const iso = (d: Date | string) => (typeof d === 'string' ? new Date(d) : d).toISOString();
  return canonicalJson({
    receiptNumber: input.receiptNumber,
    action: { id: input.action.id.toLowerCase(), type: input.action.type, revision: input.action.revision, payloadHash: input.action.payloadHash },
    approvals: input.approvals.map((a) => ({ decidedBy: a.decidedBy, decidedAt: iso(a.decidedAt) })),
    handlerPath: input.handlerPath.map((h) => ({ handler: h.handler, outcome: h.outcome })),
    handler: input.handler,
    provider: input.provider,
    externalRef: input.externalRef,
    data: input.data ?? null,
    createdAt: iso(input.createdAt),
  });
}

/** Signs a receipt statement (from {@link receiptStatement}): the values for `Receipt.signature` and `Receipt.keyId`. */
export function signReceipt(signer: Signer, statement: string): { signature: string; keyId: string } {
  return { signature: signer.sign(`${RECEIPT_SIGNATURE_CONTEXT}\n${statement}`), keyId: signer.keyId };
}

/** Whether `signature` signs receipt `statement` with `publicKey` (raw, base64url, as the keys endpoint's `x`). */
export function verifyReceipt(publicKey: string, statement: string, signature: string): boolean {
  return verifySignature(publicKey, `${RECEIPT_SIGNATURE_CONTEXT}\n${statement}`, signature);
}

/**
 * A new receipt: its number, its statement (what it binds) and the engine's signature over it,
 * ready for the lifecycle writer's settle step. Without a signer (tests of the planner) it is unsigned.
 */
export function newReceipt(
  deps: { clock: () => Date; signer?: Signer },
  input: Omit<ReceiptStatementInput, 'receiptNumber' | 'createdAt'>,
): NewReceipt {
  const createdAt = deps.clock();
  const receiptNumber = newReceiptNumber(createdAt);
  const statement = receiptStatement({ ...input, receiptNumber, createdAt });
  const signed = deps.signer ? signReceipt(deps.signer, statement) : null;
  return { id: randomUUID(), receiptNumber, createdAt, statement, signature: signed?.signature ?? null, keyId: signed?.keyId ?? null };
}

/** The approvals a receipt binds: the person's decision that let the action run, if one was needed. */
export function approvalsOf(action: { decidedBy: string | null; decidedAt: Date | null }): ReceiptStatementInput['approvals'] {
  return action.decidedBy && action.decidedAt ? [{ decidedBy: action.decidedBy, decidedAt: action.decidedAt }] : [];
}
