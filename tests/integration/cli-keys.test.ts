import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { testRedisUrl } from '../helpers/redis.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

let t: TestServer;
let dataDir: string;
// The CLI works on the server's database and announces on its Redis prefix (a second process of one deployment).
const env = () => ({
  DATA_DIR: dataDir,
  DATABASE_URL: t.app.config.databaseUrl!,
  REDIS_URL: testRedisUrl,
  REDIS_PREFIX: t.app.config.redisPrefix,
  REDIS_AUTOSTART: 'false',
});

beforeAll(async () => {
  // A long re-check period: only the CLI's announcement can close the socket quickly.
  t = await startTestServer({ env: { WS_KEY_RECHECK_SECONDS: '600' } });
  dataDir = await mkdtemp(path.join(tmpdir(), 'ae-cli-keys-'));
});
afterAll(async () => {
  await t?.close();
  await rm(dataDir, { recursive: true, force: true });
});

function openSocket(key: string) {
  const socket = new WebSocket(t.wsUrl, 'graphql-transport-ws');
  const acked = new Promise<void>((resolve) => socket.on('message', (d) => JSON.parse(d.toString()).type === 'connection_ack' && resolve()));
  const closed = new Promise<{ code: number; at: number }>((resolve) => socket.on('close', (code) => resolve({ code, at: Date.now() })));
  socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${key}` } })));
  return { acked, closed };
}

describe('action-engine keys list / keys revoke', () => {
  it('lists keys without secrets, revokes by prefix or id (closing open WebSockets at once), and refuses an unknown or revoked key', async () => {
    const created = await runCli(['keys', 'create', '--role', 'agent', '--space', 'acme', '--user', 'alice'], env());
    expect(created.code, created.stderr).toBe(0);
    const key = created.stdout.trim();
    const admin = await runCli(['keys', 'create', '--role', 'admin', '--space', 'globex'], env());
    expect(admin.code, admin.stderr).toBe(0);

    const list = await runCli(['keys', 'list'], env());
    expect(list.code, list.stderr).toBe(0);
    const lines = list.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+PREFIX\s+ROLE\s+SPACE\s+USER\s+CREATED\s+REVOKED$/);
    const row = lines.find((l) => l.includes(key.slice(0, 10)))!;
    expect(row).toMatch(/^[0-9a-f-]{36}\s+ae_\S{7}\s+agent\s+acme\s+alice\s+\d{4}-\d\d-\d\dT\S+\s+-$/);
    const hashes = (await t.app.db.apiKey.findMany({ select: { keyHash: true } })).map((r) => r.keyHash);
    for (const secret of [key, admin.stdout.trim(), ...hashes]) expect(list.stdout + list.stderr).not.toContain(secret);
    const json = await runCli(['keys', 'list', '--space', 'globex', '--json'], env());
    expect(JSON.parse(json.stdout)).toEqual([expect.objectContaining({ role: 'ADMIN', space: 'globex', user: null, revokedAt: null })]);

    const socket = openSocket(key);
    await socket.acked;
    const started = Date.now();
    const revoked = await runCli(['keys', 'revoke', key.slice(0, 10)], env());
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/revoked agent key ae_\S{7}… \([0-9a-f-]{36}\) of space "acme", user "alice"/);
    const closed = await socket.closed;
    expect(closed.code).toBe(4403);
    expect(closed.at - started).toBeLessThan(10_000); // includes starting the CLI process
    const me = await postGraphql(t.url, key, '{ me { role } }');
    expect(me.body.errors![0]!.extensions!.code).toBe('UNAUTHENTICATED');

    const id = /\(([0-9a-f-]{36})\)/.exec(revoked.stdout)![1]!;
    const again = await runCli(['keys', 'revoke', id], env());
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already revoked/);
    const unknown = await runCli(['keys', 'revoke', 'ae_nothere'], env());
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no API key with prefix ae_nothere/);
    const entries = await t.app.db.auditEntry.findMany({ where: { event: 'api_key.revoked' } });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ actor: 'system:cli', data: { apiKeyId: id, before: { revokedAt: null } } });
    const after = await runCli(['keys', 'list', '--space', 'acme'], env());
    expect(after.stdout).toMatch(new RegExp(`${id}.*\\d{4}-\\d\\d-\\d\\dT\\S+Z\\s*$`, 'm'));
  }, 120_000); // each CLI run starts a Node process (~5 s on a loaded machine)
});
