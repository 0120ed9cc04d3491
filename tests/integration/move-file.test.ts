import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { handlerAction } from '../../src/engine/execution.js';
import { moveFileHandler } from '../../src/handlers/move-file.js';
import { RefusedPayloadError, type HandlerContext } from '../../src/handlers/types.js';
import { graphql } from '../generated/gql.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const CreateMove = graphql(`
  mutation MoveCreate($input: CreateActionInput!) {
    createAction(input: $input) {
      action {
        id
        status
      }
      errors {
        code
        field
        message
      }
    }
  }
`);

const ApproveMove = graphql(`
  mutation MoveApprove($id: ID!) {
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

const RollbackMove = graphql(`
  mutation MoveRollback($id: ID!, $reason: String!) {
    rollbackAction(id: $id, reason: $reason) {
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

const MoveDetail = graphql(`
  query MoveDetail($id: ID!) {
    action(id: $id) {
      status
      error
      executions {
        handler
        status
        error
      }
      receipts {
        handler
        provider
        externalRef
        data
      }
      rollbacks {
        status
        error
      }
      statusUpdates {
        status
        message
      }
    }
  }
`);

let t: TestServer;
let tmp: string;
let filesRoot: string;
/** A folder outside the files root that no move may touch. */
let outside: string;

interface Person {
  agent: string;
  approver: string;
  spaceId: string;
  userId: string;
}
let mia: Person;

async function person(space: string, user: string): Promise<Person> {
  const a = await createApiKey(t.app.db, { role: 'AGENT', space, user });
  const approver = (await createApiKey(t.app.db, { role: 'APPROVER', space, user })).key;
  return { agent: a.key, approver, spaceId: a.spaceId, userId: a.userId! };
}

const folderOf = (p: Person) => path.join(filesRoot, p.spaceId, p.userId);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'ae-move-'));
  filesRoot = path.join(tmp, 'files');
  outside = path.join(tmp, 'outside');
  await mkdir(outside, { recursive: true });
  await writeFile(path.join(outside, 'secret.txt'), 'not yours');
  t = await startTestServer({
    env: { FILES_ROOT: filesRoot, RETRY_BACKOFF_MS: '50', WORKER_CONCURRENCY: '2', RECONCILE_SECONDS: '3600' },
    worker: true,
  });
  mia = await person('moves', 'mia');
  await mkdir(folderOf(mia), { recursive: true });
});
afterAll(async () => {
  await t?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Every file below `dir` with its content (symlinks as `-> target`), to compare before and after. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const rel = path.relative(dir, file);
    if (entry.isSymbolicLink()) out[rel] = '-> symlink';
    else if (entry.isFile()) out[rel] = await readFile(file, 'utf8');
    else if (entry.isDirectory()) out[`${rel}/`] = '';
  }
  return out;
}

async function put(p: Person, rel: string, content: string): Promise<void> {
  const file = path.join(folderOf(p), rel);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

async function proposeMove(p: Person, from: string, to: string) {
  return (await t.graphql(CreateMove, { input: { type: 'move_file', payload: { from, to } } }, { apiKey: p.agent })).data!.createAction;
}

/** Proposes the move, which waits for approval (the default rule), and approves it. */
async function approvedMove(p: Person, from: string, to: string): Promise<string> {
  const created = await proposeMove(p, from, to);
  expect(created.errors).toEqual([]);
  expect(created.action!.status).toBe('PENDING');
  const id = created.action!.id;
  const approved = (await t.graphql(ApproveMove, { id }, { apiKey: p.approver })).data!.approveAction;
  expect(approved.errors).toEqual([]);
  return id;
}

async function detail(p: Person, id: string) {
  return (await t.graphql(MoveDetail, { id }, { apiKey: p.approver })).data!.action!;
}

async function waitFor(p: Person, id: string, statuses: string[], timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const a = await detail(p, id);
    if (statuses.includes(a.status)) return a;
    if (Date.now() > until) throw new Error(`action ${id} is ${a.status}, not ${statuses.join('|')}, after ${timeoutMs} ms`);
    await sleep(50);
  }
}

describe('move_file.filesystem through the engine', () => {
  it('moves a real file after approval (COMPLETED, receipt from move_file.filesystem), and rollback puts it back (ROLLED_BACK)', async () => {
    await put(mia, 'inbox/invoice.pdf', 'PDF bytes');
    const id = await approvedMove(mia, 'inbox/invoice.pdf', 'reports/2026/invoice.pdf');
    const done = await waitFor(mia, id, ['COMPLETED', 'FAILED']);
    expect(done.status).toBe('COMPLETED');
    expect(done.executions).toEqual([{ handler: 'move_file.filesystem', status: 'SUCCEEDED', error: null }]);
    expect(done.receipts).toEqual([
      {
        handler: 'move_file.filesystem',
        provider: 'filesystem',
        externalRef: `${mia.spaceId}/${mia.userId}/reports/2026/invoice.pdf`,
        data: { from: 'inbox/invoice.pdf', to: 'reports/2026/invoice.pdf', bytes: 9, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
      },
    ]);
    expect(done.statusUpdates.map((u) => u.message)).toContain('Moving inbox/invoice.pdf to reports/2026/invoice.pdf…');
    expect(existsSync(path.join(folderOf(mia), 'inbox/invoice.pdf'))).toBe(false);
    expect(await readFile(path.join(folderOf(mia), 'reports/2026/invoice.pdf'), 'utf8')).toBe('PDF bytes');

    const undone = (await t.graphql(RollbackMove, { id, reason: 'wrong folder' }, { apiKey: mia.approver })).data!.rollbackAction;
    expect(undone.errors).toEqual([]);
    expect(undone.action!.status).toBe('ROLLED_BACK');
    expect(await readFile(path.join(folderOf(mia), 'inbox/invoice.pdf'), 'utf8')).toBe('PDF bytes');
    expect(existsSync(path.join(folderOf(mia), 'reports/2026/invoice.pdf'))).toBe(false);
    expect((await detail(mia, id)).rollbacks).toEqual([{ status: 'SUCCEEDED', error: null }]);
  });

  it('refuses a rollback when the moved file was changed, or its original place is taken again, and leaves both files alone', async () => {
    await put(mia, 'drafts/a.txt', 'version 1');
    const changed = await approvedMove(mia, 'drafts/a.txt', 'final/a.txt');
    expect((await waitFor(mia, changed, ['COMPLETED', 'FAILED'])).status).toBe('COMPLETED');
    await writeFile(path.join(folderOf(mia), 'final/a.txt'), 'version 2');
    const refused = (await t.graphql(RollbackMove, { id: changed, reason: 'undo' }, { apiKey: mia.approver })).data!.rollbackAction;
    expect(refused.action!.status).toBe('COMPLETED');
    expect((await detail(mia, changed)).rollbacks).toEqual([
      { status: 'FAILED', error: 'cannot roll back: "final/a.txt" was changed since it was moved; it stays where it is' },
    ]);
    expect(await readFile(path.join(folderOf(mia), 'final/a.txt'), 'utf8')).toBe('version 2');

    await put(mia, 'drafts/b.txt', 'bee');
    const taken = await approvedMove(mia, 'drafts/b.txt', 'final/b.txt');
    expect((await waitFor(mia, taken, ['COMPLETED', 'FAILED'])).status).toBe('COMPLETED');
    await put(mia, 'drafts/b.txt', 'a new b');
    await t.graphql(RollbackMove, { id: taken, reason: 'undo' }, { apiKey: mia.approver });
    const after = await detail(mia, taken);
    expect(after.status).toBe('COMPLETED');
    expect(after.rollbacks).toEqual([{ status: 'FAILED', error: 'cannot roll back: "drafts/b.txt" is taken by another file now; "final/b.txt" stays where it is' }]);
    expect(await readFile(path.join(folderOf(mia), 'drafts/b.txt'), 'utf8')).toBe('a new b');
    expect(await readFile(path.join(folderOf(mia), 'final/b.txt'), 'utf8')).toBe('bee');
  });

  it('refuses absolute paths, "..", a/../../x and over-long names when the action is created: INVALID_PAYLOAD naming the field, nothing recorded', async () => {
    const before = await t.app.db.action.count();
    const cases: Array<[string, string, 'from' | 'to', RegExp]> = [
      ['/etc/passwd', 'stolen.txt', 'from', /relative to your file root/],
      ['notes.txt', '/tmp/notes.txt', 'to', /relative to your file root/],
      ['../../etc/passwd', 'x.txt', 'from', /must not contain "\.\."/],
      ['a/../../x', 'y.txt', 'from', /must not contain "\.\."/],
      ['notes.txt', 'a/../../x', 'to', /must not contain "\.\."/],
      ['notes.txt', 'a\\..\\..\\x', 'to', /must not contain "\.\."/],
      ['\\\\server\\share\\x', 'y.txt', 'from', /relative to your file root/],
      ['notes.txt', `long/${'n'.repeat(256)}.txt`, 'to', /at most 255 bytes/],
      ['.', 'y.txt', 'from', /not the whole root/],
    ];
    for (const [from, to, field, message] of cases) {
      const out = await proposeMove(mia, from, to);
      expect(out.action, `${from} → ${to}`).toBeNull();
      expect(out.errors, `${from} → ${to}`).toEqual([{ code: 'INVALID_PAYLOAD', field: ['payload', field], message: expect.stringMatching(message) }]);
    }
    expect(await t.app.db.action.count()).toBe(before);
  });

  describe('refused at execution: FAILED with the reason naming the field, no operator task, nothing outside the root touched', () => {
    const cases: Array<{ name: string; setup: () => Promise<void>; from: string; to: string; error: string; keep: string[] }> = [
      {
        name: 'a symlink in the user folder pointing outside, for from',
        setup: () => symlink(outside, path.join(folderOf(mia), 'out-from')),
        from: 'out-from/secret.txt',
        to: 'mine.txt',
        error: 'payload.from: "out-from/secret.txt" leads outside your folder (through a symbolic link)',
        keep: [],
      },
      {
        name: 'a symlink in the user folder pointing outside, for to\'s parent',
        setup: async () => {
          await put(mia, 'keep/report.txt', 'report');
          await symlink(outside, path.join(folderOf(mia), 'out-to'));
        },
        from: 'keep/report.txt',
        to: 'out-to/report.txt',
        error: 'payload.to: "out-to/report.txt" leads outside your folder (through a symbolic link)',
        keep: ['keep/report.txt'],
      },
      {
        name: 'a symlink deeper on to\'s path pointing outside',
        setup: async () => {
          await put(mia, 'keep2/r.txt', 'r');
          await mkdir(path.join(folderOf(mia), 'deep/er'), { recursive: true });
          await symlink(outside, path.join(folderOf(mia), 'deep/er/exit'));
        },
        from: 'keep2/r.txt',
        to: 'deep/er/exit/new/r.txt',
        error: 'payload.to: "deep/er/exit/new/r.txt" leads outside your folder (through a symbolic link)',
        keep: ['keep2/r.txt'],
      },
      {
        name: 'a source that is itself a symlink to a file outside',
        setup: () => symlink(path.join(outside, 'secret.txt'), path.join(folderOf(mia), 'link.txt')),
        from: 'link.txt',
        to: 'taken-in.txt',
        error: 'payload.from: "link.txt" is a symbolic link; only regular files are moved',
        keep: [],
      },
      {
        name: 'a target that exists',
        setup: async () => {
          await put(mia, 'exists/from.txt', 'from');
          await put(mia, 'exists/to.txt', 'to');
        },
        from: 'exists/from.txt',
        to: 'exists/to.txt',
        error: 'payload.to: "exists/to.txt" already exists; it was not replaced and nothing was moved',
        keep: ['exists/from.txt', 'exists/to.txt'],
      },
      {
        name: 'a missing source',
        setup: async () => {},
        from: 'nowhere/ghost.txt',
        to: 'found.txt',
        error: 'payload.from: "nowhere/ghost.txt" does not exist in your folder; nothing was moved',
        keep: [],
      },
      {
        name: 'a source that is a folder',
        setup: () => put(mia, 'a-folder/inside.txt', 'x'),
        from: 'a-folder',
        to: 'b-folder',
        error: 'payload.from: "a-folder" is a folder; only files can be moved',
        keep: ['a-folder/inside.txt'],
      },
      {
        name: 'a to whose parent is a file',
        setup: () => put(mia, 'plain.txt', 'plain'),
        from: 'plain.txt',
        to: 'plain.txt/child.txt',
        error: 'payload.to: "plain.txt/child.txt": plain.txt is not a folder',
        keep: ['plain.txt'],
      },
    ];

    for (const c of cases) {
      it(c.name, async () => {
        await c.setup();
        const outsideBefore = await snapshot(outside);
        const userBefore = await snapshot(folderOf(mia));
        const id = await approvedMove(mia, c.from, c.to);
        const failed = await waitFor(mia, id, ['FAILED', 'COMPLETED']);
        expect(failed.status).toBe('FAILED');
        expect(failed.error).toBe(`Failed: ${c.error}`);
        expect(failed.executions).toEqual([{ handler: 'move_file.filesystem', status: 'FAILED', error: c.error }]);
        expect(failed.receipts).toEqual([]);
        expect(await t.app.db.manualTask.count({ where: { actionId: id } })).toBe(0);
        expect(await snapshot(outside)).toEqual(outsideBefore);
        expect(await snapshot(folderOf(mia))).toEqual(userBefore);
        for (const kept of c.keep) expect(existsSync(path.join(folderOf(mia), kept)), kept).toBe(true);
      });
    }

    it('a user folder that is itself a symlink out of the root', async () => {
      const sam = await person('moves', 'sam');
      await mkdir(path.dirname(folderOf(sam)), { recursive: true });
      await writeFile(path.join(outside, 'x.txt'), 'outside x');
      await symlink(outside, folderOf(sam));
      const outsideBefore = await snapshot(outside);
      const id = await approvedMove(sam, 'x.txt', 'y.txt');
      const failed = await waitFor(sam, id, ['FAILED', 'COMPLETED']);
      expect(failed.status).toBe('FAILED');
      expect(failed.error).toBe("Failed: the user's folder resolves outside the files root");
      expect(failed.executions).toEqual([{ handler: 'move_file.filesystem', status: 'FAILED', error: "the user's folder resolves outside the files root" }]);
      expect(await t.app.db.manualTask.count({ where: { actionId: id } })).toBe(0);
      expect(await snapshot(outside)).toEqual(outsideBefore);
    });
  });

  it('a job repeated after the move (its worker died before recording it) completes without error and moves nothing else', async () => {
    await put(mia, 'repeat/one.txt', 'one');
    await put(mia, 'repeat/other.txt', 'other');
    const created = await proposeMove(mia, 'repeat/one.txt', 'repeat/done/one.txt');
    const id = created.action!.id;
    const row = await t.app.db.action.findUniqueOrThrow({ where: { id } });
    // What the dead worker did: the move itself (through the handler), then nothing was recorded:
    // the action EXECUTING with a RUNNING execution and no job.
    const first = await moveFileHandler.execute(handlerContext(handlerAction(t.app.engine.types, row)));
    expect(first.status).toBe('completed');
    await t.app.db.action.update({ where: { id }, data: { status: 'EXECUTING', attempts: 1 } });
    await t.app.db.execution.create({ data: { actionId: id, attempt: 1, handler: 'move_file.filesystem', kind: 'API', status: 'RUNNING' } });
    const movedState = await snapshot(folderOf(mia));

    expect(await t.worker!.reconcile()).toBeGreaterThanOrEqual(1);
    const done = await waitFor(mia, id, ['COMPLETED', 'FAILED']);
    expect(done.status).toBe('COMPLETED');
    expect(done.executions.map((e) => [e.handler, e.status])).toEqual([
      ['move_file.filesystem', 'FAILED'], // the interrupted attempt
      ['move_file.filesystem', 'SUCCEEDED'],
    ]);
    expect(done.receipts).toHaveLength(1);
    expect(done.receipts[0]!.data).toEqual(first.status === 'completed' ? first.data : null);
    expect(await snapshot(folderOf(mia))).toEqual(movedState);
    expect(await readFile(path.join(folderOf(mia), 'repeat/done/one.txt'), 'utf8')).toBe('one');
    expect(existsSync(path.join(folderOf(mia), 'repeat/one.txt'))).toBe(false);
  });
});

function handlerContext(action: ReturnType<typeof handlerAction>): HandlerContext {
  return {
    action,
    idempotencyKey: `action:${action.id}`,
    attempt: 1,
    executionId: randomUUID(),
    config: null,
    secrets: null,
    services: t.app.handlerServices,
    progress: async () => {},
  };
}

describe('move_file.filesystem repeats (the handler on its own)', () => {
  const action = (from: string, to: string) =>
    ({ id: randomUUID(), spaceId: mia.spaceId, userId: mia.userId, type: 'move_file', payload: { from, to }, priority: 5 }) as const;

  it('a repeat that finds the move half done (target linked, source not yet unlinked) finishes it and reports the same result', async () => {
    await put(mia, 'half/a.txt', 'half');
    const a = action('half/a.txt', 'half/b.txt');
    const first = await moveFileHandler.execute(handlerContext(a));
    // Back to the state between link and unlink: both names on the same inode.
    await link(path.join(folderOf(mia), 'half/b.txt'), path.join(folderOf(mia), 'half/a.txt'));
    const again = await moveFileHandler.execute(handlerContext(a));
    expect(again).toEqual(first);
    expect(await readdir(path.join(folderOf(mia), 'half'))).toEqual(['b.txt']);
    expect((await stat(path.join(folderOf(mia), 'half/b.txt'))).nlink).toBe(1);
  });

  it('without a record of its own move, a missing source with the target present is refused, not taken for done', async () => {
    await put(mia, 'norecord/b.txt', 'someone else\'s');
    const a = action('norecord/a.txt', 'norecord/b.txt');
    await expect(moveFileHandler.execute(handlerContext(a))).rejects.toThrow(RefusedPayloadError);
    await expect(moveFileHandler.execute(handlerContext(a))).rejects.toThrow(/payload\.from: "norecord\/a\.txt" does not exist/);
    expect(await readFile(path.join(folderOf(mia), 'norecord/b.txt'), 'utf8')).toBe('someone else\'s');
  });

  it('a rollback repeated after it moved the file back succeeds without moving anything', async () => {
    await put(mia, 'rb/a.txt', 'rb');
    const a = action('rb/a.txt', 'rb/moved/a.txt');
    const done = await moveFileHandler.execute(handlerContext(a));
    if (done.status !== 'completed') throw new Error('expected completed');
    const ctx = { action: a, rollbackData: done.rollbackData ?? null, config: null, secrets: null, services: t.app.handlerServices };
    await moveFileHandler.rollback!(ctx);
    await moveFileHandler.rollback!(ctx);
    expect(await readFile(path.join(folderOf(mia), 'rb/a.txt'), 'utf8')).toBe('rb');
    expect(await readdir(path.join(folderOf(mia), 'rb/moved'))).toEqual([]);
  });
});
