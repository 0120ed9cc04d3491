import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeCalendar } from 'tsdav';
import { closedPort } from './ports.js';

const RADICALE = process.env.RADICALE_BIN ?? '/usr/bin/radicale';
const INSTALL_HINT = 'Radicale (the CalDAV server the calendar tests run against) is not installed: run `apt-get install -y radicale` (Debian package; .ci/run installs it)';

/** A Radicale CalDAV server started for a test: loopback, free port, storage and config in a temp folder, htpasswd login. */
export interface TestRadicale {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  username: string;
  password: string;
  /** `Basic …` for the user. */
  authorization: string;
  /** Creates a calendar collection of the user (MKCALENDAR) and returns its URL (no credentials, trailing slash). */
  createCalendar(name: string): Promise<string>;
  /** What Radicale printed (for failure messages). */
  output(): string;
  close(): Promise<void>;
}

export async function startRadicale(options: { username?: string; password?: string; bin?: string } = {}): Promise<TestRadicale> {
  const bin = options.bin ?? RADICALE;
  if (!existsSync(bin)) throw new Error(INSTALL_HINT);
  const username = options.username ?? 'ada';
  const password = options.password ?? `pw-${Math.random().toString(36).slice(2)}`;
  const dir = await mkdtemp(path.join(tmpdir(), 'ae-radicale-'));
  const port = await closedPort();
  await writeFile(path.join(dir, 'users'), `${username}:${password}\n`, { mode: 0o600 });
  await writeFile(
    path.join(dir, 'config'),
    [
      '[server]',
      `hosts = 127.0.0.1:${port}`,
      '[auth]',
      'type = htpasswd',
      `htpasswd_filename = ${path.join(dir, 'users')}`,
      'htpasswd_encryption = plain',
      'delay = 0',
      '[rights]',
      'type = owner_only',
      '[storage]',
      `filesystem_folder = ${path.join(dir, 'collections')}`,
      '[web]',
      'type = none',
      '[logging]',
      'level = warning',
      '',
    ].join('\n'),
  );
  let out = '';
  let child: ChildProcess;
  try {
    child = spawn(bin, ['--config', path.join(dir, 'config')], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', HOME: dir } });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${INSTALL_HINT} (${error instanceof Error ? error.message : String(error)})`);
  }
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  child.on('exit', () => (exited = true));
  child.on('error', (error) => {
    exited = true;
    out += `\n${error.message}`;
  });

  const origin = `http://127.0.0.1:${port}`;
  const authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  const close = async () => {
    if (!exited) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([gone, sleep(5000)]);
      if (!exited) child.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  };
  const until = Date.now() + 20_000;
  for (;;) {
    if (exited) {
      await close();
      throw new Error(`Radicale exited at start (is it installed properly? ${INSTALL_HINT.split(': ')[1]}):\n${out}`);
    }
    const up = await fetch(`${origin}/`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.body?.cancel().then(() => true) ?? true,
      () => false,
    );
    if (up) break;
    if (Date.now() > until) {
      await close();
      throw new Error(`Radicale did not answer on ${origin} within 20 s:\n${out}`);
    }
    await sleep(100);
  }
  return {
    origin,
    username,
    password,
    authorization,
    async createCalendar(name) {
      const url = `${origin}/${encodeURIComponent(username)}/${encodeURIComponent(name)}/`;
      // The principal collection first (Radicale creates it on the user's first request).
      await fetch(`${origin}/${encodeURIComponent(username)}/`, { method: 'PROPFIND', headers: { authorization, depth: '0' } }).then((r) => r.body?.cancel());
      const responses = await makeCalendar({
        url,
        props: { displayname: name },
        headers: { authorization },
      });
      const failed = responses.find((r) => !r.ok);
      if (failed) throw new Error(`MKCALENDAR ${url} failed: ${failed.status} ${failed.statusText}\n${out}`);
      return url;
    },
    output: () => out,
    close,
  };
}
