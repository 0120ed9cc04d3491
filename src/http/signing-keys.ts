import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PrismaClient } from '../generated/prisma/client.js';
import { registerSigningKey, signingJwk, type Signer, type SigningJwk } from '../engine/signing.js';

/** Where the engine's public keys are served (spec §6, §10). */
export const SIGNING_KEYS_PATH = '/.well-known/action-engine-keys';

/** How long clients may cache the list (seconds). */
const CACHE_SECONDS = 60;
/** How long a process reuses the list it read (ms): a key another process just added shows within this. */
const MEMORY_MS = 5000;

/**
 * `GET /.well-known/action-engine-keys`: every public key the engine has signed receipts and
 * audit checkpoints with, as a JSON Web Key set (`{ keys: [{ kid, kty: "OKP", crv: "Ed25519",
 * x, alg: "EdDSA", use: "sig", createdAt }] }`, oldest first), so signatures made with a key
 * that has since been replaced still verify. Public and cacheable: no key, no secret in it. The
 * list is read from `SigningKey` at most every 5 s per process; a client meeting a `kid` it
 * does not know should fetch it again.
 */
export function createSigningKeysRoute(db: PrismaClient, signer: Signer): (req: IncomingMessage, res: ServerResponse, pathname: string) => Promise<boolean> {
  let cached: { body: string; until: number } | null = null;
  return async (req, res, pathname) => {
    if (pathname !== SIGNING_KEYS_PATH) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify({ error: 'method not allowed' }));
      return true;
    }
    if (!cached || cached.until <= Date.now()) {
      // This process's own key is listed before anyone can see a signature of it (once; free after).
      await registerSigningKey(db, signer);
      const rows = await db.signingKey.findMany({ orderBy: [{ createdAt: 'asc' }, { keyId: 'asc' }] });
      const keys: SigningJwk[] = rows.map(signingJwk);
      cached = { body: JSON.stringify({ keys }), until: Date.now() + MEMORY_MS };
    }
    res.writeHead(200, {
      'content-type': 'application/jwk-set+json; charset=utf-8',
      'content-length': Buffer.byteLength(cached.body),
      'cache-control': `public, max-age=${CACHE_SECONDS}`,
      'access-control-allow-origin': '*',
    });
    res.end(req.method === 'HEAD' ? undefined : cached.body);
    return true;
  };
}
