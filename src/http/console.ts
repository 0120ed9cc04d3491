import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * The console (/console, spec §12): the single-page app Vite builds from src/console into
 * dist/console at `npm ci` (scripts/generate.mjs). Served from this server only, under a
 * Content-Security-Policy that allows scripts, styles and connections (HTTP and graphql-ws) to
 * this origin and nothing else. `/` redirects here. The API key never travels in a cookie: the
 * page keeps it in sessionStorage and sends it as a Bearer header.
 */

export const CONSOLE_PATH = '/console';

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  // 'self' covers ws:/wss: to the same host in CSP Level 3 browsers.
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

const DIST = fileURLToPath(new URL('../../dist/console/', import.meta.url));

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Console not built</title>
<p>The console has not been built: run <code>npm ci</code> (or <code>npm run generate</code>) with the dev dependencies installed.</p>`;

function headers(type: string, length: number, cache: string): Record<string, string | number> {
  return {
    'content-type': type,
    'content-length': length,
    'cache-control': cache,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'content-security-policy': CONSOLE_CSP,
  };
}

/** Answers `/` (redirect), `/console`, `/console/…` and `/console/assets/…`; false for any other path. */
export async function handleConsoleRoute(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
  if (pathname === '/') {
    res.writeHead(302, { location: `${CONSOLE_PATH}/`, 'content-length': 0 });
    res.end();
    return true;
  }
  if (pathname !== CONSOLE_PATH && !pathname.startsWith(`${CONSOLE_PATH}/`)) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('method not allowed');
    return true;
  }
  const rest = pathname.slice(CONSOLE_PATH.length + 1);
  if (rest.startsWith('assets/')) {
    // Only a plain file name inside assets/ (Vite's hashed names): no traversal, no dot files.
    const name = rest.slice('assets/'.length);
    const type = TYPES[path.extname(name)];
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.') || !type) return notFound(res);
    let body: Buffer;
    try {
      body = await readFile(path.join(DIST, 'assets', name));
    } catch {
      return notFound(res);
    }
    res.writeHead(200, headers(type, body.length, 'public, max-age=31536000, immutable'));
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }
  // The app itself for /console and any page below it (the app reads no path yet).
  let body: Buffer;
  try {
    body = await readFile(path.join(DIST, 'index.html'));
  } catch {
    body = Buffer.from(NOT_BUILT);
  }
  res.writeHead(200, headers('text/html; charset=utf-8', body.length, 'no-cache'));
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}

function notFound(res: ServerResponse): true {
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' });
  res.end('not found');
  return true;
}
