import type { IncomingMessage } from 'node:http';
import { GraphQLError } from 'graphql';
import type { Context } from 'graphql-ws';
import type { WebSocket } from 'ws';
import type { App } from '../app.js';

/** Close codes of graphql-ws connections refused or ended by the service. */
export const WS_CLOSE = {
  /** connection_init without a key. */
  unauthenticated: 4401,
  /** Unknown, malformed or revoked key (at connection_init, or revoked while open). */
  forbidden: 4403,
  /** Too many connections for this key on this process. */
  tooManyConnections: 4429,
  /** The key could not be checked (database unreachable): try again later. */
  tryAgainLater: 1013,
} as const;

type Extra = { socket: WebSocket; request: IncomingMessage };

/**
 * The `Authorization` value a graphql-ws client sent in `connection_init`: `authorization` in
 * any letter case, or `headers.authorization` (any case; GraphiQL sends its headers editor
 * there). Null when there is none.
 */
export function authorizationFromConnectionParams(params: Readonly<Record<string, unknown>> | null | undefined): string | null {
  if (!params || typeof params !== 'object') return null;
  const find = (obj: Readonly<Record<string, unknown>>, name: string): unknown => {
    for (const [k, v] of Object.entries(obj)) if (k.toLowerCase() === name) return v;
    return undefined;
  };
  const direct = find(params, 'authorization');
  if (typeof direct === 'string' && direct.trim()) return direct;
  const headers = find(params, 'headers');
  if (headers && typeof headers === 'object' && !Array.isArray(headers)) {
    const nested = find(headers as Record<string, unknown>, 'authorization');
    if (typeof nested === 'string' && nested.trim()) return nested;
  }
  return null;
}

export interface WsGuard {
  /** graphql-ws `onConnect`: authenticates `connection_init`, enforces the per-key cap. */
  onConnect(ctx: Context<Record<string, unknown>, Extra>): Promise<boolean>;
  /** Errors for a subscribe over the per-connection cap, or null. */
  checkSubscribe(ctx: Context<Record<string, unknown>, Extra>): readonly GraphQLError[] | null;
  /** Closes every connection of a key (revoked): 4403. */
  closeKey(apiKeyId: string, reason: string): number;
  dispose(): void;
}

/**
 * Who may hold a graphql-ws connection, and how many. Each accepted socket is registered under
 * its API key: a revocation announced on Redis (any process) closes them at once, and every
 * `WS_KEY_RECHECK_SECONDS` the keys of all open sockets are read again from the database (one
 * query), which ends connections of keys revoked while a message was lost, or of disabled
 * principals. The connection cap is per API process.
 */
export function createWsGuard(app: App): WsGuard {
  const { config, logger } = app;
  const byKey = new Map<string, Set<WebSocket>>();

  const register = (apiKeyId: string, socket: WebSocket) => {
    let set = byKey.get(apiKeyId);
    if (!set) byKey.set(apiKeyId, (set = new Set()));
    set.add(socket);
    socket.once('close', () => {
      set.delete(socket);
      if (set.size === 0 && byKey.get(apiKeyId) === set) byKey.delete(apiKeyId);
    });
  };

  const closeKey = (apiKeyId: string, reason: string) => {
    const sockets = byKey.get(apiKeyId);
    if (!sockets) return 0;
    byKey.delete(apiKeyId);
    for (const socket of sockets) socket.close(WS_CLOSE.forbidden, reason);
    return sockets.size;
  };

  const stopListening = app.keyRevocations.on((apiKeyId) => {
    const n = closeKey(apiKeyId, 'API key revoked');
    if (n) logger.info({ apiKeyId, closed: n }, 'closed WebSocket connections of a revoked API key');
  });

  let checking = false;
  const recheck = async () => {
    if (checking || byKey.size === 0) return;
    checking = true;
    try {
      const ids = [...byKey.keys()];
      const rows = await app.db.apiKey.findMany({
        where: { id: { in: ids } },
        select: { id: true, revokedAt: true, principal: { select: { disabledAt: true } } },
      });
      const valid = new Set(rows.filter((r) => !r.revokedAt && !r.principal.disabledAt).map((r) => r.id));
      for (const id of ids) {
        if (valid.has(id)) continue;
        app.auth.forget(id);
        const n = closeKey(id, 'API key revoked');
        if (n) logger.info({ apiKeyId: id, closed: n }, 'closed WebSocket connections of a key no longer valid (periodic check)');
      }
    } catch (error) {
      logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'could not re-check the keys of open WebSocket connections; retrying');
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void recheck(), config.wsKeyRecheckSeconds * 1000);
  timer.unref();

  return {
    async onConnect(ctx) {
      const socket = ctx.extra.socket;
      const authorization = authorizationFromConnectionParams(ctx.connectionParams);
      if (!authorization) {
        socket.close(WS_CLOSE.unauthenticated, 'Unauthorized: send {"authorization": "Bearer <API key>"} in connection_init');
        return false;
      }
      let identity;
      try {
        identity = await app.auth.identify(authorization);
      } catch (error) {
        logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'cannot check a WebSocket key');
        socket.close(WS_CLOSE.tryAgainLater, 'cannot check the API key right now; try again later');
        return false;
      }
      if (!identity) {
        socket.close(WS_CLOSE.forbidden, 'Forbidden: unknown, malformed or revoked API key');
        return false;
      }
      if (socket.readyState !== socket.OPEN) return false;
      const open = byKey.get(identity.apiKeyId)?.size ?? 0;
      if (open >= config.wsMaxConnectionsPerKey) {
        socket.close(
          WS_CLOSE.tooManyConnections,
          `too many connections for this API key (at most ${config.wsMaxConnectionsPerKey}, WS_MAX_CONNECTIONS_PER_KEY)`,
        );
        return false;
      }
      register(identity.apiKeyId, socket);
      return true;
    },
    checkSubscribe(ctx) {
      // The new operation is already in ctx.subscriptions (graphql-ws reserves its id first).
      const running = Object.keys(ctx.subscriptions).length;
      if (running <= config.wsMaxSubscriptionsPerConnection) return null;
      return [
        new GraphQLError(
          `too many operations on this connection: at most ${config.wsMaxSubscriptionsPerConnection} at once (WS_MAX_SUBSCRIPTIONS_PER_CONNECTION); complete one or open another connection`,
          { extensions: { code: 'TOO_MANY_SUBSCRIPTIONS', limit: config.wsMaxSubscriptionsPerConnection } },
        ),
      ];
    },
    closeKey,
    dispose() {
      clearInterval(timer);
      stopListening();
    },
  };
}
