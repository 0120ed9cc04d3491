import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import { getOperationAST, GraphQLError, type ExecutionArgs } from 'graphql';
import type { App } from './app.js';
import type { GraphQLContext } from './context.js';
import { handleApprovalRoute } from './http/approval-routes.js';
import { handleCallbackRoute } from './http/callbacks.js';
import { handleConsoleRoute } from './http/console.js';
import { handleMcpRoute } from './http/mcp.js';
import { renderGraphiQLPage, serveGraphiQLAsset, useGraphiQLSecurityHeaders } from './http/graphiql.js';
import { briefError, unavailableError } from './engine/infra-errors.js';
import { createMaskError } from './http/mask-error.js';
import { checkReadiness } from './http/readiness.js';
import { createSigningKeysRoute } from './http/signing-keys.js';
import { authorizationFromConnectionParams, createKeyWatch, createWsGuard, useEndStreamsOfRevokedKeys } from './http/ws-auth.js';
import { useIntrospectionNeedsKey } from './http/introspection.js';
import { useOperationMetrics } from './metrics.js';
import { buildSchema } from './resolvers/index.js';
import { useInputGuard } from './resolvers/input-guard.js';
import { BodyTooLargeError, readBodyWithin, refuseTooLarge } from './http/request-body.js';
import { EngineError, UnavailableError } from './engine/errors.js';

/** The HTTP side of the service: GraphQL over HTTP and graphql-ws on `/graphql`, health, metrics. */
export interface ApiServer {
  httpServer: Server;
  yoga: YogaServerInstance<ServerContext, GraphQLContext>;
  /** Starts listening; resolves with the bound port. */
  listen(port?: number, host?: string): Promise<number>;
  /** Stops accepting, lets in-flight requests finish (up to the timeout), closes sockets. */
  close(): Promise<void>;
}

interface ServerContext {
  req: IncomingMessage;
  res?: ServerResponse;
}

type EnvelopedRoot = { execute: (args: ExecutionArgs) => unknown; subscribe: (args: ExecutionArgs) => unknown };

const GRAPHQL_PATH = '/graphql';

function clientIp(req: IncomingMessage): string | null {
  return req.socket.remoteAddress ?? null;
}

export function createApiServer(app: App): ApiServer {
  const { logger, config } = app;
  // Connections and subscription streams held open by each API key, ended when it is revoked.
  const keyWatch = createKeyWatch(app);
  const signingKeysRoute = createSigningKeysRoute(app.db, app.signer);

  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema: buildSchema(),
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    // The route below reads every body itself within MAX_REQUEST_BYTES (chunked ones included) and
    // hands Yoga the bytes: Yoga's own limit would only wrap them in a second stream per request.
    maxRequestBodySize: false,
    graphiql: { subscriptionsProtocol: 'WS', title: 'Action Engine' },
    // Assets served from /graphiql/ (no CDN), a CSP, and a fetcher that sends the headers editor's
    // Authorization over HTTP and in graphql-ws connection_init (src/http/graphiql.ts).
    renderGraphiQL: (options) => renderGraphiQLPage({ ...options }),
    // Expected refusals thrown outside a mutation payload keep their code and field, an outage of
    // PostgreSQL or Redis is a retryable UNAVAILABLE; anything else is masked (src/http/mask-error.ts).
    maskedErrors: { maskError: createMaskError(logger) },
    logging: {
      debug: (...args) => logger.debug({ args }, 'yoga'),
      info: (...args) => logger.info({ args }, 'yoga'),
      warn: (...args) => logger.warn({ args }, 'yoga'),
      // An expected refusal (a caller's mistake) that Yoga reports on its way out is no error of ours.
      error: (...args) => (args.some(isExpectedRefusal) ? logger.debug({ args }, 'yoga') : logger.error({ args }, 'yoga')),
    },
    // The caller is resolved for every operation, over HTTP from the Authorization header and
    // over graphql-ws from connectionParams.authorization or .headers.authorization, any letter
    // case (same lookup, same rules; see src/http/ws-auth.ts).
    context: async ({ req, connectionParams }: ServerContext & { connectionParams?: Record<string, unknown> }) => {
      const authorization = connectionParams ? authorizationFromConnectionParams(connectionParams) : (req.headers.authorization ?? null);
      const identity = await app.auth.identify(authorization);
      return {
        app,
        principal: identity?.principal ?? null,
        apiKeyId: identity?.apiKeyId ?? null,
        ip: clientIp(req),
        userAgent: req.headers['user-agent'] ?? null,
      };
    },
    plugins: [
      // Limits checked at validation, so they hold for graphql-ws as well as HTTP.
      EnvelopArmorPlugin({
        maxDepth: { n: 12 },
        costLimit: { maxCost: 5000 },
        maxAliases: { n: 20 },
        maxDirectives: { n: 20 },
        maxTokens: { n: 3000 },
        blockFieldSuggestion: { enabled: true },
      }),
      useOperationMetrics(app.metrics),
      useIntrospectionNeedsKey(),
      useGraphiQLSecurityHeaders(),
      useEndStreamsOfRevokedKeys(keyWatch, config.wsMaxConnectionsPerKey),
      useInputGuard(),
    ],
  });

  const httpServer = createServer((req, res) => {
    void route(req, res).catch((error: unknown) => {
      // A malformed percent-encoding anywhere in the URL is the caller's mistake, not ours.
      if (error instanceof URIError && !res.headersSent) return sendJson(res, 400, { error: 'malformed percent-encoding in the request URL' });
      // PostgreSQL or Redis away (approval pages, metrics…): a retryable 503, not a 500.
      const unavailable = unavailableError(error);
      if (unavailable && !res.headersSent) {
        logger.warn({ err: briefError(error), path: req.url?.slice(0, 100) }, 'request met an unavailable dependency');
        res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': String(unavailable.retryAfterSeconds) });
        res.end(`The service is temporarily unavailable (${unavailable.message}).\n`);
        return;
      }
      logger.error({ err: error }, 'unhandled error in request');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return sendJson(res, 400, { error: 'malformed request URL' });
    }
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/readyz') {
      const report = await checkReadiness(app);
      if (!report.ready) logger.warn({ checks: report.checks }, 'not ready');
      return sendJson(res, report.ready ? 200 : 503, { status: report.ready ? 'ready' : 'unavailable', ...report });
    }
    if (url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': app.metrics.registry.contentType });
      res.end(await app.metrics.registry.metrics());
      return;
    }
    if (await signingKeysRoute(req, res, url.pathname)) return;
    if (await handleApprovalRoute(app, req, res, url.pathname)) return;
    if (await handleCallbackRoute(app, req, res, url.pathname)) return;
    if (await handleMcpRoute(app, req, res, url.pathname)) return;
    if (await serveGraphiQLAsset(req, res, url.pathname)) return;
    if (await handleConsoleRoute(req, res, url.pathname)) return;
    if (url.pathname === GRAPHQL_PATH) {
      if (!wellEncoded(url.search.slice(1))) {
        return sendJson(res, 400, { errors: [{ message: 'malformed percent-encoding in the query string', extensions: { code: 'BAD_REQUEST' } }] });
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        // Read here, counting the bytes received (chunked bodies have no Content-Length), and
        // handed to Yoga as the parsed body.
        try {
          const body = await readBodyWithin(req, config.maxRequestBytes);
          (req as IncomingMessage & { body?: Buffer }).body = body;
        } catch (error) {
          if (!(error instanceof BodyTooLargeError)) throw error;
          const text = JSON.stringify({ errors: [{ message: error.message, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
          return refuseTooLarge(req, res, text, 'application/json; charset=utf-8');
        }
      }
      // The adapter's own request listener (handleNodeRequestAndResponse never answers here).
      await yoga(req, res);
      return;
    }
    sendJson(res, 404, { error: 'not found', path: url.pathname });
  }

  const wsServer = new WebSocketServer({ server: httpServer, path: GRAPHQL_PATH, maxPayload: config.maxRequestBytes });
  // Each operation goes through Yoga's envelop (parse, validate, context, execute), so the same
  // plugins apply to WebSocket and HTTP alike.
  const wsGuard = createWsGuard(app, keyWatch);
  const wsHandle = useServer<Record<string, unknown>, { request: IncomingMessage }>(
    {
      // connection_init must carry a valid key (4401 none, 4403 unknown/revoked, 4429 over the cap).
      onConnect: (ctx) => wsGuard.onConnect(ctx as never),
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args) as never,
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args) as never,
      onSubscribe: async (ctx, _id, payload) => {
        const overCap = wsGuard.checkSubscribe(ctx as never);
        if (overCap) return overCap;
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          connectionParams: ctx.connectionParams ?? {},
          params: payload,
        });
        // A bad operation gets an `error` message for its id only; the socket and its other
        // operations carry on (a throw here would close the whole connection with 4500).
        let document;
        try {
          document = parse(payload.query);
        } catch (error) {
          if (error instanceof GraphQLError) return [error];
          throw error;
        }
        let errors: readonly GraphQLError[];
        try {
          errors = validate(schema, document);
        } catch (error) {
          // graphql-armor's limits (depth, cost, aliases, directives) throw from validation.
          if (error instanceof GraphQLError) return [error];
          throw error;
        }
        if (errors.length > 0) return errors;
        if (!getOperationAST(document, payload.operationName ?? undefined)) {
          return [
            new GraphQLError(
              payload.operationName ? `no operation named "${String(payload.operationName).slice(0, 64)}" in the document` : 'the document has several operations: name one with operationName',
            ),
          ];
        }
        let contextValue;
        try {
          contextValue = await contextFactory();
        } catch (error) {
          // The key could not be checked (database unreachable): this operation fails, retryably; the socket stays.
          logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'cannot build the context of a WebSocket operation');
          return [new GraphQLError('the service cannot check the API key right now; try again shortly', { extensions: { code: 'UNAVAILABLE' } })];
        }
        const args: ExecutionArgs = {
          schema,
          operationName: payload.operationName ?? null,
          document,
          variableValues: payload.variables ?? null,
          contextValue,
          rootValue: { execute, subscribe } satisfies EnvelopedRoot,
        };
        return args;
      },
    },
    wsServer,
  );

  let closing: Promise<void> | undefined;

  return {
    httpServer,
    yoga,
    listen(port = config.port, host = config.host) {
      return new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(port, host, () => {
          httpServer.off('error', reject);
          resolve((httpServer.address() as AddressInfo).port);
        });
      });
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        httpServer.closeIdleConnections();
        keyWatch.dispose();
        await wsHandle.dispose();
        wsServer.close();
        const timeout = new Promise<'timeout'>((resolve) => setTimeout(resolve, config.shutdownTimeoutMs, 'timeout').unref());
        if ((await Promise.race([stopped, timeout])) === 'timeout') {
          logger.warn({ timeoutMs: config.shutdownTimeoutMs }, 'in-flight requests did not finish in time; closing them');
          httpServer.closeAllConnections();
          await stopped;
        }
      })();
      return closing;
    },
  };
}

/** Whether every part of a query string decodes (URLSearchParams would quietly turn `%E0%A4%A` into U+FFFD). */
function wellEncoded(query: string): boolean {
  try {
    for (const part of query.split('&')) decodeURIComponent(part.replace(/\+/g, ' '));
    return true;
  } catch {
    return false;
  }
}

function isExpectedRefusal(value: unknown): boolean {
  const original = value instanceof GraphQLError ? value.originalError : value;
  return original instanceof EngineError && !(original instanceof UnavailableError);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
