import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';

/** Options for {@link ensureRedis}. */
export interface EnsureRedisOptions {
  /** `REDIS_URL`; may carry a password, which is never printed. */
  url: string;
  /** The service's data directory; a Redis started here works in `<dataDir>/redis`. */
  dataDir: string;
  /** Whether a local `redis-server` may be started when nothing answers on a loopback URL. */
  autostart: boolean;
  /** Where progress is reported (one line each). */
  log?: (msg: string) => void;
}

/** The outcome of {@link ensureRedis}. */
export interface LocalRedis {
  /** True if this call started a `redis-server` child process. */
  started: boolean;
  /** Ends the child process, if one was started; otherwise does nothing. */
  stop(): Promise<void>;
}

/** A service the engine needs is not there; the message is one line saying what to do. */
export class ServiceUnavailableError extends Error {
  override name = 'ServiceUnavailableError';
}

const PROBE_TIMEOUT_MS = 1_000;
const STARTUP_WAIT_MS = 5_000;
const STOP_WAIT_MS = 5_000;
const SET_URL = 'set REDIS_URL to a running Redis';

/**
 * Makes sure a Redis answers at `url`. If one answers, nothing is started. If none does, the
 * URL points at this machine, `autostart` is on and `redis-server` is on the PATH, starts one
 * as a child process (127.0.0.1 or ::1, the URL's port and password, its data kept in an append-only file in
 * `<dataDir>/redis`) and waits until it answers PING. Otherwise throws a
 * {@link ServiceUnavailableError} naming the URL (password masked) and the remedy.
 */
export async function ensureRedis(opts: EnsureRedisOptions): Promise<LocalRedis> {
  const log = opts.log ?? (() => {});
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new ServiceUnavailableError('REDIS_URL is not a valid URL (expected redis://[user:password@]host:port)');
  }
  const shown = maskPassword(url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port ? Number(url.port) : 6379;

  const probe = await pingRedis(opts.url, PROBE_TIMEOUT_MS);
  if (probe.kind === 'pong') return { started: false, stop: async () => {} };
  if (probe.kind === 'auth') {
    throw new ServiceUnavailableError(`Redis at ${shown} refused the credentials (${probe.detail}): fix the user or password in REDIS_URL`);
  }
  if (probe.kind === 'foreign') {
    throw new ServiceUnavailableError(
      `Redis is not answering at ${shown}: something else is listening on ${hostPort(host, port)} (${probe.detail}); stop it or ${SET_URL}`,
    );
  }
  if (probe.kind === 'other') {
    throw new ServiceUnavailableError(`Redis is not answering at ${shown} (${probe.detail}): start Redis there or ${SET_URL}`);
  }
  if (!isLoopback(host)) {
    throw new ServiceUnavailableError(
      `Redis is not answering at ${shown} (${probe.detail}): start Redis on that host or ${SET_URL} (only a local Redis is started automatically)`,
    );
  }
  if (!opts.autostart) {
    throw new ServiceUnavailableError(
      `Redis is not answering at ${shown} and REDIS_AUTOSTART is off: start redis-server on port ${port} or ${SET_URL}`,
    );
  }
  if (url.protocol === 'rediss:') {
    throw new ServiceUnavailableError(`Redis is not answering at ${shown}, and a TLS (rediss://) Redis is not started automatically: start one or ${SET_URL}`);
  }
  const redisServer = findOnPath('redis-server');
  if (!redisServer) {
    throw new ServiceUnavailableError(
      `Redis is not answering at ${shown} and redis-server is not installed: install it (apt-get install redis-server) or ${SET_URL}`,
    );
  }

  const workDir = path.join(path.resolve(opts.dataDir), 'redis');
  try {
    await mkdir(workDir, { recursive: true });
  } catch (err) {
    throw new ServiceUnavailableError(`Redis is not answering at ${shown} and its directory ${workDir} cannot be created: ${messageOf(err)}`);
  }
  const bindHost = host === 'localhost' ? '127.0.0.1' : host;
  const bound = hostPort(bindHost, port);
  log(`Redis is not answering at ${shown}; starting ${redisServer} on ${bound} (data kept in ${workDir}, append-only file)`);
  const server = startRedisServer(redisServer, { bindHost, port, workDir, url });

  const deadline = Date.now() + STARTUP_WAIT_MS;
  for (;;) {
    const attempt = await pingRedis(opts.url, 500);
    if (attempt.kind === 'pong') break;
    if (server.exit) {
      throw new ServiceUnavailableError(
        `redis-server could not start on ${bound} (${server.exit}${server.lastLine() ? `: ${server.lastLine()}` : ''}): free the port or ${SET_URL}`,
      );
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new ServiceUnavailableError(
        `redis-server was started on ${bound} but did not answer PING within ${STARTUP_WAIT_MS / 1000} s (${attempt.detail}): ${SET_URL}`,
      );
    }
    await sleep(50);
  }
  log(`redis-server started on ${bound} (pid ${server.pid})`);
  return { started: true, stop: () => server.stop() };
}

/** `foreign`: something accepted the connection but did not answer like Redis. */
type Probe = { kind: 'pong' } | { kind: 'refused' | 'auth' | 'foreign' | 'other'; detail: string };

/** One PING, bounded, with no retries or reconnects left behind. */
async function pingRedis(url: string, timeoutMs: number): Promise<Probe> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    reconnectOnError: () => false,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    autoResubscribe: false,
  });
  // ioredis rejects with a generic "Connection is closed"; the cause arrives as an 'error' event.
  let cause: (Error & { code?: string }) | undefined;
  client.on('error', (err: Error & { code?: string }) => {
    cause ??= err;
  });
  let connected = false;
  client.once('connect', () => (connected = true));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs * 2);
  });
  try {
    const reply = await Promise.race([
      client.connect().then(() => client.ping()),
      timedOut,
    ]);
    if (reply === 'PONG') return { kind: 'pong' };
    if (reply === 'timeout') return { kind: connected ? 'foreign' : 'other', detail: `no answer within ${timeoutMs * 2} ms` };
    return { kind: 'foreign', detail: `PING answered ${JSON.stringify(reply)}` };
  } catch (err) {
    const e = cause ?? (err as Error & { code?: string });
    if (e.code === 'ECONNREFUSED') return { kind: 'refused', detail: 'connection refused' };
    if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(e.message)) return { kind: 'auth', detail: e.message.trim() };
    if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') return { kind: 'other', detail: 'host not found' };
    if (connected) return { kind: 'foreign', detail: e.message.trim() };
    if (e.code === 'ETIMEDOUT' || /timed? ?out/i.test(e.message)) return { kind: 'other', detail: 'timed out' };
    return { kind: 'other', detail: e.message.trim() };
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

interface RedisServerProcess {
  pid: number | undefined;
  /** Set once the process has ended: how it ended. */
  exit: string | undefined;
  lastLine(): string | undefined;
  stop(): Promise<void>;
}

function startRedisServer(
  bin: string,
  { bindHost, port, workDir, url }: { bindHost: string; port: number; workDir: string; url: URL },
): RedisServerProcess {
  // Persistent: the queue and the rate-limit counters live here, and a restart must not forget
  // them (an append-only file, fsync'd every second; no RDB snapshots besides).
  const args = ['--bind', bindHost, '--port', String(port), '--dir', workDir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--daemonize', 'no'];
  // The password goes in on stdin, never in argv, where `ps` would show it.
  const password = url.password ? decodeURIComponent(url.password) : '';
  const username = url.username ? decodeURIComponent(url.username) : '';
  const stdinConfig: string[] = [];
  if (password) {
    stdinConfig.push(`requirepass ${quoteConfig(password)}`);
    if (username && username !== 'default') {
      stdinConfig.push(`user ${quoteConfig(username)} on ${quoteConfig(`>${password}`)} ~* &* +@all`);
    }
    args.push('-');
  }
  // Linux: PR_SET_PDEATHSIG through setpriv, so the server ends even if we are SIGKILLed.
  const setpriv = process.platform === 'linux' ? findOnPath('setpriv') : undefined;
  const useSetpriv = setpriv !== undefined && spawnSync(setpriv, ['--help'], { encoding: 'utf8' }).stdout?.includes('--pdeathsig');
  const child: ChildProcess = useSetpriv
    ? spawn(setpriv, ['--pdeathsig', 'TERM', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });

  const tail: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim()) tail.push(line.trim());
    }
    tail.splice(0, Math.max(0, tail.length - 20));
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.stdin?.on('error', () => {}); // the process may die before reading its config
  child.stdin?.end(stdinConfig.length > 0 ? `${stdinConfig.join('\n')}\n` : undefined);

  const state: RedisServerProcess = {
    pid: child.pid,
    exit: undefined,
    // Redis prefixes each line with `pid:role date time level`; the message is what helps.
    lastLine: () => tail.at(-1)?.replace(/^\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ [#*.-] /, ''),
    stop: async () => {},
  };
  const exited = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      state.exit ??= `could not run ${bin}: ${err.message}`;
      resolve();
    });
    child.once('exit', (code, signal) => {
      state.exit ??= signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
  });
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);
  void exited.then(() => process.off('exit', killOnExit));

  let stopping: Promise<void> | undefined;
  state.stop = () => {
    stopping ??= (async () => {
      if (state.exit) return;
      child.kill('SIGTERM');
      if ((await Promise.race([exited.then(() => 'exited' as const), sleep(STOP_WAIT_MS)])) !== 'exited') {
        child.kill('SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };
  return state;
}

/** Quotes a value for a redis.conf line (double quotes, backslash escapes). */
function quoteConfig(value: string): string {
  const escaped = value.replace(/[\\"]/g, '\\$&').replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return `"${escaped}"`;
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function maskPassword(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password) copy.password = '***';
  return copy.href;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
