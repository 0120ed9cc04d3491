import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { completeManualTask } from '../../src/engine/manual-tasks.js';
import { rollbackAction } from '../../src/engine/rollback.js';
import type { App } from '../../src/app.js';
import type { Prisma } from '../../src/generated/prisma/client.js';
import { ActionTypeRegistry, BUILT_IN_ACTION_TYPES } from '../../src/engine/action-types.js';
import { sendEmailSmtpHandler } from '../../src/handlers/send-email-smtp.js';
import { createLogger } from '../../src/logger.js';
import { createMailer } from '../../src/mail/mailer.js';
import { startService, type ServiceProcess } from '../helpers/cli.js';
import { readOutbox } from '../helpers/outbox.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitForActionStatus } from '../helpers/wait.js';

const workerScript = path.resolve(import.meta.dirname, '../helpers/worker-process.ts');
const MAIL_FROM = 'Action Engine <engine@mail.example.test>';

let smtp: TestSmtpServer;
let t: TestServer;
let effectsDir: string;
const workers: ServiceProcess[] = [];

beforeAll(async () => {
  smtp = await startSmtpServer();
  t = await startTestServer({ worker: true, env: { SMTP_URL: smtp.url, MAIL_FROM } });
  effectsDir = await mkdtemp(path.join(tmpdir(), 'ae-smtp-'));
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop('SIGKILL')));
  await t?.close();
  await smtp?.close();
  if (effectsDir) await rm(effectsDir, { recursive: true, force: true });
});

/** A send_email action, approved and queued as after an approval (space, user and roles of its own). */
async function approvedEmail(app: App, payload: Record<string, unknown>, enqueue = true) {
  const db = app.db;
  const space = await db.space.create({ data: { slug: `smtp-${randomUUID().slice(0, 8)}` } });
  const user = await db.user.create({ data: { spaceId: space.id, handle: 'ada' } });
  const agent = await db.principal.create({ data: { spaceId: space.id, role: 'AGENT', userId: user.id, name: 'agent' } });
  const operator = await db.principal.create({ data: { spaceId: space.id, role: 'OPERATOR', name: 'operator' } });
  const admin = await db.principal.create({ data: { spaceId: space.id, role: 'ADMIN', name: 'admin' } });
  const action = await db.action.create({
    data: { spaceId: space.id, userId: user.id, requestedById: agent.id, type: 'send_email', payload: payload as Prisma.InputJsonObject, payloadHash: 'h', status: 'APPROVED' },
  });
  if (enqueue) await app.engine.queue.enqueue(action);
  return { action, space, operator, admin };
}

describe('send_email.smtp', () => {
  it('delivers to a real SMTP server: From, To, Cc, Subject, the action-derived Message-ID, text and HTML; Bcc only on the envelope; the receipt names the Message-ID', async () => {
    const payload = {
      to: ['ada@example.com', 'bob@example.com'],
      cc: ['carol@example.com'],
      bcc: ['dave@example.com'],
      subject: 'Quarterly report',
      body: 'Hi Ada,\n\nthe report is attached.\n\nGrace',
      html: '<p>Hi Ada, the <b>report</b> is attached.</p>',
    };
    const before = smtp.received.length;
    const { action, space, admin } = await approvedEmail(t.app, payload);
    await waitForActionStatus(t.app.db, action.id, 'COMPLETED', 20_000);

    expect(smtp.received).toHaveLength(before + 1);
    const mail = smtp.received[before]!;
    const messageId = `<action-${action.id}@mail.example.test>`;
    expect(mail.to.sort()).toEqual(['ada@example.com', 'bob@example.com', 'carol@example.com', 'dave@example.com']);
    expect(mail.from).toBe('engine@mail.example.test');
    expect(mail.header('From')).toBe(MAIL_FROM);
    expect(mail.header('To')).toBe('ada@example.com, bob@example.com');
    expect(mail.header('Cc')).toBe('carol@example.com');
    expect(mail.header('Bcc')).toBeUndefined();
    expect(mail.raw).not.toContain('dave@example.com');
    expect(mail.header('Subject')).toBe('Quarterly report');
    expect(mail.header('Message-ID')).toBe(messageId);
    expect(mail.raw).toMatch(/Content-Type: text\/plain/);
    expect(mail.raw).toContain('the report is attached.');
    expect(mail.raw).toMatch(/Content-Type: text\/html/);
    expect(mail.raw).toContain('<b>report</b>');

    const done = await t.app.db.action.findUniqueOrThrow({ where: { id: action.id }, include: { receipts: true, executions: true, statusUpdates: { orderBy: { seq: 'asc' } } } });
    expect(done.executions).toEqual([expect.objectContaining({ handler: 'send_email.smtp', status: 'SUCCEEDED', externalRef: messageId })]);
    expect(done.receipts).toEqual([expect.objectContaining({ handler: 'send_email.smtp', provider: 'smtp', externalRef: messageId })]);
    expect(done.receipts[0]!.data).toMatchObject({ messageId, via: 'smtp', accepted: expect.arrayContaining(['ada@example.com', 'dave@example.com']), rejected: [] });
    expect(done.statusUpdates.map((s) => s.message)).toContain('Sending the email to ada@example.com, bob@example.com…');

    // Not reversible: a sent mail stays sent.
    const principal = { id: admin.id, role: 'ADMIN' as const, spaceId: space.id, userId: null };
    const deps = { ...t.app.engine, handlers: t.app.handlers, services: t.app.handlerServices };
    await expect(rollbackAction(deps, principal, { id: admin.id }, action.id, 'oops')).rejects.toMatchObject({ code: 'NOT_REVERSIBLE' });
  });

  it('a server that refuses the message (550) fails the attempt for good, says why, and hands over to the next handler (manual) without a retry', async () => {
    smtp.rejectRecipients.add('nobody@example.com');
    const before = smtp.received.length;
    const { action } = await approvedEmail(t.app, { to: ['nobody@example.com'], subject: 'Bounce', body: 'b' });
    const until = Date.now() + 20_000;
    while (Date.now() < until && !(await t.app.db.manualTask.count({ where: { actionId: action.id } }))) await sleep(50);
    const executions = await t.app.db.execution.findMany({ where: { actionId: action.id }, orderBy: { startedAt: 'asc' } });
    expect(executions.map((e) => [e.handler, e.status])).toEqual([
      ['send_email.smtp', 'FAILED'],
      ['manual', 'WAITING'],
    ]);
    expect(executions[0]!.error).toMatch(/the mail server refused the email \(550 5\.1\.1 no such user\)/);
    expect(smtp.received.length).toBe(before);
  });

  it('a connection lost after the message was handed over is not retried: the action waits for an operator to confirm, one message arrived', async () => {
    const before = smtp.received.length;
    smtp.holdReply = async () => {
      smtp.dropConnections();
    };
    try {
      const { action } = await approvedEmail(t.app, { to: ['ada@example.com'], subject: 'Cut off', body: 'b' });
      const until = Date.now() + 20_000;
      let task = null;
      while (!task && Date.now() < until) {
        task = await t.app.db.manualTask.findFirst({ where: { actionId: action.id, status: 'OPEN' } });
        if (!task) await sleep(50);
      }
      expect(task, 'an operator confirmation task').not.toBeNull();
      expect(task!.instructions).toMatch(/broke off while sending this email/);
      const executions = await t.app.db.execution.findMany({ where: { actionId: action.id } });
      expect(executions).toEqual([expect.objectContaining({ handler: 'send_email.smtp', status: 'WAITING', waitKey: `confirm:${action.id}` })]);
      await sleep(1000);
      expect(smtp.received.length - before).toBe(1);
      expect((await t.app.db.action.findUniqueOrThrow({ where: { id: action.id } })).status).toBe('EXECUTING');
    } finally {
      smtp.holdReply = null;
    }
  });
});

describe('send_email.smtp without SMTP_URL', () => {
  it('writes the message as an .eml file in the outbox (still configured): headers, Message-ID, no Bcc header; the receipt data names the file', async () => {
    const outboxDir = path.join(effectsDir, 'outbox');
    const logger = createLogger({ level: 'silent' });
    const mailer = createMailer({ smtpUrl: undefined, from: MAIL_FROM, outboxDir, logger });
    const types = new ActionTypeRegistry(BUILT_IN_ACTION_TYPES);
    const action = {
      id: randomUUID(),
      spaceId: randomUUID(),
      userId: randomUUID(),
      type: 'send_email',
      payload: types.parse('send_email', { to: ['ada@example.com'], cc: ['carol@example.com'], bcc: ['dave@example.com'], subject: 'From the outbox', body: 'Kept as a file.' }),
      priority: 5,
    };
    try {
      expect(sendEmailSmtpHandler.isConfigured(action, null)).toBe(true);
      const result = await sendEmailSmtpHandler.execute({
        action,
        idempotencyKey: `action:${action.id}`,
        attempt: 1,
        executionId: randomUUID(),
        config: null,
        secrets: null,
        services: { mailer, fetch: globalThis.fetch, filesRoot: effectsDir, clock: () => new Date(), logger },
        progress: async () => undefined,
      });
      const messageId = `<action-${action.id}@mail.example.test>`;
      const mails = await readOutbox(outboxDir);
      expect(mails).toHaveLength(1);
      expect(result).toMatchObject({ status: 'completed', provider: 'outbox', externalRef: messageId, data: { via: 'outbox', file: mails[0]!.file, accepted: ['ada@example.com', 'carol@example.com', 'dave@example.com'] } });
      expect(mails[0]).toMatchObject({ to: 'ada@example.com', subject: 'From the outbox' });
      expect(mails[0]!.text).toMatch(/^Cc: carol@example\.com$/m);
      expect(mails[0]!.text).toContain(`Message-ID: ${messageId}`);
      expect(mails[0]!.text).not.toMatch(/^Bcc:/im);
      expect(mails[0]!.text).toContain('Kept as a file.');
    } finally {
      mailer.close();
    }
  });
});

describe('send_email.smtp when the worker dies between sending and recording', () => {
  it('does not send again: one message arrives, the action waits for an operator to confirm, and the receipt says CONFIRMED_BY_OPERATOR', async () => {
    const startWorker = () =>
      startService(
        [],
        {
          DATABASE_URL: t.app.config.databaseUrl!,
          REDIS_URL: t.app.config.redisUrl,
          REDIS_PREFIX: t.app.config.redisPrefix,
          REDIS_AUTOSTART: 'false',
          DATA_DIR: effectsDir,
          TEST_EFFECTS_DIR: effectsDir,
          SMTP_URL: smtp.url,
          MAIL_FROM,
          LOG_LEVEL: 'info',
          WORKER_LOCK_MS: '1500',
          WORKER_STALLED_CHECK_MS: '500',
        },
        60_000,
        workerScript,
      );
    // The in-process worker of `t` must not take this job: stop it first.
    await t.worker?.close();
    const first = await startWorker();
    workers.push(first);
    let killed: Promise<number | null> | null = null;
    // The server takes the whole message, then holds back its 250 until the worker is dead.
    smtp.holdReply = async () => {
      killed = first.stop('SIGKILL');
      await killed;
    };
    const before = smtp.received.length;
    const { action, space, operator } = await approvedEmail(t.app, { to: ['ada@example.com'], subject: 'Once only', body: 'Exactly one of these.' });
    await smtp.waitFor(before + 1);
    expect(await killed).toBeNull();
    smtp.holdReply = null;

    const second = await startWorker();
    workers.push(second);
    const until = Date.now() + 30_000;
    let task = null;
    while (!task && Date.now() < until) {
      task = await t.app.db.manualTask.findFirst({ where: { actionId: action.id, status: 'OPEN' } });
      if (!task) await sleep(100);
    }
    expect(task, 'an operator confirmation task').not.toBeNull();
    expect(task!.instructions).toMatch(/send_email\.smtp was carrying out this action/);
    const waiting = await t.app.db.execution.findMany({ where: { actionId: action.id } });
    expect(waiting).toEqual([expect.objectContaining({ handler: 'send_email.smtp', status: 'WAITING', waitKey: `confirm:${action.id}` })]);
    expect((await t.app.db.action.findUniqueOrThrow({ where: { id: action.id } })).status).toBe('EXECUTING');
    // Give a wrong repeat every chance to happen: still exactly one message.
    await sleep(1500);
    expect(smtp.received.length - before).toBe(1);
    expect(smtp.received[before]!.header('Message-ID')).toBe(`<action-${action.id}@mail.example.test>`);

    const deps = { ...t.app.engine, handlers: t.app.handlers, services: t.app.handlerServices };
    await completeManualTask(deps, { id: operator.id, role: 'OPERATOR', spaceId: space.id, userId: null }, { id: operator.id }, task!.id, {
      reference: `<action-${action.id}@mail.example.test>`,
    });
    const done = await t.app.db.action.findUniqueOrThrow({ where: { id: action.id }, include: { receipts: true } });
    expect(done.status).toBe('COMPLETED');
    expect(JSON.parse(done.receipts[0]!.statement!)).toMatchObject({
      handler: 'send_email.smtp',
      handlerPath: [{ handler: 'send_email.smtp', outcome: 'CONFIRMED_BY_OPERATOR' }],
    });
    expect(smtp.received.length - before).toBe(1);
    await second.stop('SIGTERM');
  }, 90_000);
});
