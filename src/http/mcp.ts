import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { App } from '../app.js';
import { createMcpServer, MAX_WAIT_SECONDS } from '../mcp/server.js';
import { BodyTooLargeError, readBodyWithin, refuseTooLarge } from './request-body.js';

export const MCP_PATH = '/mcp';

/** Longest a single MCP request may run: the longest wait_for_action plus room for the answer. */
const REQUEST_DEADLINE_MS = (MAX_WAIT_SECONDS + 15) * 1000;

/**
 * The MCP endpoint (Streamable HTTP, spec §12), stateless: every POST carries the Bearer API key
 * and gets its own server and transport, so there is no session to bind to a key (nothing
 * outlives the request that authenticated it) and any API process can answer any request.
 * Progress notifications of a tool call travel on that POST's own SSE response stream. GET (a
 * standalone server-to-client stream) and DELETE (ending a session) have nothing to serve here:
 * 405 once the key is checked. Returns false for other paths.
 */
export async function handleMcpRoute(app: App, req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
  if (pathname !== MCP_PATH) return false;
  const identity = await app.auth.identify(req.headers.authorization ?? null);
  if (!identity) {
    const given = Boolean(req.headers.authorization);
    const challenge = given ? 'Bearer realm="action-engine", error="invalid_token", error_description="unknown or revoked API key"' : 'Bearer realm="action-engine"';
    sendJsonRpcError(res, 401, -32001, given ? 'the API key is unknown or revoked' : 'an API key is required: Authorization: Bearer ae_…', { 'www-authenticate': challenge });
    return true;
  }
  // The MCP transport spec: a browser page of another origin must not drive this endpoint. Clients
  // that send no Origin (every non-browser client) are not affected.
  const origin = req.headers.origin;
  const own = origin === undefined ? null : new URL(app.config.baseUrl).origin;
  if (origin !== undefined && origin !== own) {
    sendJsonRpcError(res, 403, -32000, `Invalid Origin header: ${origin.slice(0, 200)} (only ${own}, BASE_URL's origin, may call from a browser)`);
    return true;
  }
  if (req.method !== 'POST') {
    sendJsonRpcError(res, 405, -32000, 'this MCP endpoint is stateless: send JSON-RPC requests with POST (no standalone stream, no sessions to delete)', { allow: 'POST' });
    return true;
  }
  let body: unknown;
  try {
    const raw = await readBodyWithin(req, app.config.maxRequestBytes);
    body = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    if (error instanceof BodyTooLargeError) {
      refuseTooLarge(req, res, JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32600, message: error.message } }), 'application/json; charset=utf-8');
      return true;
    }
    if (error instanceof SyntaxError) {
      sendJsonRpcError(res, 400, -32700, 'the request body is not JSON');
      return true;
    }
    throw error;
  }

  const principal = identity.principal;
  const server = createMcpServer(app, {
    principal: async () => principal,
    ip: req.socket.remoteAddress ?? null,
    userAgent: req.headers['user-agent']?.slice(0, 500) ?? null,
  });
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: false });
  // No request hangs: a stream still open after the longest allowed wait is ended.
  const deadline = setTimeout(() => {
    app.logger.warn({ path: MCP_PATH }, 'MCP request ran past its deadline; closing it');
    void server.close();
    res.destroy();
  }, REQUEST_DEADLINE_MS);
  deadline.unref();
  // The client went away (or the answer is out): the server and any wait in flight end with it.
  res.on('close', () => {
    clearTimeout(deadline);
    void transport.close().catch(() => {});
    void server.close().catch(() => {});
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
  return true;
}

function sendJsonRpcError(res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  const text = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
