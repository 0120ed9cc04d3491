import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Plugin } from 'graphql-yoga';

/**
 * GraphiQL served entirely by this server: the page loads its scripts, styles and editor
 * workers from `/graphiql/…` (bundled by `@graphql-yoga/render-graphiql`, and graphql-ws's
 * browser build), never from a CDN, under a Content-Security-Policy that allows nothing else.
 *
 * Our own fetcher (`/graphiql/boot.js`) sends the headers typed in the headers editor with every
 * HTTP request, and as `connectionParams.headers` in graphql-ws's `connection_init` for
 * subscriptions, where the service reads `headers.authorization`.
 */

export const GRAPHIQL_ASSET_PREFIX = '/graphiql/';

/** No inline script, no other host: scripts and workers from this origin only. */
export const GRAPHIQL_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "worker-src 'self'",
  // Monaco and GraphiQL set element styles at run time.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

const ENV_JS = `self.MonacoEnvironment = {
  globalAPI: false,
  getWorkerUrl: function (_moduleId, label) {
    return '${GRAPHIQL_ASSET_PREFIX}' + (label === 'json' ? 'json.worker.js' : label === 'graphql' ? 'graphql.worker.js' : 'editor.worker.js');
  },
};
`;

const BOOT_JS = `(function () {
  'use strict';
  var endpoint = new URL('/graphql', location.href).toString();
  var wsEndpoint = endpoint.replace(/^http/, 'ws');
  var clients = {};

  // One graphql-ws connection per set of headers: the key goes in connection_init.
  function wsClient(headers) {
    var id = JSON.stringify(headers || {});
    if (!clients[id]) {
      clients[id] = graphqlWs.createClient({ url: wsEndpoint, connectionParams: { headers: headers || {} }, retryAttempts: 0, lazy: true });
    }
    return clients[id];
  }

  // The type of the operation to run (the named one, or the only one), without a parser:
  // comments and strings are blanked, then top-level definitions are read.
  function operationType(query, operationName) {
    var src = String(query || '')
      .replace(/"""[\\s\\S]*?"""/g, '""')
      .replace(/"(?:\\\\.|[^"\\\\\\n])*"/g, '""')
      .replace(/#[^\\n]*/g, '');
    var ops = [];
    var depth = 0;
    var re = /[{}]|[_A-Za-z][_0-9A-Za-z]*/g;
    var m;
    var pending = null;
    while ((m = re.exec(src))) {
      var token = m[0];
      if (token === '{') {
        if (depth === 0) ops.push(pending || { type: 'query', name: null });
        pending = null;
        depth++;
      } else if (token === '}') {
        depth = Math.max(0, depth - 1);
      } else if (depth === 0) {
        if (token === 'query' || token === 'mutation' || token === 'subscription') pending = { type: token, name: null, named: false };
        else if (token === 'fragment') pending = { type: 'fragment', name: null };
        else if (pending && pending.name === null && !pending.named) { pending.name = token; pending.named = true; }
      }
    }
    ops = ops.filter(function (o) { return o.type !== 'fragment'; });
    var op = operationName ? ops.filter(function (o) { return o.name === operationName; })[0] : ops[0];
    return op ? op.type : 'query';
  }

  function closeError(event) {
    if (event instanceof Error) return event;
    if (event && typeof event.code === 'number') return new Error('WebSocket closed: ' + event.code + (event.reason ? ' ' + event.reason : ''));
    if (Array.isArray(event)) return { errors: event };
    return new Error(String(event));
  }

  function fetcher(params, opts) {
    var headers = (opts && opts.headers) || {};
    if (operationType(params.query, params.operationName) === 'subscription') {
      return {
        subscribe: function (observer) {
          var sink = typeof observer === 'function' ? { next: observer } : observer;
          var dispose = wsClient(headers).subscribe(
            { query: params.query, variables: params.variables, operationName: params.operationName },
            {
              next: function (value) { sink.next && sink.next(value); },
              error: function (error) {
                var e = closeError(error);
                if (e instanceof Error) { sink.error && sink.error(e); } else { sink.next && sink.next(e); sink.complete && sink.complete(); }
              },
              complete: function () { sink.complete && sink.complete(); },
            },
          );
          return { unsubscribe: dispose };
        },
      };
    }
    var h = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' };
    Object.keys(headers).forEach(function (k) { h[k] = headers[k]; });
    return fetch(endpoint, {
      method: 'POST',
      headers: h,
      credentials: 'same-origin',
      body: JSON.stringify({ query: params.query, variables: params.variables, operationName: params.operationName }),
    }).then(function (res) { return res.json(); });
  }

  var options = JSON.parse(document.getElementById('graphiql-options').textContent);
  options.fetcher = fetcher;
  YogaGraphiQL.renderYogaGraphiQL(document.getElementById('root'), options);
})();
`;

interface Assets {
  [file: string]: { type: string; body: string };
}

let assets: Promise<Assets> | undefined;

/** Loaded on first use: the bundle is ~9 MB, and CLI commands that import the server never need it. */
function loadAssets(): Promise<Assets> {
  assets ??= (async () => {
    const g = await import('@graphql-yoga/render-graphiql/graphiql');
    const require = createRequire(import.meta.url);
    const wsDir = path.resolve(path.dirname(require.resolve('graphql-ws')), '..');
    const graphqlWs = await readFile(path.join(wsDir, 'umd', 'graphql-ws.min.js'), 'utf8');
    const js = 'text/javascript; charset=utf-8';
    return {
      'graphiql.js': { type: js, body: g.js },
      'graphiql.css': { type: 'text/css; charset=utf-8', body: g.css },
      'editor.worker.js': { type: js, body: g.editorWorkerService },
      'json.worker.js': { type: js, body: g.jsonWorker },
      'graphql.worker.js': { type: js, body: g.graphqlWorker },
      'graphql-ws.js': { type: js, body: graphqlWs },
      'env.js': { type: js, body: ENV_JS },
      'boot.js': { type: js, body: BOOT_JS },
    };
  })();
  assets.catch(() => {
    assets = undefined;
  });
  return assets;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The GraphiQL page: markup only; every script and style comes from {@link GRAPHIQL_ASSET_PREFIX}. */
export async function renderGraphiQLPage(options: { title?: string } & Record<string, unknown>): Promise<string> {
  const { favicon } = await import('@graphql-yoga/render-graphiql/graphiql');
  const title = options.title ?? 'GraphiQL';
  // JSON inside a non-executed <script> element: "<" escaped so it cannot end the element.
  const json = JSON.stringify({ title, ...stripFunctions(options) }).replace(/</g, '\\u003c');
  const p = GRAPHIQL_ASSET_PREFIX;
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(title)}</title>
    <link rel="icon" href="${favicon}" />
    <link rel="stylesheet" href="${p}graphiql.css" />
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>You need to enable JavaScript to run GraphiQL.</noscript>
    <div id="root"></div>
    <script type="application/json" id="graphiql-options">${json}</script>
    <script src="${p}env.js"></script>
    <script src="${p}graphql-ws.js"></script>
    <script src="${p}graphiql.js"></script>
    <script src="${p}boot.js"></script>
  </body>
</html>
`;
}

function stripFunctions(options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => typeof v !== 'function'));
}

/** Serves `/graphiql/<asset>`; false for any other path. */
export async function serveGraphiQLAsset(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
  if (!pathname.startsWith(GRAPHIQL_ASSET_PREFIX)) return false;
  const asset = (await loadAssets())[pathname.slice(GRAPHIQL_ASSET_PREFIX.length)];
  if (!asset || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found');
    return true;
  }
  res.writeHead(200, {
    'content-type': asset.type,
    'content-length': Buffer.byteLength(asset.body),
    'cache-control': 'public, max-age=3600',
    'x-content-type-options': 'nosniff',
    'content-security-policy': GRAPHIQL_CSP,
  });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
  return true;
}

/** Adds the CSP (and no-sniff, no framing) to the GraphiQL page Yoga answers with. */
export function useGraphiQLSecurityHeaders(): Plugin {
  return {
    onResponse({ response }) {
      if (!(response.headers.get('content-type') ?? '').includes('text/html')) return;
      response.headers.set('content-security-policy', GRAPHIQL_CSP);
      response.headers.set('x-content-type-options', 'nosniff');
      response.headers.set('x-frame-options', 'DENY');
      response.headers.set('referrer-policy', 'no-referrer');
    },
  };
}
