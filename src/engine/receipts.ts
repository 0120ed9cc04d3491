import { randomBytes, randomUUID } from 'node:crypto';
import type { NewReceipt } from './lifecycle/steps.js';

const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/** A human-readable, unique receipt number, e.g. RCP-20261121-7K3QZ9AB (40 random bits; the column is unique). */
export function newReceiptNumber(now: Date): string {
  const day = now.toISOString().slice(0, 10).replace(/-/g, '');
  let suffix = '';
  // 256 is a multiple of 32, so `% 32` has no bias.
  for (const b of randomBytes(8)) suffix += ALPHABET[b % ALPHABET.length];
  return `RCP-${day}-${suffix}`;
}

/** A new receipt's identity: id and number. Its signature is added where it is written (see lifecycle). */
export function newReceipt(deps: { clock: () => Date }): NewReceipt {
  return { id: randomUUID(), receiptNumber: newReceiptNumber(deps.clock()), signature: null, keyId: null };
}
