import { createHash, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrismaClient } from '../../src/db/prisma-client.js';
import type { PrismaClient } from '../../src/generated/prisma/client.js';
import { createDocumentHandler } from '../../src/handlers/create-document.js';
import { manualHandler } from '../../src/handlers/manual.js';
import {
  PermanentHandlerError,
  type HandlerAction,
  type HandlerContext,
  type HandlerServices,
  type RollbackContext,
} from '../../src/handlers/types.js';
import { createLogger } from '../../src/logger.js';
import { createMailer } from '../../src/mail/mailer.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

let tmp: string;
let filesRoot: string;
let database: TestDatabase;
let db: PrismaClient;
let services: HandlerServices;
let spaceId: string;
let userId: string;
let principalId: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'ae-handlers-'));
  filesRoot = path.join(tmp, 'files');
  database = await createTestDatabase();
  db = createPrismaClient({ connection: database.connection, poolMax: 5 });
  const logger = createLogger({ level: 'silent' });
  services = {
    db,
    mailer: createMailer({ smtpUrl: undefined, from: 'engine@example.test', outboxDir: path.join(tmp, 'outbox'), logger }),
    fetch: globalThis.fetch,
    filesRoot,
    clock: () => new Date(),
    logger,
  };
  const space = await db.space.create({ data: { slug: 'handlers' } });
  const user = await db.user.create({ data: { spaceId: space.id, handle: 'ada' } });
  const principal = await db.principal.create({ data: { spaceId: space.id, role: 'AGENT', userId: user.id, name: 'agent' } });
  spaceId = space.id;
  userId = user.id;
  principalId = principal.id;
});
afterAll(async () => {
  services?.mailer.close();
  await db?.$disconnect();
  await database?.drop();
  await rm(tmp, { recursive: true, force: true });
});

/** An action as handlers see it, stored as a row too (the manual task refers to it). */
async function storedAction(type: string, payload: Record<string, unknown>): Promise<HandlerAction> {
  const row = await db.action.create({
    data: { spaceId, userId, requestedById: principalId, type, payload: payload as object, payloadHash: 'test', status: 'EXECUTING' },
  });
  return { id: row.id, spaceId, userId, type, payload, priority: row.priority };
}

function context(action: HandlerAction, progress: string[] = []): HandlerContext {
  return {
    action,
    idempotencyKey: `action:${action.id}`,
    attempt: 1,
    executionId: randomUUID(),
    config: null,
    secrets: null,
    services,
    progress: async (message) => {
      progress.push(message);
    },
  };
}

const rollbackContext = (action: HandlerAction, rollbackData: Record<string, unknown> | null | undefined): RollbackContext => ({
  action,
  rollbackData: rollbackData ?? null,
  config: null,
  secrets: null,
  services,
});

const documentAction = (payload: Record<string, unknown>): HandlerAction => ({
  id: randomUUID(),
  spaceId,
  userId,
  type: 'create_document',
  payload: { format: 'markdown', ...payload },
  priority: 5,
});

const userFolder = () => path.join(filesRoot, spaceId, userId);
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

async function completed(promise: ReturnType<typeof createDocumentHandler.execute>) {
  const result = await promise;
  if (result.status !== 'completed') throw new Error(`expected completed, got ${result.status}`);
  return result;
}

describe('create-document.filesystem', () => {
  it('writes the document under the user\'s folder, named after the title and action', async () => {
    const content = '# Minutes\n\nWe agreed on oat milk. ☕\n';
    const action = documentAction({ title: 'Team Meeting: Q3 Plan', content, folder: 'notes/2025' });
    const progress: string[] = [];

    const result = await completed(createDocumentHandler.execute(context(action, progress)));

    const inFolder = `notes/2025/team-meeting-q3-plan-${action.id.slice(0, 8)}.md`;
    expect(result).toEqual({
      status: 'completed',
      provider: 'filesystem',
      externalRef: `${spaceId}/${userId}/${inFolder}`,
      data: { path: inFolder, bytes: Buffer.byteLength(content), sha256: sha256(content) },
      rollbackData: { path: inFolder, sha256: sha256(content) },
    });
    expect(await readFile(path.join(filesRoot, result.externalRef!), 'utf8')).toBe(content);
    expect(await readFile(path.join(userFolder(), inFolder), 'utf8')).toBe(content);
    expect(progress).toEqual(['Writing "Team Meeting: Q3 Plan"…']);

    const html = documentAction({ title: 'Page', content: '<p>hi</p>', format: 'html' });
    const htmlResult = await completed(createDocumentHandler.execute(context(html)));
    expect(htmlResult.data['path']).toBe(`page-${html.id.slice(0, 8)}.html`);
  });

  it('is idempotent: executing the same action again (even concurrently) leaves one file', async () => {
    const action = documentAction({ title: 'Once only', content: 'same bytes', folder: 'once' });
    const first = await completed(createDocumentHandler.execute(context(action)));
    const again = await completed(createDocumentHandler.execute(context(action)));
    const racing = await Promise.all([1, 2, 3, 4].map(() => completed(createDocumentHandler.execute(context(action)))));

    for (const r of [again, ...racing]) expect(r).toEqual(first);
    expect(await readdir(path.join(userFolder(), 'once'))).toEqual([`once-only-${action.id.slice(0, 8)}.md`]);
  });

  it('refuses a folder that escapes the user\'s folder through a symlink, creating nothing outside', async () => {
    const outside = path.join(tmp, 'outside');
    await mkdir(outside, { recursive: true });
    await mkdir(userFolder(), { recursive: true });
    await symlink(outside, path.join(userFolder(), 'escape'));

    for (const folder of ['escape', 'escape/deeper']) {
      const action = documentAction({ title: 'Leak', content: 'secret', folder });
      await expect(createDocumentHandler.execute(context(action))).rejects.toThrow(PermanentHandlerError);
      await expect(createDocumentHandler.execute(context(action))).rejects.toThrow(/leads outside your folder/);
    }
    expect(await readdir(outside)).toEqual([]);

    // A symlink that stays inside the user's folder is fine.
    await mkdir(path.join(userFolder(), 'real'), { recursive: true });
    await symlink(path.join(userFolder(), 'real'), path.join(userFolder(), 'alias'));
    const inside = documentAction({ title: 'Via alias', content: 'ok', folder: 'alias' });
    const result = await completed(createDocumentHandler.execute(context(inside)));
    expect(result.data['path']).toBe(`real/via-alias-${inside.id.slice(0, 8)}.md`);
  });

  it('rollback deletes the document, and succeeds when it is already gone', async () => {
    const action = documentAction({ title: 'Draft', content: 'to be undone' });
    const result = await completed(createDocumentHandler.execute(context(action)));
    const file = path.join(filesRoot, result.externalRef!);

    await createDocumentHandler.rollback!(rollbackContext(action, result.rollbackData));
    await expect(readFile(file)).rejects.toMatchObject({ code: 'ENOENT' });
    await createDocumentHandler.rollback!(rollbackContext(action, result.rollbackData));
  });

  it('rollback refuses to delete a document changed since it was written', async () => {
    const action = documentAction({ title: 'Edited later', content: 'original' });
    const result = await completed(createDocumentHandler.execute(context(action)));
    const file = path.join(filesRoot, result.externalRef!);
    await writeFile(file, 'original, edited by the user');

    await expect(createDocumentHandler.rollback!(rollbackContext(action, result.rollbackData))).rejects.toThrow(
      /was changed since it was created/,
    );
    expect(await readFile(file, 'utf8')).toBe('original, edited by the user');
  });
});

describe('manual', () => {
  const order = {
    provider: 'downtown-cafe',
    items: [
      { name: 'Latte', price: 5.5, quantity: 1, modifications: ['oat milk', 'extra shot'] },
      { name: 'Croissant', price: 3.25, quantity: 2 },
    ],
    pickup_time: '15 minutes',
    customer_name: 'John Doe',
    customer_phone: '+1234567890',
    special_instructions: 'Make it extra hot',
  };

  it('creates exactly one OPEN task for an order, however often it is executed', async () => {
    const action = await storedAction('order', order);
    const first = await manualHandler.execute(context(action));
    const repeats = await Promise.all([1, 2, 3, 4, 5].map(() => manualHandler.execute(context(action))));

    expect(first).toEqual({ status: 'waiting', message: 'Waiting for an operator: place an order with downtown-cafe' });
    for (const r of repeats) expect(r).toEqual(first);

    const tasks = await db.manualTask.findMany({ where: { actionId: action.id } });
    expect(tasks).toHaveLength(1);
    const [task] = tasks;
    expect(task).toMatchObject({ spaceId, actionId: action.id, status: 'OPEN' });
    expect(task!.instructions).toContain(
      'Place this order with downtown-cafe: 1 × Latte (oat milk, extra shot) — 5.50; 2 × Croissant — 3.25; total 12.00.',
    );
    expect(task!.instructions).toContain('Customer: John Doe (+1234567890)');
    expect(task!.instructions).toContain('Pickup: 15 minutes');
    expect(task!.instructions).toContain('Special instructions: Make it extra hot');

    // Racing first executions (two workers, a recovered job) still open one task.
    const raced = await storedAction('order', order);
    await Promise.all(Array.from({ length: 8 }, () => manualHandler.execute(context(raced))));
    expect(await db.manualTask.count({ where: { actionId: raced.id, status: 'OPEN' } })).toBe(1);
  });

  it('opens a new task once the previous one is closed, and serves every built-in type', async () => {
    const action = await storedAction('send_email', { to: ['ops@example.test'], subject: 'Hello', body: 'Hi there' });
    await manualHandler.execute(context(action));
    await db.manualTask.updateMany({ where: { actionId: action.id }, data: { status: 'CANCELLED' } });
    const result = await manualHandler.execute(context(action));

    expect(result).toEqual({ status: 'waiting', message: 'Waiting for an operator: send "Hello" to ops@example.test' });
    const tasks = await db.manualTask.findMany({ where: { actionId: action.id }, orderBy: { createdAt: 'asc' } });
    expect(tasks.map((t) => t.status)).toEqual(['CANCELLED', 'OPEN']);
    expect(tasks[1]!.instructions).toContain('Subject: Hello');
    expect(manualHandler.types).toEqual([
      'send_email',
      'create_calendar_event',
      'move_file',
      'create_document',
      'make_payment',
      'make_purchase',
      'order',
    ]);
    expect(manualHandler.rollback).toBeUndefined();
  });
});
