import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { graphql } from '../generated/gql.js';
import { testRedisUrl } from '../helpers/redis.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { MAX_WAITS_PER_KEY, runningWaitsOf } from '../../src/mcp/server.js';

const root = path.resolve(import.meta.dirname, '../..');
const bin = path.join(root, 'bin/action-engine.js');

const Approve = graphql(`
  mutation McpApprove($id: ID!) {
    approveAction(id: $id) {
      action {
        status
      }
      errors {
        code
        message
      }
    }
  }
`);

let t: TestServer;
let filesRoot: string;
let agent: { key: string; spaceId: string; userId: string | null; principalId: string };
let approverKey: string;
let strangerKey: string;

beforeAll(async () => {
  filesRoot = await mkdtemp(path.join(tmpdir(), 'ae-mcp-files-'));
  t = await startTestServer({ worker: true, env: { FILES_ROOT: filesRoot, RETRY_BACKOFF_MS: '50', RECONCILE_SECONDS: '3600' } });
  const a = await createApiKey(t.app.db, { role: 'AGENT', space: 'mcp', user: 'ada', email: 'ada@example.com' });
  agent = { key: a.key, spaceId: a.spaceId, userId: a.userId, principalId: a.principalId };
  approverKey = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'mcp', user: 'ada' })).key;
  strangerKey = (await createApiKey(t.app.db, { role: 'AGENT', space: 'elsewhere', user: 'bob' })).key;
}, 60_000);

afterAll(async () => {
  await t?.close();
  await rm(filesRoot, { recursive: true, force: true });
});

type Transport = 'http' | 'stdio';

/** An MCP client of the SDK connected over `transport` with `key`; `stderr()` is the stdio process's stderr. */
async function connect(transport: Transport, key: string): Promise<{ client: Client; stderr: () => string; errors: Error[] }> {
  const client = new Client({ name: 'mcp-test', version: '1.0.0' });
  // Anything on stdout that is not a JSON-RPC message (a stray log line) surfaces here.
  const errors: Error[] = [];
  client.onerror = (error) => errors.push(error);
  if (transport === 'http') {
    await client.connect(new StreamableHTTPClientTransport(new URL(`${t.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
    return { client, stderr: () => '', errors };
  }
  const stdio = new StdioClientTransport({
    command: process.execPath,
    args: [bin, 'mcp'],
    cwd: root,
    stderr: 'pipe',
    env: {
      PATH: process.env.PATH ?? '',
      ACTION_ENGINE_API_KEY: key,
      DATABASE_URL: t.app.config.databaseUrl!,
      DATA_DIR: t.app.config.dataDir,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: t.app.config.redisPrefix,
      REDIS_AUTOSTART: 'false',
      LOG_LEVEL: 'info',
    },
  });
  let stderr = '';
  stdio.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await client.connect(stdio);
  return { client, stderr: () => stderr, errors };
}

function structured(result: unknown): Record<string, any> {
  return (result as CallToolResult).structuredContent as Record<string, any>;
}
function text(result: unknown): string {
  return ((result as CallToolResult).content as Array<{ type: string; text?: string }>).map((c) => c.text ?? '').join('\n');
}

describe.each<Transport>(['http', 'stdio'])('MCP server over %s', (transport) => {
  let client: Client;
  let stderr: () => string;
  let errors: Error[];

  beforeAll(async () => {
    ({ client, stderr, errors } = await connect(transport, agent.key));
  }, 60_000);
  afterAll(async () => {
    await client?.close();
  });

  it('lists one tool per action type, with valid JSON Schemas as input and annotations from the type', async () => {
    const { tools } = await client.listTools();
    const types = t.app.engine.types.list();
    const names = tools.map((tool) => tool.name);
    expect(names.sort()).toEqual([...types.map((d) => d.type), 'cancel_action', 'get_action', 'wait_for_action'].sort());
    const ajv = new Ajv2020({ strict: false });
    for (const tool of tools) {
      expect(tool.inputSchema.type).toBe('object');
      expect(() => ajv.compile(tool.inputSchema), tool.name).not.toThrow();
      const definition = t.app.engine.types.find(tool.name);
      if (!definition) continue;
      // The payload's own JSON Schema, as actionTypes publishes it.
      const { $schema: _s, ...published } = t.app.engine.types.jsonSchema(tool.name) as Record<string, unknown>;
      expect(tool.inputSchema).toEqual(published);
      expect(tool.description).toContain(definition.description);
      expect(tool.annotations).toMatchObject({ destructiveHint: !definition.reversible, idempotentHint: false, openWorldHint: true, readOnlyHint: false });
    }
    expect(tools.find((tool) => tool.name === 'send_email')!.annotations!.destructiveHint).toBe(true);
    expect(tools.find((tool) => tool.name === 'create_document')!.annotations!.destructiveHint).toBe(false);
    expect(tools.find((tool) => tool.name === 'get_action')!.annotations!.readOnlyHint).toBe(true);
    // The schemas accept what the engine accepts: a valid payload passes, a wrong one does not.
    const createDocument = ajv.compile(tools.find((tool) => tool.name === 'create_document')!.inputSchema);
    expect(createDocument({ title: 'x', content: 'y' })).toBe(true);
    expect(createDocument({ content: 'y' })).toBe(false);
  });

  it('creates a create_document that completes, and wait_for_action returns it with its receipt', async () => {
    const created = await client.callTool({ name: 'create_document', arguments: { title: `Notes ${transport}`, content: '# Hello', folder: 'mcp' } });
    expect(created.isError ?? false, text(created)).toBe(false);
    const action = structured(created).action;
    expect(action.type).toBe('create_document');
    expect(['APPROVED', 'EXECUTING', 'COMPLETED']).toContain(action.status);
    const waited = await client.callTool({ name: 'wait_for_action', arguments: { id: action.id, timeoutSeconds: 30 } });
    expect(waited.isError ?? false, text(waited)).toBe(false);
    expect(structured(waited).timedOut).toBe(false);
    expect(structured(waited).action.status).toBe('COMPLETED');
    expect(structured(waited).receipts).toHaveLength(1);
    const folder = path.join(filesRoot, agent.spaceId, agent.userId!, 'mcp');
    const name = (await readdir(folder)).find((f) => f.endsWith(`-${action.id.slice(0, 8)}.md`));
    expect(name, `no document of ${action.id} in ${folder}`).toBeDefined();
    expect(await readFile(path.join(folder, name!), 'utf8')).toContain('# Hello');
    // The audit names the key's principal as the actor, like GraphQL.
    const first = await t.app.db.auditEntry.findFirst({ where: { actionId: action.id }, orderBy: { chainSeq: 'asc' } });
    expect(first?.actor).toBe(agent.principalId);
    if (transport === 'http') expect(first?.ip).toMatch(/127\.0\.0\.1/);
  });

  it('returns a move_file PENDING at once, then waits for it with progress while an approver approves over GraphQL', async () => {
    const dir = path.join(filesRoot, agent.spaceId, agent.userId!, 'inbox');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, `${transport}.txt`), 'move me');
    const started = Date.now();
    const created = await client.callTool({ name: 'move_file', arguments: { from: `inbox/${transport}.txt`, to: `done/${transport}.txt` } });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(created.isError ?? false, text(created)).toBe(false);
    const { action, approval } = structured(created);
    expect(action.status).toBe('PENDING');
    expect(approval.email).toBe(true);
    expect(text(created)).toMatch(/PENDING/);
    expect(text(created)).toMatch(/emailed to the user/);
    expect(text(created)).toMatch(/cannot approve/);

    const progress: Progress[] = [];
    const waiting = client.callTool({ name: 'wait_for_action', arguments: { id: action.id, timeoutSeconds: 60 } }, undefined, {
      onprogress: (p) => progress.push(p),
      timeout: 90_000,
    });
    // The first notification (the current state) says the wait is on; then a person decides.
    for (let i = 0; i < 100 && progress.length === 0; i++) await sleep(50);
    expect(progress[0]?.message).toMatch(/^PENDING/);
    const approved = await t.graphql(Approve, { id: action.id }, { apiKey: approverKey });
    expect(approved.data?.approveAction.errors).toEqual([]);
    const waited = await waiting;
    expect(waited.isError ?? false, text(waited)).toBe(false);
    expect(structured(waited).action.status).toBe('COMPLETED');
    expect(structured(waited).timedOut).toBe(false);
    const statuses = progress.map((p) => p.message!.split(':')[0]);
    expect(statuses).toContain('APPROVED');
    expect(statuses).toContain('EXECUTING');
    expect(statuses.at(-1)).toBe('COMPLETED');
    // Progress only goes up.
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.progress).toBeGreaterThan(progress[i - 1]!.progress);
    expect(existsSync(path.join(filesRoot, agent.spaceId, agent.userId!, 'done', `${transport}.txt`))).toBe(true);
  });

  it('answers a make_payment with a tool error carrying BLOCKED', async () => {
    const result = await client.callTool({ name: 'make_payment', arguments: { amount: 12.5, currency: 'EUR', recipient: 'Downtown Cafe' } });
    expect(result.isError).toBe(true);
    expect(structured(result).error.code).toBe('BLOCKED');
    expect(text(result)).toMatch(/^BLOCKED: make_payment actions are blocked/);
    expect(structured(result).action.status).toBe('BLOCKED');
  });

  it('answers a bad payload with INVALID_PAYLOAD naming the field, recording nothing', async () => {
    const before = await t.app.db.action.count();
    const result = await client.callTool({ name: 'create_document', arguments: { content: 'no title' } });
    expect(result.isError).toBe(true);
    expect(structured(result).error).toMatchObject({ code: 'INVALID_PAYLOAD', field: ['payload', 'title'] });
    expect(text(result)).toMatch(/INVALID_PAYLOAD \(payload\.title\)/);
    expect(await t.app.db.action.count()).toBe(before);
  });

  it('cancels a pending move_file with cancel_action', async () => {
    const created = await client.callTool({ name: 'move_file', arguments: { from: 'inbox/none.txt', to: `cancelled/${transport}.txt` } });
    const id = structured(created).action.id;
    const cancelled = await client.callTool({ name: 'cancel_action', arguments: { id, reason: 'changed my mind' } });
    expect(cancelled.isError ?? false, text(cancelled)).toBe(false);
    expect(structured(cancelled).action.status).toBe('CANCELLED');
    const again = await client.callTool({ name: 'cancel_action', arguments: { id } });
    expect(again.isError).toBe(true);
    expect(structured(again).error.code).toBe('INVALID_TRANSITION');
    // Waiting for COMPLETED on an action that can no longer get there answers at once.
    const started = Date.now();
    const waited = await client.callTool({ name: 'wait_for_action', arguments: { id, until: ['COMPLETED'], timeoutSeconds: 30 } });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(structured(waited)).toMatchObject({ timedOut: false, action: { status: 'CANCELLED' } });
  });

  it('wait_for_action ends at its timeout with the current state, and refuses a timeout over 300 s', async () => {
    const created = await client.callTool({ name: 'move_file', arguments: { from: 'inbox/none.txt', to: `later/${transport}.txt` } });
    const id = structured(created).action.id;
    const started = Date.now();
    const waited = await client.callTool({ name: 'wait_for_action', arguments: { id, timeoutSeconds: 1 } });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(waited.isError ?? false).toBe(false);
    expect(structured(waited)).toMatchObject({ timedOut: true, action: { status: 'PENDING' } });
    const tooLong = await client.callTool({ name: 'wait_for_action', arguments: { id, timeoutSeconds: 301 } });
    expect(tooLong.isError).toBe(true);
    expect(structured(tooLong).error).toMatchObject({ code: 'INVALID_INPUT', field: ['timeoutSeconds'] });
  });

  it('does not let an agent of another space read this space\'s actions (NOT_FOUND)', async () => {
    const created = await client.callTool({ name: 'create_document', arguments: { title: `Private ${transport}`, content: 'x' } });
    const id = structured(created).action.id;
    const own = await client.callTool({ name: 'get_action', arguments: { id } });
    expect(structured(own).action.id).toBe(id);
    const { client: stranger } = await connect(transport, strangerKey);
    try {
      for (const name of ['get_action', 'wait_for_action', 'cancel_action']) {
        const result = await stranger.callTool({ name, arguments: name === 'wait_for_action' ? { id, timeoutSeconds: 1 } : { id } });
        expect(result.isError, name).toBe(true);
        expect(structured(result).error.code, name).toBe('NOT_FOUND');
        expect(text(result)).not.toContain('Private');
      }
    } finally {
      await stranger.close();
    }
  });

  it('lists no create tools for an approver key, and an approver cannot create', async () => {
    const { client: approver } = await connect(transport, approverKey);
    try {
      const names = (await approver.listTools()).tools.map((tool) => tool.name).sort();
      expect(names).toEqual(['cancel_action', 'get_action', 'wait_for_action']);
      const result = await approver.callTool({ name: 'create_document', arguments: { title: 'x', content: 'y' } });
      expect(result.isError).toBe(true);
      expect(structured(result).error.code).toBe('FORBIDDEN');
    } finally {
      await approver.close();
    }
  });

  if (transport === 'stdio') {
    it('logs to stderr only (stdout carries the protocol)', () => {
      expect(stderr()).toContain('MCP server running on stdio');
      // Every tool call above went through, and nothing but protocol messages came on stdout.
      expect(errors).toEqual([]);
    });
  }
});

const RateRule = graphql(`
  mutation McpRateRule($input: SafetyRuleInput!) {
    upsertSafetyRule(input: $input) {
      errors {
        code
        message
      }
    }
  }
`);

describe('MCP over HTTP: limits and idempotency', () => {
  it('answers over the rate limit with RATE_LIMITED and retryAfterSeconds, and replays a call with the same _meta.idempotencyKey', async () => {
    const limited = await createApiKey(t.app.db, { role: 'AGENT', space: 'limited', user: 'cy' });
    const admin = await createApiKey(t.app.db, { role: 'ADMIN', space: 'limited' });
    const rule = await t.graphql(RateRule, { input: { actionType: 'create_document', kind: 'RATE_LIMIT', limit: 1, windowSeconds: 3600 } }, { apiKey: admin.key });
    expect(rule.data?.upsertSafetyRule.errors).toEqual([]);
    const { client } = await connect('http', limited.key);
    try {
      const args = { title: 'Once', content: 'x' };
      const first = await client.callTool({ name: 'create_document', arguments: args, _meta: { idempotencyKey: 'doc-1' } });
      expect(first.isError ?? false, text(first)).toBe(false);
      // The same key and input: the first result, not a second action (and no second unit counted).
      const replay = await client.callTool({ name: 'create_document', arguments: args, _meta: { idempotencyKey: 'doc-1' } });
      expect(structured(replay).action.id).toBe(structured(first).action.id);
      const over = await client.callTool({ name: 'create_document', arguments: { title: 'Twice', content: 'x' } });
      expect(over.isError).toBe(true);
      expect(structured(over).error.code).toBe('RATE_LIMITED');
      expect(structured(over).error.retryAfterSeconds).toBeGreaterThan(0);
      expect(text(over)).toMatch(/retry after \d+ s/);
    } finally {
      await client.close();
    }
  });
  it(`refuses a wait_for_action over ${MAX_WAITS_PER_KEY} running at once for one key with RATE_LIMITED, and frees the slot when a wait ends`, async () => {
    const waiter = await createApiKey(t.app.db, { role: 'AGENT', space: 'mcp', user: 'ada' });
    const { client } = await connect('http', waiter.key);
    try {
      const created = await client.callTool({ name: 'move_file', arguments: { from: 'inbox/waits.txt', to: 'later/waits.txt' } });
      const id = structured(created).action.id;
      const waits = Array.from({ length: MAX_WAITS_PER_KEY }, () => client.callTool({ name: 'wait_for_action', arguments: { id, timeoutSeconds: 3 } }, undefined, { timeout: 20_000 }));
      // Each wait takes its slot right after reading the action.
      await expect.poll(() => runningWaitsOf(t.app, waiter.principalId), { timeout: 10_000 }).toBe(MAX_WAITS_PER_KEY);
      const over = await client.callTool({ name: 'wait_for_action', arguments: { id, timeoutSeconds: 1 } });
      expect(over.isError).toBe(true);
      expect(structured(over).error.code).toBe('RATE_LIMITED');
      expect(text(over)).toMatch(new RegExp(`already has ${MAX_WAITS_PER_KEY} wait_for_action calls running`));
      // Only waits are capped: the key still reads.
      const other = await client.callTool({ name: 'get_action', arguments: { id } });
      expect(other.isError ?? false).toBe(false);
      for (const result of await Promise.all(waits)) expect(structured(result)).toMatchObject({ timedOut: true, action: { status: 'PENDING' } });
      const again = await client.callTool({ name: 'wait_for_action', arguments: { id, timeoutSeconds: 1 } });
      expect(again.isError ?? false, text(again)).toBe(false);
      expect(structured(again).timedOut).toBe(true);
    } finally {
      await client.close();
    }
  }, 30_000);
});

describe('MCP over HTTP: access', () => {
  const initialize = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  };
  const post = (headers: Record<string, string>, body: string = JSON.stringify(initialize)) =>
    fetch(`${t.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body });

  it('answers 401 with WWW-Authenticate without a key or with an unknown one', async () => {
    const none = await post({});
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer realm="action-engine"/);
    const unknown = await post({ authorization: 'Bearer ae_notakeyatall0000000000000000' });
    expect(unknown.status).toBe(401);
    expect(unknown.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    // The SDK client sees the refusal too.
    const client = new Client({ name: 'mcp-test', version: '1.0.0' });
    await expect(
      client.connect(new StreamableHTTPClientTransport(new URL(`${t.url}/mcp`), { requestInit: { headers: { authorization: 'Bearer ae_wrong' } } })),
    ).rejects.toThrow();
  });

  it('refuses a request from a browser page of another origin (403) and serves the engine\'s own origin and clients that send none', async () => {
    const evil = await post({ authorization: `Bearer ${agent.key}`, origin: 'https://evil.example' });
    expect(evil.status).toBe(403);
    expect(await evil.text()).toMatch(/Invalid Origin header: https:\/\/evil\.example/);
    const own = await post({ authorization: `Bearer ${agent.key}`, origin: new URL(t.app.config.baseUrl).origin });
    expect(own.status).toBe(200);
    const none = await post({ authorization: `Bearer ${agent.key}` });
    expect(none.status).toBe(200);
  });

  it('refuses a body over MAX_REQUEST_BYTES with 413 and GET with 405', async () => {
    const big = await post({ authorization: `Bearer ${agent.key}` }, JSON.stringify({ ...initialize, pad: 'x'.repeat(1_100_000) }));
    expect(big.status).toBe(413);
    const get = await fetch(`${t.url}/mcp`, { headers: { authorization: `Bearer ${agent.key}`, accept: 'text/event-stream' } });
    expect(get.status).toBe(405);
  });
});

describe('action-engine mcp (stdio) without a valid key', () => {
  it('exits with a one-line error naming ACTION_ENGINE_API_KEY', async () => {
    const client = new Client({ name: 'mcp-test', version: '1.0.0' });
    const stdio = new StdioClientTransport({
      command: process.execPath,
      args: [bin, 'mcp'],
      cwd: root,
      stderr: 'pipe',
      env: { PATH: process.env.PATH ?? '', ACTION_ENGINE_API_KEY: 'ae_revokedornot', DATABASE_URL: t.app.config.databaseUrl!, REDIS_URL: testRedisUrl, REDIS_PREFIX: t.app.config.redisPrefix, REDIS_AUTOSTART: 'false', DATA_DIR: t.app.config.dataDir },
    });
    let stderr = '';
    stdio.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await expect(client.connect(stdio)).rejects.toThrow();
    await sleep(200);
    expect(stderr).toContain('ACTION_ENGINE_API_KEY is not a valid API key');
  }, 30_000);
});
