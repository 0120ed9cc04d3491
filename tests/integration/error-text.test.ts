import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

const acceptJson = { headers: { accept: 'application/json' } };

let t: TestServer;
let agent: string;
let approver: string;
let analyst: string;
let userId: string;
let spaceId: string;
const logLines: string[] = [];

beforeAll(async () => {
  t = await startTestServer({
    env: { RETRY_BACKOFF_MS: '20', LOG_LEVEL: 'debug', MAX_REQUEST_BYTES: '1000000' },
    worker: true,
    logDestination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    }),
  });
  const a = await createApiKey(t.app.db, { role: 'AGENT', space: 'error-text', user: 'carol' });
  agent = a.key;
  userId = a.userId!;
  spaceId = (await t.app.db.user.findUniqueOrThrow({ where: { id: userId } })).spaceId;
  approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'error-text', user: 'carol' })).key;
  analyst = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'error-text' })).key;
});
afterAll(async () => {
  await t?.close();
});

describe('errors a caller sees name the problem, not the machine', () => {
  it('create_document hitting a real filesystem error (a file where the user\'s folder should be) stores no server path or stack', async () => {
    // A regular file where the user's folder is expected: mkdir fails with EEXIST on an absolute path.
    await mkdir(path.join(t.app.config.filesRoot, spaceId), { recursive: true });
    await writeFile(path.join(t.app.config.filesRoot, spaceId, userId), 'not a folder');
    const created = (await postGraphql(t.url, agent, 'mutation { createAction(input: { type: "create_document", payload: { title: "Plan", content: "x" } }) { action { id } errors { code } } }', {}, acceptJson)).body;
    const id = created.data!.createAction.action.id as string;
    let action: any;
    for (let i = 0; i < 200; i++) {
      action = (await postGraphql(t.url, analyst, `{ action(id: "${id}") { status error executions { error } statusUpdates { message } auditLog { data } } }`, {}, acceptJson)).body.data!.action;
      if (action.status === 'FAILED') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(action.status).toBe('FAILED');
    const visible = JSON.stringify(action);
    expect(visible).not.toContain(t.app.config.filesRoot);
    expect(visible).not.toContain(path.dirname(t.app.config.filesRoot));
    expect(visible).not.toMatch(/\n\s+at |\.ts:\d+/);
    // It still says what went wrong, and where in the user's terms.
    expect(action.error).toMatch(/EEXIST/);
    expect(action.error).toMatch(/your folder/);
    expect(action.executions[0].error).toMatch(/your folder/);
    // The full detail is in the log.
    expect(logLines.some((line) => line.includes('handler attempt failed') && line.includes(path.join(t.app.config.filesRoot, spaceId, userId)))).toBe(true);
  });
});

describe('logs carry a bounded prefix of input', () => {
  it('a 100 kB argument is not written to the log, nor is any 100 kB string logged directly', async () => {
    const marker = 'Z'.repeat(100_000);
    logLines.length = 0;
    await postGraphql(t.url, approver, 'query($id: ID!) { action(id: $id) { id } }', { id: marker }, acceptJson);
    await postGraphql(t.url, approver, `mutation { cancelAction(id: "00000000-0000-4000-8000-000000000000", reason: "${marker}") { errors { code } } }`, {}, acceptJson);
    await postGraphql(t.url, approver, `{ nosuchfield(arg: "${marker}") }`, {}, acceptJson);
    t.app.logger.error({ input: marker, nested: { deeper: [marker] }, err: new Error(marker) }, marker);
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) {
      if (line.length > 20_000) console.log(line.slice(0, 600), "...", line.slice(-300));
      expect(line.length).toBeLessThan(20_000);
      expect(line).not.toContain('Z'.repeat(2001));
    }
  });
});
