import { createHash, randomBytes } from 'node:crypto';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { Role } from '../generated/prisma/enums.js';
import { appendAuditEntry } from './audit.js';
import { InvalidInputError, NotFoundError, RevokedError } from './errors.js';
import { shortInput } from './input-text.js';
import { UUID } from './ids.js';

/** The prefix every key starts with, so a leaked key is recognisable by secret scanners. */
export const API_KEY_PREFIX = 'ae_';

export interface CreateApiKeyInput {
  role: Role;
  /** Space slug; created if new. */
  space: string;
  /** User handle in that space; created if new. Required for agents and approvers. */
  user?: string | undefined;
  /** The user's email, for approval requests. */
  email?: string | undefined;
  /** A label for the principal (defaults to `<role>:<user or space>`). */
  name?: string | undefined;
  /** Who creates it, for the audit trail (default `system`). */
  actor?: string;
  /** The caller's IP and user agent, for the audit trail (API requests). */
  ip?: string | null;
  userAgent?: string | null;
}

export interface CreatedApiKey {
  /** The key itself. Shown once; only its hash is stored. */
  key: string;
  apiKeyId: string;
  principalId: string;
  spaceId: string;
  userId: string | null;
}

export class ApiKeyInputError extends Error {
  override name = 'ApiKeyInputError';
}

/** SHA-256 of the key. Keys carry 256 random bits, so a fast hash is safe; no salt is needed. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

const SLUG = /^[a-z0-9][a-z0-9._-]{0,62}$/i;

/**
 * Creates a principal with a new API key, creating the space and user if they are new and
 * recording the user's email when given. One transaction: either everything exists or nothing.
 */
export async function createApiKey(db: PrismaClient, input: CreateApiKeyInput): Promise<CreatedApiKey> {
  if (!SLUG.test(input.space)) throw new ApiKeyInputError(`--space must be 1-63 letters, digits, . _ - (got ${shortInput(input.space)})`);
  if (input.user !== undefined && UUID.test(input.user)) {
    // Wherever a user is named, an id wins over a handle: a handle shaped like one could never be reached.
    throw new ApiKeyInputError('--user must not look like a user id (a UUID): it is a handle, e.g. "alice"');
  }
  if (input.user !== undefined && !SLUG.test(input.user)) {
    throw new ApiKeyInputError(`--user must be 1-63 letters, digits, . _ - (got ${shortInput(input.user)})`);
  }
  if ((input.role === 'AGENT' || input.role === 'APPROVER') && !input.user) {
    throw new ApiKeyInputError(`--user is required for the ${input.role.toLowerCase()} role: agents and approvers act for one user`);
  }
  if (input.email !== undefined && (input.email.length > 254 || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(input.email))) {
    throw new ApiKeyInputError(`--email is not an email address: ${shortInput(input.email)}`);
  }
  if (input.name !== undefined && (input.name.length > 200 || !input.name.trim())) {
    throw new ApiKeyInputError('--name must be 1 to 200 characters');
  }
  if (input.email !== undefined && !input.user) throw new ApiKeyInputError('--email needs --user: it is the user\'s address');

  const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return db.$transaction(async (tx) => {
    // INSERT … ON CONFLICT DO NOTHING, then read: safe when two commands create the same
    // space or user at once (an upsert is a read then a write, and races).
    await tx.space.createMany({ data: [{ slug: input.space }], skipDuplicates: true });
    const space = await tx.space.findUniqueOrThrow({ where: { slug: input.space } });
    let user = null;
    if (input.user) {
      await tx.user.createMany({ data: [{ spaceId: space.id, handle: input.user, email: input.email ?? null }], skipDuplicates: true });
      user = await tx.user.findUniqueOrThrow({ where: { spaceId_handle: { spaceId: space.id, handle: input.user } } });
      if (input.email !== undefined && user.email !== input.email) {
        const before = user.email;
        user = await tx.user.update({ where: { id: user.id }, data: { email: input.email } });
        // Where approval requests go is security-relevant: a replaced address is audited.
        await appendAuditEntry(tx, {
          event: 'user.email_changed',
          actor: input.actor ?? 'system',
          ip: input.ip ?? null,
          userAgent: input.userAgent ?? null,
          spaceId: space.id,
          data: { userId: user.id, before, after: input.email },
        });
      }
    }
    const prefix = key.slice(0, 10);
    const principal = await tx.principal.create({
      data: {
        spaceId: space.id,
        role: input.role,
        userId: user?.id ?? null,
        name: input.name ?? `${input.role.toLowerCase()}:${input.user ?? input.space}`,
        apiKeys: { create: { prefix, keyHash: hashApiKey(key) } },
      },
      include: { apiKeys: { select: { id: true } } },
    });
    await appendAuditEntry(tx, {
      event: 'api_key.created',
      actor: input.actor ?? 'system',
      ip: input.ip ?? null,
      userAgent: input.userAgent ?? null,
      spaceId: space.id,
      data: { principalId: principal.id, role: input.role, prefix },
    });
    return { key, apiKeyId: principal.apiKeys[0]!.id, principalId: principal.id, spaceId: space.id, userId: user?.id ?? null };
  });
}

/** A key as listings show it: never the key or its hash. */
export interface ApiKeyListing {
  id: string;
  prefix: string;
  role: Role;
  principalId: string;
  name: string;
  spaceId: string;
  space: string;
  userId: string | null;
  user: string | null;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

const LISTING_SELECT = {
  id: true,
  prefix: true,
  createdAt: true,
  lastUsedAt: true,
  revokedAt: true,
  principal: { select: { id: true, role: true, name: true, spaceId: true, space: { select: { slug: true } }, user: { select: { id: true, handle: true } } } },
} as const;

type ListingRow = {
  id: string;
  prefix: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  principal: { id: string; role: Role; name: string; spaceId: string; space: { slug: string }; user: { id: string; handle: string } | null };
};

function toListing(row: ListingRow): ApiKeyListing {
  return {
    id: row.id,
    prefix: row.prefix,
    role: row.principal.role,
    principalId: row.principal.id,
    name: row.principal.name,
    spaceId: row.principal.spaceId,
    space: row.principal.space.slug,
    userId: row.principal.user?.id ?? null,
    user: row.principal.user?.handle ?? null,
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
  };
}

/** Keys, oldest first; of one space when `spaceId` is given (the CLI lists all). */
export async function listApiKeys(db: PrismaClient, filter: { spaceId?: string } = {}): Promise<ApiKeyListing[]> {
  const rows = await db.apiKey.findMany({
    where: filter.spaceId ? { principal: { spaceId: filter.spaceId } } : {},
    select: LISTING_SELECT,
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
  });
  return rows.map(toListing);
}

/** One key's listing by id, or null. */
export async function findApiKeyListing(db: PrismaClient, id: string): Promise<ApiKeyListing | null> {
  const row = await db.apiKey.findUnique({ where: { id }, select: LISTING_SELECT });
  return row ? toListing(row) : null;
}


export interface RevokeApiKeyInput {
  /** The key's id, or (with `allowPrefix`) the prefix listings show, e.g. `ae_3kQ9xZp`. */
  ref: string;
  /** Only a key of this space (an admin's own); unset: any space (the CLI). */
  spaceId?: string;
  allowPrefix?: boolean;
  actor: string;
  ip?: string | null;
  userAgent?: string | null;
}

/**
 * Revokes a key: from then on it authenticates nothing. Audited as `api_key.revoked` with
 * before/after `revokedAt` (never the key). An unknown, malformed or other-space reference is
 * NOT_FOUND; a key that is already revoked is REVOKED (nothing changes). The caller
 * announces the revocation to every API process (see `key-revocation.ts`).
 */
export async function revokeApiKey(db: PrismaClient, input: RevokeApiKeyInput): Promise<ApiKeyListing> {
  const ref = input.ref.trim();
  const shown = ref.length > 40 ? `${ref.slice(0, 40)}…` : ref;
  const spaceFilter = input.spaceId ? { principal: { spaceId: input.spaceId } } : {};
  let where: { id: string } | { prefix: string } | null = null;
  if (UUID.test(ref)) where = { id: ref };
  else if (input.allowPrefix && ref.startsWith(API_KEY_PREFIX) && ref.length <= 64) where = { prefix: ref };
  if (!where) throw new NotFoundError(`no API key with id ${shown}`, ['id']);
  return db.$transaction(async (tx) => {
    const matches = await tx.apiKey.findMany({ where: { ...where, ...spaceFilter }, select: LISTING_SELECT, take: 2 });
    if (matches.length === 0) throw new NotFoundError(`no API key with ${'id' in where ? 'id' : 'prefix'} ${shown}`, ['id']);
    if (matches.length > 1) throw new InvalidInputError(`more than one API key has the prefix ${shown}: revoke by id (see keys list)`, ['id']);
    const key = matches[0]!;
    if (key.revokedAt) throw new RevokedError(`API key ${key.prefix}… (${key.id}) was already revoked at ${key.revokedAt.toISOString()}`, ['id']);
    const revokedAt = new Date();
    // Conditional update: of two racing revocations exactly one changes the row and is audited.
    const { count } = await tx.apiKey.updateMany({ where: { id: key.id, revokedAt: null }, data: { revokedAt } });
    if (count === 0) throw new RevokedError(`API key ${key.prefix}… (${key.id}) was already revoked`, ['id']);
    await appendAuditEntry(tx, {
      event: 'api_key.revoked',
      actor: input.actor,
      ip: input.ip ?? null,
      userAgent: input.userAgent ?? null,
      spaceId: key.principal.spaceId,
      data: { apiKeyId: key.id, principalId: key.principal.id, prefix: key.prefix, before: { revokedAt: null }, after: { revokedAt: revokedAt.toISOString() } },
    });
    return toListing({ ...key, revokedAt });
  });
}
