import type { Principal } from '../context.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import { API_KEY_PREFIX, hashApiKey } from './api-keys.js';

const CACHE_TTL_MS = 5_000;
const CACHE_MAX = 10_000;

/** A valid key: who it belongs to, and which key it is (for revocation). */
export interface Identity {
  principal: Principal;
  apiKeyId: string;
}

/** Resolves API keys to principals. */
export interface Authenticator {
  /** The principal for an `Authorization` value (`Bearer ae_…`), or null for none/unknown/revoked. */
  authenticate(authorization: string | null | undefined): Promise<Principal | null>;
  /**
   * Like {@link authenticate}, with the key's id. `fresh`: read the key from the database even
   * when it is cached (a long-lived WebSocket must not be accepted on a cached lookup of a key
   * revoked a moment ago).
   */
  identify(authorization: string | null | undefined, options?: { fresh?: boolean }): Promise<Identity | null>;
  /** Drops a key from the cache at once (it was revoked, here or on another process). */
  forget(apiKeyId: string): void;
}

/**
 * Looks keys up by their SHA-256. A short cache keeps the lookup off the hot path; a revoked
 * key therefore stops working within {@link CACHE_TTL_MS} even when the revocation message
 * (which calls {@link Authenticator.forget} on every process) is lost.
 */
export function createAuthenticator(db: PrismaClient, clock: () => number = Date.now): Authenticator {
  const cache = new Map<string, { identity: Identity | null; apiKeyId: string | null; until: number }>();
  const identify = async (authorization: string | null | undefined, options?: { fresh?: boolean }): Promise<Identity | null> => {
    const key = parseBearer(authorization);
    if (!key) return null;
    const hash = hashApiKey(key);
    const now = clock();
    const hit = cache.get(hash);
    if (hit && hit.until > now && !options?.fresh) return hit.identity;
    const row = await db.apiKey.findUnique({
      where: { keyHash: hash },
      select: { id: true, revokedAt: true, principal: { select: { id: true, spaceId: true, role: true, userId: true, disabledAt: true } } },
    });
    const identity =
      row && !row.revokedAt && !row.principal.disabledAt
        ? { apiKeyId: row.id, principal: { id: row.principal.id, spaceId: row.principal.spaceId, role: row.principal.role, userId: row.principal.userId } }
        : null;
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(hash, { identity, apiKeyId: row?.id ?? null, until: now + CACHE_TTL_MS });
    return identity;
  };
  return {
    identify,
    async authenticate(authorization) {
      return (await identify(authorization))?.principal ?? null;
    },
    forget(apiKeyId) {
      for (const [hash, entry] of cache) if (entry.apiKeyId === apiKeyId) cache.delete(hash);
    },
  };
}

function parseBearer(value: string | null | undefined): string | null {
  if (!value) return null;
  const match = /^Bearer\s+(\S+)$/i.exec(value.trim());
  const key = match?.[1];
  return key && key.startsWith(API_KEY_PREFIX) && key.length < 200 ? key : null;
}
