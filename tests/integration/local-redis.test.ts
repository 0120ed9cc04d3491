import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRedis, ServiceUnavailableError } from '../../src/db/local-redis.js';

let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'ae-local-redis-'));
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

/** A loopback port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function portAcceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function ping(url: string): Promise<string> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.ping();
  } finally {
    client.disconnect();
  }
}

/** PING without credentials over a plain socket; returns the first reply line. */
function unauthenticatedPing(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString('utf8').split('\r\n')[0] ?? '');
    });
    socket.once('error', reject);
  });
}

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('ensureRedis', () => {
  it('starts redis-server on a free loopback port when nothing answers, and stop() ends it (port closed after)', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const logs: string[] = [];
    const redis = await ensureRedis({ url, dataDir, autostart: true, log: (m) => logs.push(m) });
    try {
      expect(redis.started).toBe(true);
      expect(await ping(url)).toBe('PONG');
      expect(existsSync(path.join(dataDir, 'redis'))).toBe(true);
      expect(logs.join('\n')).toContain(`127.0.0.1:${port}`);
    } finally {
      await redis.stop();
    }
    expect(await portAcceptsConnections(port)).toBe(false);
    await redis.stop(); // a second stop is harmless
  });

  it('keeps its data across a restart (append-only file in DATA_DIR/redis): a key written before stop() is there after the next start', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const ownDir = await mkdtemp(path.join(os.tmpdir(), 'ae-local-redis-persist-'));
    try {
      const first = await ensureRedis({ url, dataDir: ownDir, autostart: true });
      const client = new Redis(url, { maxRetriesPerRequest: 0 });
      await client.zadd('ae:rl:s:u:send_email', 1, 'unit-1');
      client.disconnect();
      await first.stop();
      expect(await portAcceptsConnections(port)).toBe(false);
      expect(existsSync(path.join(ownDir, 'redis', 'appendonlydir'))).toBe(true);

      const second = await ensureRedis({ url, dataDir: ownDir, autostart: true });
      try {
        expect(second.started).toBe(true);
        const again = new Redis(url, { maxRetriesPerRequest: 0 });
        expect(await again.zrange('ae:rl:s:u:send_email', 0, -1)).toEqual(['unit-1']);
        again.disconnect();
      } finally {
        await second.stop();
      }
    } finally {
      await rm(ownDir, { recursive: true, force: true });
    }
  });

  it('leaves the Redis already running at 127.0.0.1:6379 alone (started: false)', async () => {
    const redis = await ensureRedis({ url: 'redis://127.0.0.1:6379', dataDir, autostart: true });
    expect(redis.started).toBe(false);
    await redis.stop();
    expect(await ping('redis://127.0.0.1:6379')).toBe('PONG');
  });

  it('with autostart off and nothing listening, throws ServiceUnavailableError naming the URL', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const err = await errorOf(ensureRedis({ url, dataDir, autostart: false }));
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect(err.message).toContain(url);
    expect(err.message).toContain('REDIS_AUTOSTART is off');
    expect(err.message).not.toContain('\n');
    expect(await portAcceptsConnections(port)).toBe(false);
  });

  it('when redis-server is not on the PATH, the error says to install it', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const savedPath = process.env.PATH;
    process.env.PATH = path.join(dataDir, 'empty-bin');
    try {
      const err = await errorOf(ensureRedis({ url, dataDir, autostart: true }));
      expect(err).toBeInstanceOf(ServiceUnavailableError);
      expect(err.message).toBe(
        `Redis is not answering at ${url} and redis-server is not installed: install it (apt-get install redis-server) or set REDIS_URL to a running Redis`,
      );
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('never starts a Redis for a non-local host, and says so', async () => {
    const url = 'redis://redis.example.invalid:6379';
    const err = await errorOf(ensureRedis({ url, dataDir, autostart: true }));
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect(err.message).toContain(url);
    expect(err.message).toContain('set REDIS_URL');
  });

  it('never prints the password from the URL, and a Redis it starts requires that password', async () => {
    const port = await freePort();
    const secret = 's3cr"et pass';
    const url = `redis://:${encodeURIComponent(secret)}@127.0.0.1:${port}`;

    const refused = await errorOf(ensureRedis({ url, dataDir, autostart: false }));
    expect(refused).toBeInstanceOf(ServiceUnavailableError);
    expect(refused.message).toContain(`redis://:***@127.0.0.1:${port}`);
    expect(refused.message).not.toContain('s3cr');

    const logs: string[] = [];
    const redis = await ensureRedis({ url, dataDir, autostart: true, log: (m) => logs.push(m) });
    try {
      expect(redis.started).toBe(true);
      expect(logs.join('\n')).not.toContain('s3cr');
      expect(await ping(url)).toBe('PONG');
      expect(await unauthenticatedPing(port)).toMatch(/^-NOAUTH/);
    } finally {
      await redis.stop();
    }
  });
});
