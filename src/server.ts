import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import type { ExecutionArgs } from 'graphql';
import type { App } from './app.js';
import type { GraphQLContext } from './context.js';
import { handleApprovalRoute } from './http/approval-routes.js';
import { briefError, unavailableError } from './engine/infra-errors.js';
import { createMaskError } from './http/mask-error.js';
import { checkReadiness } from './http/readiness.js';
import { useOperationMetrics } from './metrics.js';
import { buildSchema } from './resolvers/index.js';

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

  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema: buildSchema(),
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    graphiql: { subscriptionsProtocol: 'WS', title: 'Action Engine' },
    maskedErrors: { maskError: createMaskError(logger) },
    logging: {
      debug: (...args) => logger.debug({ args }, 'yoga'),
      info: (...args) => logger.info({ args }, 'yoga'),
      warn: (...args) => logger.warn({ args }, 'yoga'),
      error: (...args) => logger.error({ args }, 'yoga'),
    },
    // The caller is resolved for every operation, over HTTP from the Authorization header and
    // over graphql-ws from connectionParams.authorization (same lookup, same rules).
    context: async ({ req, connectionParams }: ServerContext & { connectionParams?: Record<string, unknown> }) => {
      const authorization = connectionParams
        ? typeof connectionParams.authorization === 'string'
          ? connectionParams.authorization
          : null
        : (req.headers.authorization ?? null);
      return {
        app,
        principal: await app.auth.authenticate(authorization),
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
    ],
  });

  const httpServer = createServer((req, res) => {
    void route(req, res).catch((error: unknown) => {
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
    const url = new URL(req.url ?? '/', 'http://localhost');
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
    if (await handleApprovalRoute(app, req, res, url.pathname)) return;
    if (url.pathname === GRAPHQL_PATH) {
      const length = Number(req.headers['content-length'] ?? 0);
      if (length > config.maxRequestBytes) {
        return sendJson(res, 413, { errors: [{ message: `request body larger than ${config.maxRequestBytes} bytes` }] });
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
  const wsHandle = useServer<Record<string, unknown>, { request: IncomingMessage }>(
    {
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args) as never,
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args) as never,
      onSubscribe: async (ctx, _id, payload) => {
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          connectionParams: ctx.connectionParams ?? {},
          params: payload,
        });
        const document = parse(payload.query);
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        const contextValue = await contextFactory();
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

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
