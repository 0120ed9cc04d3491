import { createHash, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActionTypeRegistry, BUILT_IN_ACTION_TYPES } from '../../src/engine/action-types.js';
import { createDocumentHandler } from '../../src/handlers/create-document.js';
import { manualHandler } from '../../src/handlers/manual.js';
import {
  RefusedPayloadError,
  type HandlerAction,
  type HandlerContext,
  type HandlerServices,
  type RollbackContext,
} from '../../src/handlers/types.js';
import { createLogger } from '../../src/logger.js';
import { createMailer } from '../../src/mail/mailer.js';

// Handlers get no database (the engine does the bookkeeping): these run them on their own.
let tmp: string;
let filesRoot: string;
let services: HandlerServices;
const spaceId = randomUUID();
const userId = randomUUID();
const types = new ActionTypeRegistry(BUILT_IN_ACTION_TYPES);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'ae-handlers-'));
  filesRoot = path.join(tmp, 'files');
  const logger = createLogger({ level: 'silent' });
  services = {
    mailer: createMailer({ smtpUrl: undefined, from: 'engine@example.test', outboxDir: path.join(tmp, 'outbox'), logger }),
    fetch: globalThis.fetch,
    filesRoot,
    clock: () => new Date(),
    logger,
  };
});
afterAll(async () => {
  services?.mailer.close();
  await rm(tmp, { recursive: true, force: true });
});

/** An action as the engine hands it to a handler: its payload parsed with its type's schema. */
function parsedAction(type: string, payload: unknown): HandlerAction {
  return { id: randomUUID(), spaceId, userId, type, payload: types.parse(type, payload), priority: 5 };
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

describe('create_document.filesystem', () => {
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
      await expect(createDocumentHandler.execute(context(action))).rejects.toThrow(RefusedPayloadError);
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

  it('hands an order to an operator: waiting under manual:<action id>, with the task\'s instructions, the same on every repeat', async () => {
    const action = parsedAction('order', order);
    const first = await manualHandler.execute(context(action));
    const repeats = await Promise.all([1, 2, 3, 4, 5].map(() => manualHandler.execute(context(action))));

    expect(first).toMatchObject({
      status: 'waiting',
      key: `manual:${action.id}`,
      message: 'Waiting for an operator: Order from downtown-cafe: 1 × Latte, 2 × Croissant, pickup 15 minutes',
    });
    // The same key every time: the engine opens one task per key, however often this runs.
    for (const r of repeats) expect(r).toEqual(first);
    if (first.status !== 'waiting') throw new Error('expected waiting');
    const instructions = first.task!.instructions;
    expect(instructions).toContain('Place this order with downtown-cafe: 1 × Latte (oat milk, extra shot) — 5.50; 2 × Croissant — 3.25; total 12.00.');
    expect(instructions).toContain('Customer: John Doe (+1234567890)');
    expect(instructions).toContain('Pickup: 15 minutes');
    expect(instructions).toContain('Special instructions: Make it extra hot');
    expect(instructions).toContain(`Action ${action.id} (order) for user ${userId}. Complete this task with the outcome when done.`);
    expect(manualHandler.repeat).toBe('provider');
  });

  it('serves every built-in type, with instructions from the type\'s own description', async () => {
    expect(manualHandler.types).toEqual(['send_email', 'create_calendar_event', 'move_file', 'create_document', 'make_purchase', 'order']);
    expect(manualHandler.rollback).toBeUndefined();

    const email = await manualHandler.execute(context(parsedAction('send_email', { to: ['ops@example.test'], subject: 'Hello', body: 'Hi there' })));
    expect(email).toMatchObject({ status: 'waiting', message: 'Waiting for an operator: Send an email to ops@example.test with the subject “Hello”' });
    if (email.status !== 'waiting') throw new Error('expected waiting');
    expect(email.task!.instructions).toMatch(/^Send this email on the user's behalf\.\nTo: ops@example\.test\nSubject: Hello\n\nHi there\n/);

    const move = parsedAction('move_file', { from: 'in/a.pdf', to: 'done/a.pdf' });
    const moved = await manualHandler.execute(context(move));
    if (moved.status !== 'waiting') throw new Error('expected waiting');
    expect(moved.task!.instructions).toContain(`Move the file "in/a.pdf" to "done/a.pdf" inside the user's folder (${spaceId}/${userId}).`);

    // A long text is quoted up to 20,000 characters; the rest stays in the payload.
    const long = parsedAction('create_document', { title: 'Long', content: 'x'.repeat(25_000) });
    const written = await manualHandler.execute(context(long));
    if (written.status !== 'waiting') throw new Error('expected waiting');
    expect(written.task!.instructions).toContain(`Write a markdown document titled "Long" in the user's folder (${spaceId}/${userId}), with this content:`);
    expect(written.task!.instructions).toContain(`${'x'.repeat(20_000)}\n… (cut at 20000 characters; the full text is in the action's payload)`);
    expect(written.task!.instructions).not.toContain('x'.repeat(20_001));

    for (const definition of BUILT_IN_ACTION_TYPES) {
      const [example] = (definition.payload.meta()?.examples ?? []) as unknown[];
      const result = await manualHandler.execute(context(parsedAction(definition.type, example)));
      expect(result, definition.type).toMatchObject({ status: 'waiting', key: expect.stringMatching(/^manual:/), task: { instructions: expect.stringMatching(/\S/) } });
      if (result.status !== 'waiting') throw new Error('expected waiting');
      expect(result.message).not.toMatch(/Run the action/);
    }
  });
});
