import type { IncomingMessage } from 'node:http';
import { GraphQLError, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
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
  const found = connectionAuthorization(params);
  return found.malformed ? null : found.value;
}

/**
 * Every `authorization` a client put in `connection_init` (both forms, any letter case): `value`
 * when they name one key, `malformed` when one is not a string or two disagree (a key was
 * sent, but not one that can be checked: 4403, not 4401).
 */
export function connectionAuthorization(params: Readonly<Record<string, unknown>> | null | undefined): { value: string | null; malformed: boolean } {
  if (!params || typeof params !== 'object') return { value: null, malformed: false };
  const all = (obj: Readonly<Record<string, unknown>>, name: string): unknown[] =>
    Object.entries(obj)
      .filter(([k]) => k.toLowerCase() === name)
      .map(([, v]) => v);
  const candidates = all(params, 'authorization');
  for (const headers of all(params, 'headers')) {
    if (headers && typeof headers === 'object' && !Array.isArray(headers)) candidates.push(...all(headers as Record<string, unknown>, 'authorization'));
  }
  const present = candidates.filter((v) => v !== undefined && v !== null && !(typeof v === 'string' && !v.trim()));
  if (present.length === 0) return { value: null, malformed: false };
  if (present.some((v) => typeof v !== 'string')) return { value: null, malformed: true };
  const distinct = new Set((present as string[]).map((v) => v.trim()));
  if (distinct.size > 1) return { value: null, malformed: true };
  return { value: present[0] as string, malformed: false };
}

export interface WsGuard {
  /** graphql-ws `onConnect`: authenticates `connection_init`, enforces the per-key cap. */
  onConnect(ctx: Context<Record<string, unknown>, Extra>): Promise<boolean>;
  /** Errors for a subscribe over the per-connection cap, or null. */
  checkSubscribe(ctx: Context<Record<string, unknown>, Extra>): readonly GraphQLError[] | null;
}

/** Calls back when a key is revoked, announced on Redis or found at the periodic re-check. */
export interface KeyWatch {
  /** `onRevoked` runs once if the key is revoked (or its principal disabled); returns an unwatch. */
  watch(apiKeyId: string, onRevoked: () => void): () => void;
  dispose(): void;
}

/**
 * What holds an API key open — graphql-ws connections, subscription streams (WebSocket and
 * SSE) — registers here. A revocation announced on Redis (any process) fires at once; every
 * `WS_KEY_RECHECK_SECONDS` the watched keys are read again from the database (one query),
 * which catches keys revoked while a message was lost, and disabled principals.
 */
export function createKeyWatch(app: App): KeyWatch {
  const { config, logger } = app;
  const byKey = new Map<string, Set<() => void>>();

  const fire = (apiKeyId: string, why: string) => {
    const callbacks = byKey.get(apiKeyId);
    if (!callbacks) return;
    byKey.delete(apiKeyId);
    logger.info({ apiKeyId, ended: callbacks.size, why }, 'ending connections and streams of a revoked API key');
    for (const callback of callbacks) {
      try {
        callback();
      } catch (error) {
        logger.warn({ err: error }, 'error while ending a stream of a revoked key');
      }
    }
  };
  const stopListening = app.keyRevocations.on((apiKeyId) => fire(apiKeyId, 'revocation announced'));

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
        fire(id, 'periodic check');
      }
    } catch (error) {
      logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'could not re-check the keys of open connections; retrying');
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void recheck(), config.wsKeyRecheckSeconds * 1000);
  timer.unref();

  return {
    watch(apiKeyId, onRevoked) {
      let set = byKey.get(apiKeyId);
      if (!set) byKey.set(apiKeyId, (set = new Set()));
      let once = false;
      const callback = () => {
        if (once) return;
        once = true;
        onRevoked();
      };
      set.add(callback);
      return () => {
        const current = byKey.get(apiKeyId);
        current?.delete(callback);
        if (current && current.size === 0) byKey.delete(apiKeyId);
      };
    },
    dispose() {
      clearInterval(timer);
      stopListening();
      byKey.clear();
    },
  };
}

/**
 * Who may hold a graphql-ws connection, and how many: the key is checked at `connection_init`;
 * each accepted socket is watched under its key and closed with 4403 when the key is revoked.
 * The connection cap is per API process.
 */
export function createWsGuard(app: App, keyWatch: KeyWatch): WsGuard {
  const { config, logger } = app;
  const openByKey = new Map<string, number>();

  return {
    async onConnect(ctx) {
      const socket = ctx.extra.socket;
      const { value: authorization, malformed } = connectionAuthorization(ctx.connectionParams);
      if (malformed) {
        socket.close(WS_CLOSE.forbidden, 'Forbidden: the authorization in connection_init must be one "Bearer <API key>" string');
        return false;
      }
      if (!authorization) {
        socket.close(WS_CLOSE.unauthenticated, 'Unauthorized: send {"authorization": "Bearer <API key>"} in connection_init');
        return false;
      }
      let identity;
      try {
        identity = await app.auth.identify(authorization, { fresh: true });
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
      const { apiKeyId } = identity;
      const open = openByKey.get(apiKeyId) ?? 0;
      if (open >= config.wsMaxConnectionsPerKey) {
        socket.close(
          WS_CLOSE.tooManyConnections,
          `too many connections for this API key (at most ${config.wsMaxConnectionsPerKey}, WS_MAX_CONNECTIONS_PER_KEY)`,
        );
        return false;
      }
      openByKey.set(apiKeyId, open + 1);
      const unwatch = keyWatch.watch(apiKeyId, () => socket.close(WS_CLOSE.forbidden, 'API key revoked'));
      socket.once('close', () => {
        unwatch();
        const n = (openByKey.get(apiKeyId) ?? 1) - 1;
        if (n > 0) openByKey.set(apiKeyId, n);
        else openByKey.delete(apiKeyId);
      });
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
  };
}

/**
 * Ends every subscription stream of a revoked key, whatever carries it (graphql-ws, or
 * server-sent events over HTTP): one last result with an UNAUTHENTICATED error, then the end.
 * Streams over HTTP also count as connections of their key: at most `maxStreamsPerKey`
 * (`WS_MAX_CONNECTIONS_PER_KEY`) open on this process, the next refused with TOO_MANY_CONNECTIONS.
 */
export function useEndStreamsOfRevokedKeys(keyWatch: KeyWatch, maxStreamsPerKey: number): Plugin {
  /** Open subscription streams over HTTP (server-sent events), per key; graphql-ws sockets are counted by the guard. */
  const httpStreams = new Map<string, number>();
  const released = (apiKeyId: string) => () => {
    const n = (httpStreams.get(apiKeyId) ?? 1) - 1;
    if (n <= 0) httpStreams.delete(apiKeyId);
    else httpStreams.set(apiKeyId, n);
  };
  return {
    onSubscribe({ args, setResultAndStopExecution }) {
      const context = args.contextValue as { apiKeyId?: string | null; connectionParams?: unknown };
      const apiKeyId = context.apiKeyId;
      if (!apiKeyId) return undefined;
      const overHttp = !context.connectionParams;
      if (overHttp && (httpStreams.get(apiKeyId) ?? 0) >= maxStreamsPerKey) {
        setResultAndStopExecution({
          errors: [
            new GraphQLError(`too many open subscription streams for this API key (at most ${maxStreamsPerKey}, WS_MAX_CONNECTIONS_PER_KEY); close one first`, {
              extensions: { code: 'TOO_MANY_CONNECTIONS', limit: maxStreamsPerKey },
            }),
          ],
        });
        return undefined;
      }
      return {
        onSubscribeResult({ result, setResult }) {
          if (!isAsyncIterable(result)) return;
          let onEnd: (() => void) | undefined;
          if (overHttp) {
            httpStreams.set(apiKeyId, (httpStreams.get(apiKeyId) ?? 0) + 1);
            onEnd = released(apiKeyId);
          }
          setResult(endOnRevocation(result as AsyncIterable<ExecutionResult>, (onRevoked) => keyWatch.watch(apiKeyId, onRevoked), onEnd));
        },
      };
    },
  };
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as Record<symbol, unknown>)[Symbol.asyncIterator] === 'function';
}

function endOnRevocation(
  source: AsyncIterable<ExecutionResult>,
  watch: (onRevoked: () => void) => () => void,
  onEnd: () => void = () => {},
): AsyncGenerator<ExecutionResult> {
  const it = source[Symbol.asyncIterator]();
  let finished = false;
  let revoked = false;
  // Wakes the pending next() on revocation. A fresh promise per next(), not a race against one
  // long-lived promise (which would keep a reaction per event for the stream's whole life).
  let wake: ((value: 'revoked') => void) | null = null;
  const unwatch = watch(() => {
    revoked = true;
    wake?.('revoked');
  });
  const finish = () => {
    if (finished) return;
    finished = true;
    unwatch();
    onEnd();
  };
  const nextOrRevoked = () =>
    new Promise<IteratorResult<ExecutionResult> | 'revoked'>((resolve, reject) => {
      wake = resolve;
      it.next().then(resolve, reject);
    }).finally(() => {
      wake = null;
    });
  const generator: AsyncGenerator<ExecutionResult> = {
    async next() {
      if (finished) return { done: true, value: undefined };
      let step: IteratorResult<ExecutionResult> | 'revoked';
      try {
        step = revoked ? 'revoked' : await nextOrRevoked();
      } catch (error) {
        finish();
        throw error;
      }
      if (step === 'revoked') {
        finish();
        Promise.resolve(it.return?.()).catch(() => undefined);
        return {
          done: false,
          value: { errors: [new GraphQLError('API key revoked: this subscription has ended', { extensions: { code: 'UNAUTHENTICATED' } })] },
        };
      }
      if (step.done) finish();
      return step;
    },
    async return(value) {
      finish();
      await it.return?.();
      return { done: true, value };
    },
    async throw(error) {
      finish();
      if (it.throw) return it.throw(error);
      throw error;
    },
    [Symbol.asyncIterator]() {
      return generator;
    },
  };
  return generator;
}

