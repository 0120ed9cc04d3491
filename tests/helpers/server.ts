import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { createApp, type App, type CreateAppOptions } from '../../src/app.js';
import { startWorker, type ActionWorker, type WorkerOptions } from '../../src/worker.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { createApiServer, type ApiServer } from '../../src/server.js';
import { createTestDatabase } from './postgres.js';
import { deleteRedisPrefix, testRedisUrl, uniqueRedisPrefix } from './redis.js';

/** A real server on a free port, over its own database and Redis prefix. */
export interface TestServer {
  app: App;
  server: ApiServer;
  /** The in-process worker, when asked for. */
  worker: ActionWorker | null;
  /** e.g. http://127.0.0.1:40123 */
  url: string;
  /** ws://127.0.0.1:40123/graphql */
  wsUrl: string;
  /** POSTs one operation to /graphql. */
  graphql<R, V extends Record<string, unknown>>(
    document: TypedDocumentNode<R, V>,
    variables?: V,
    options?: { apiKey?: string },
  ): Promise<ExecutionResult<R> & { status: number }>;
  /** A graphql-ws client connected to this server (closed with the server). */
  wsClient(options?: { apiKey?: string }): Client;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** Extra environment for the server's config (DATABASE_URL and REDIS_* are set here). */
  env?: Record<string, string>;
  /** Skip creating a database: env.DATABASE_URL must then say where it is. */
  database?: 'fresh' | 'from-env';
  /**
   * Share this Redis prefix (another test server's) to act as a second process of the same
   * deployment; the keys are then left for that server to delete.
   */
  redisPrefix?: string;
  /** Options for createApp (extra handlers and action types). */
  app?: Pick<CreateAppOptions, 'extraHandlers' | 'extraActionTypes'>;
  /** Also run an execution worker in this process. */
  worker?: boolean | WorkerOptions;
  /** Where the server's log lines go (default: stdout, at TEST_LOG_LEVEL or silent). */
  logDestination?: Parameters<typeof createLogger>[1];
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const database = options.database === 'from-env' ? null : await createTestDatabase();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ae-test-'));
  const redisPrefix = options.redisPrefix ?? uniqueRedisPrefix();
  const config = loadConfig({
    PORT: '0',
    DATA_DIR: dataDir,
    REDIS_URL: testRedisUrl,
    REDIS_PREFIX: redisPrefix,
    REDIS_AUTOSTART: 'false',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SHUTDOWN_TIMEOUT_MS: '2000',
    ...(database ? { DATABASE_URL: database.url } : {}),
    ...options.env,
  });
  const logger = createLogger({ level: config.logLevel }, options.logDestination);
  const clients: Client[] = [];
  let app: App | undefined;
  try {
    app = await createApp(config, logger, { migrate: false, ...options.app });
    const worker = options.worker ? startWorker(app, options.worker === true ? {} : options.worker) : null;
    const server = createApiServer(app);
    const port = await server.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${port}`;
    const wsUrl = `ws://127.0.0.1:${port}/graphql`;
    const started = app;
    return {
      app: started,
      server,
      worker,
      url,
      wsUrl,
      async graphql(document, variables, opts) {
        const res = await fetch(`${url}/graphql`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/graphql-response+json, application/json',
            ...(opts?.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
          },
          body: JSON.stringify({ query: print(document), variables }),
        });
        const body = (await res.json()) as ExecutionResult<never>;
        return { ...body, status: res.status };
      },
      wsClient(opts) {
        const client = createClient({
          url: wsUrl,
          webSocketImpl: WebSocket,
          retryAttempts: 0,
          lazy: true,
          connectionParams: opts?.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {},
        });
        clients.push(client);
        return client;
      },
      async close() {
        await Promise.all(clients.map((c) => c.dispose()));
        await worker?.close();
        await server.close();
        await started.close();
        await database?.drop();
        if (!options.redisPrefix) await deleteRedisPrefix(redisPrefix);
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await app?.close();
    await database?.drop();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}

/** Runs one operation over a graphql-ws client and returns its single result. */
export function executeOverWs<R, V extends Record<string, unknown>>(
  client: Client,
  document: TypedDocumentNode<R, V>,
  variables?: V,
): Promise<ExecutionResult<R>> {
  return new Promise((resolve, reject) => {
    let result: ExecutionResult<R> | undefined;
    client.subscribe<R>(
      { query: print(document), variables: variables ?? {} },
      {
        next: (value) => {
          result = value as ExecutionResult<R>;
        },
        error: reject,
        complete: () => (result ? resolve(result) : reject(new Error('completed without a result'))),
      },
    );
  });
}
