import type { Principal } from '../context.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import { API_KEY_PREFIX, hashApiKey } from './api-keys.js';

const CACHE_TTL_MS = 5_000;
const CACHE_MAX = 10_000;

/** Resolves API keys to principals. */
export interface Authenticator {
  /** The principal for an `Authorization` value (`Bearer ae_…`), or null for none/unknown/revoked. */
  authenticate(authorization: string | null | undefined): Promise<Principal | null>;
}

/**
 * Looks keys up by their SHA-256. A short cache keeps the lookup off the hot path; a revoked
 * key therefore stops working within {@link CACHE_TTL_MS}.
 */
export function createAuthenticator(db: PrismaClient, clock: () => number = Date.now): Authenticator {
  const cache = new Map<string, { principal: Principal | null; until: number }>();
  return {
    async authenticate(authorization) {
      const key = parseBearer(authorization);
      if (!key) return null;
      const hash = hashApiKey(key);
      const now = clock();
      const hit = cache.get(hash);
      if (hit && hit.until > now) return hit.principal;
      const row = await db.apiKey.findUnique({
        where: { keyHash: hash },
        select: { revokedAt: true, principal: { select: { id: true, spaceId: true, role: true, userId: true, disabledAt: true } } },
      });
      const principal =
        row && !row.revokedAt && !row.principal.disabledAt
          ? { id: row.principal.id, spaceId: row.principal.spaceId, role: row.principal.role, userId: row.principal.userId }
          : null;
      if (cache.size >= CACHE_MAX) cache.clear();
      cache.set(hash, { principal, until: now + CACHE_TTL_MS });
      return principal;
    },
  };
}

function parseBearer(value: string | null | undefined): string | null {
  if (!value) return null;
  const match = /^Bearer\s+(\S+)$/i.exec(value.trim());
  const key = match?.[1];
  return key && key.startsWith(API_KEY_PREFIX) && key.length < 200 ? key : null;
}
