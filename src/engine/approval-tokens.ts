import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';

export { canonicalJson };

/** Random bytes in an approval token: 256 bits, well above the 128 the spec requires. */
export const APPROVAL_TOKEN_BYTES = 32;

/** Digits in a one-time code. */
export const ONE_TIME_CODE_DIGITS = 8;

/**
 * Wrong codes allowed per token before the link is locked.
 *
 * Why so few: an 8-digit code has only ~26.6 bits, so anyone holding the database row could
 * brute-force it offline from `codeHash` in seconds. It is still a real second factor online:
 * it is bound to one token, single use, and the confirmation page counts failed attempts, so
 * 5 guesses give a 5-in-100,000,000 chance. The counter is the security, not the hash.
 */
export const MAX_CODE_ATTEMPTS = 5;

// Domain separation: a code hash can never collide with a token, API key or payload hash.
const CODE_HASH_PREFIX = 'action-engine/approval-code/v1\0';

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;
const HEX_SHA256 = /^[0-9a-f]{64}$/;

function sha256Hex(input: string): string {
  return createHash('sha256').update(input, 'utf8').digest('hex');
}

/**
 * Creates an approval token: 32 random bytes, base64url (43 characters), and its SHA-256 hex.
 * Only `tokenHash` is stored; `token` goes into the emailed link and nowhere else.
 */
export function newApprovalToken(): { token: string; tokenHash: string } {
  const token = randomBytes(APPROVAL_TOKEN_BYTES).toString('base64url');
  return { token, tokenHash: hashApprovalToken(token) };
}

/** SHA-256 hex of a token. Tokens carry 256 random bits, so a fast unsalted hash is safe. */
export function hashApprovalToken(token: string): string {
  return sha256Hex(token);
}

/**
 * True only for what `newApprovalToken` can produce: exactly 43 base64url characters that
 * decode to 32 bytes and re-encode to the same text. Check this before any database lookup.
 */
export function isWellFormedToken(token: string): boolean {
  if (typeof token !== 'string' || !TOKEN_SHAPE.test(token)) return false;
  // The 43rd character carries 2 padding bits; a non-zero pair is a forged or mangled token.
  return Buffer.from(token, 'base64url').toString('base64url') === token;
}

/**
 * Creates a one-time code for payments and purchases, mailed separately from the link:
 * 8 digits from `crypto.randomInt` (rejection sampling, so no modulo bias), and its hash.
 */
export function newOneTimeCode(): { code: string; codeHash: string } {
  const code = randomInt(0, 10 ** ONE_TIME_CODE_DIGITS).toString().padStart(ONE_TIME_CODE_DIGITS, '0');
  return { code, codeHash: hashOneTimeCode(code) };
}

/** Hash of a one-time code, with a fixed domain prefix. */
export function hashOneTimeCode(code: string): string {
  return sha256Hex(CODE_HASH_PREFIX + code);
}

/**
 * Removes the spaces and dashes people type or paste into a code ("1234 5678", "1234-5678").
 * Returns the digits, or null when what remains is not exactly 8 digits.
 */
export function normalizeOneTimeCode(input: string): string | null {
  const digits = input.replace(/[\s-]/g, '');
  return /^[0-9]{8}$/.test(digits) ? digits : null;
}

/**
 * Checks a typed code against the stored hash in constant time. Spaces and dashes are ignored.
 * Malformed input is still hashed and compared, so every call takes the same path.
 */
export function verifyCode(code: string, codeHash: string): boolean {
  const normalized = typeof code === 'string' ? normalizeOneTimeCode(code) : null;
  const candidate = Buffer.from(hashOneTimeCode(normalized ?? String(code)), 'hex');
  const expectedOk = typeof codeHash === 'string' && HEX_SHA256.test(codeHash);
  // A malformed stored hash is compared against the candidate itself, then rejected below.
  const expected = expectedOk ? Buffer.from(codeHash, 'hex') : candidate;
  const equal = timingSafeEqual(candidate, expected);
  return equal && expectedOk && normalized !== null;
}

/** What a presented token is worth. Only `valid` may lead to a decision. */
export type TokenState = 'valid' | 'unknown' | 'used' | 'expired' | 'voided' | 'payload_changed';

/** The columns of an `ApprovalToken` row that decide its state. */
export interface ApprovalTokenStateRow {
  usedAt: Date | null;
  voidedAt: Date | null;
  expiresAt: Date;
  payloadHash: string;
}

/**
 * The state of a token row (null: no row has that hash) for an action whose payload now
 * hashes to `actionPayloadHash`, at `now`. Pure. A token is expired from `expiresAt` on.
 * When several apply, the most specific wins: used, voided, payload changed, expired.
 */
export function tokenState(row: ApprovalTokenStateRow | null, actionPayloadHash: string, now: Date): TokenState {
  if (!row) return 'unknown';
  if (row.usedAt) return 'used';
  if (row.voidedAt) return 'voided';
  if (row.payloadHash !== actionPayloadHash) return 'payload_changed';
  if (now.getTime() >= row.expiresAt.getTime()) return 'expired';
  return 'valid';
}

/**
 * SHA-256 hex of the canonical JSON of a payload: independent of key order. The engine stores
 * it as `Action.payloadHash`, and approval tokens are bound to it.
 */
export function payloadHash(payload: unknown): string {
  return sha256Hex(canonicalJson(payload));
}
