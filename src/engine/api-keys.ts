import { createHash, randomBytes } from 'node:crypto';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { Role } from '../generated/prisma/enums.js';
import { appendAuditEntry } from './audit.js';

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
  if (!SLUG.test(input.space)) throw new ApiKeyInputError(`--space must be 1-63 letters, digits, . _ - (got "${input.space}")`);
  if (input.user !== undefined && !SLUG.test(input.user)) {
    throw new ApiKeyInputError(`--user must be 1-63 letters, digits, . _ - (got "${input.user}")`);
  }
  if ((input.role === 'AGENT' || input.role === 'APPROVER') && !input.user) {
    throw new ApiKeyInputError(`--user is required for the ${input.role.toLowerCase()} role: agents and approvers act for one user`);
  }
  if (input.email !== undefined && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(input.email)) {
    throw new ApiKeyInputError(`--email is not an email address: "${input.email}"`);
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
    });
    await appendAuditEntry(tx, {
      event: 'api_key.created',
      actor: input.actor ?? 'system',
      spaceId: space.id,
      data: { principalId: principal.id, role: input.role, prefix },
    });
    return { key, principalId: principal.id, spaceId: space.id, userId: user?.id ?? null };
  });
}
