import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fetchCalendarObjects } from 'tsdav';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { handlerAction } from '../../src/engine/execution.js';
import { upsertHandlerConfig } from '../../src/engine/handler-configs.js';
import { rollbackAction } from '../../src/engine/rollback.js';
import type { Prisma } from '../../src/generated/prisma/client.js';
import { createOutboundFetch } from '../../src/engine/outbound.js';
import { PermanentHandlerError, type HandlerContext } from '../../src/handlers/types.js';
import { startRadicale, type TestRadicale } from '../helpers/radicale.js';
import { startSmtpServer, type TestSmtpServer, type ReceivedMail } from '../helpers/smtp.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitForActionStatus } from '../helpers/wait.js';

const MAIL_FROM = 'Action Engine <engine@cal.example.test>';
const EVENT = {
  title: 'Team lunch',
  start_time: '2026-11-21T12:00:00+01:00',
  end_time: '2026-11-21T13:30:00+01:00',
  timezone: 'Europe/Berlin',
  attendees: ['ada@example.com', 'bob@example.com'],
  location: 'Kantine, 2nd floor',
  description: 'Monthly team lunch.',
};

let radicale: TestRadicale;
let smtp: TestSmtpServer;
beforeAll(async () => {
  radicale = await startRadicale();
  smtp = await startSmtpServer();
});
afterAll(async () => {
  await radicale?.close();
  await smtp?.close();
});

async function approvedEvent(app: App, payload: Record<string, unknown> = EVENT) {
  const db = app.db;
  const space = await db.space.create({ data: { slug: `cal-${randomUUID().slice(0, 8)}` } });
  const user = await db.user.create({ data: { spaceId: space.id, handle: 'ada' } });
  const agent = await db.principal.create({ data: { spaceId: space.id, role: 'AGENT', userId: user.id, name: 'agent' } });
  const admin = await db.principal.create({ data: { spaceId: space.id, role: 'ADMIN', name: 'admin' } });
  const action = await db.action.create({
    data: { spaceId: space.id, userId: user.id, requestedById: agent.id, type: 'create_calendar_event', payload: payload as Prisma.InputJsonObject, payloadHash: 'h', status: 'APPROVED' },
  });
  return { action, space, admin: { id: admin.id, role: 'ADMIN' as const, spaceId: space.id, userId: null } };
}

function deps(t: TestServer) {
  return { ...t.app.engine, handlers: t.app.handlers, services: t.app.handlerServices };
}

async function calendarObjects(url: string) {
  return fetchCalendarObjects({ calendar: { url }, headers: { authorization: radicale.authorization } });
}

const unfold = (text: string) => text.replace(/\r?\n[ \t]/g, '');

describe('the Radicale test helper', () => {
  it('fails with how to install Radicale when it is missing (never a silent skip)', async () => {
    await expect(startRadicale({ bin: '/nonexistent/radicale' })).rejects.toThrow(/apt-get install -y radicale/);
  });
});

describe('calendar.caldav against Radicale', () => {
  let t: TestServer;
  let calendarUrl: string;
  beforeAll(async () => {
    calendarUrl = await radicale.createCalendar('work');
    const withCredentials = new URL(calendarUrl);
    withCredentials.username = radicale.username;
    withCredentials.password = radicale.password;
    t = await startTestServer({ worker: true, env: { CALDAV_URL: withCredentials.href, MAIL_FROM } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('creates the event (CALDAV_URL with credentials): read back with its times, time zone, attendees and location; a repeat does not duplicate it; rollback deletes it', async () => {
    const { action, admin } = await approvedEvent(t.app);
    await t.app.engine.queue.enqueue(action);
    await waitForActionStatus(t.app.db, action.id, 'COMPLETED', 20_000);

    const objectUrl = new URL(`action-${action.id}.ics`, calendarUrl).href;
    const done = await t.app.db.action.findUniqueOrThrow({ where: { id: action.id }, include: { receipts: true, statusUpdates: { orderBy: { seq: 'asc' } } } });
    expect(done.receipts).toEqual([expect.objectContaining({ handler: 'calendar.caldav', provider: 'caldav', externalRef: objectUrl })]);
    expect(JSON.stringify(done.receipts[0])).not.toContain(radicale.password);
    expect(done.statusUpdates.map((s) => s.message)).toContain('Creating “Team lunch” in the calendar…');

    const objects = await calendarObjects(calendarUrl);
    expect(objects).toHaveLength(1);
    expect(objects[0]!.url).toBe(objectUrl);
    const ics = unfold(objects[0]!.data as string);
    expect(ics).toContain(`UID:action-${action.id}@cal.example.test`);
    expect(ics).toMatch(/^DTSTART;TZID=Europe\/Berlin:20261121T120000\r?$/m);
    expect(ics).toMatch(/^DTEND;TZID=Europe\/Berlin:20261121T133000\r?$/m);
    expect(ics).toMatch(/BEGIN:VTIMEZONE\r?\nTZID:Europe\/Berlin/);
    expect(ics).toMatch(/^ATTENDEE;[^\r\n]*:mailto:ada@example\.com\r?$/im);
    expect(ics).toMatch(/^ATTENDEE;[^\r\n]*:mailto:bob@example\.com\r?$/im);
    expect(ics).toMatch(/^LOCATION:Kantine\\, 2nd floor\r?$/m);
    expect(ics).toMatch(/^SUMMARY:Team lunch\r?$/m);
    expect(ics).not.toMatch(/^METHOD:/m);

    // The same action's job again (a repeat after a crash): If-None-Match: * gets 412, and the
    // handler finds its own event there.
    const handler = t.app.handlers.get('calendar.caldav');
    const repeat = await handler.execute({
      action: handlerAction(t.app.engine.types, done),
      idempotencyKey: `action:${action.id}`,
      attempt: 2,
      executionId: randomUUID(),
      config: null,
      secrets: null,
      services: t.app.handlerServices,
      progress: async () => undefined,
    } satisfies HandlerContext);
    expect(repeat).toMatchObject({ status: 'completed', externalRef: objectUrl, data: { alreadyThere: true } });
    expect(await calendarObjects(calendarUrl)).toHaveLength(1);

    const rolledBack = await rollbackAction(deps(t), admin, { id: admin.id }, action.id, 'wrong day');
    expect(rolledBack.status).toBe('ROLLED_BACK');
    expect(await calendarObjects(calendarUrl)).toHaveLength(0);
    // Rolling back what is already gone is fine (404).
    await expect(
      handler.rollback!({ action: handlerAction(t.app.engine.types, done), rollbackData: { url: objectUrl }, config: null, secrets: null, services: t.app.handlerServices }),
    ).resolves.toBeUndefined();
  });

  it('with OUTBOUND_BLOCK_PRIVATE the loopback calendar is refused for good (a permanent error, not retried) and no event is created', async () => {
    const { action } = await approvedEvent(t.app);
    const handler = t.app.handlers.get('calendar.caldav');
    const blocked = createOutboundFetch({ blockPrivate: true, timeoutMs: 2000 });
    const attempt = handler.execute({
      action: handlerAction(t.app.engine.types, action),
      idempotencyKey: `action:${action.id}`,
      attempt: 1,
      executionId: randomUUID(),
      config: null,
      secrets: null,
      services: { ...t.app.handlerServices, fetch: blocked },
      progress: async () => undefined,
    });
    await expect(attempt).rejects.toBeInstanceOf(PermanentHandlerError);
    await expect(attempt).rejects.toThrow(/may not be called: 127\.0\.0\.1 is a private or loopback address/);
    expect((await calendarObjects(calendarUrl)).filter((o) => o.url.includes(action.id))).toHaveLength(0);
  });

  it('refuses to replace an object of the same name that is not this action\'s event', async () => {
    const { action } = await approvedEvent(t.app);
    const objectUrl = new URL(`action-${action.id}.ics`, calendarUrl).href;
    const foreign = 'BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:someone-else\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T100000Z\r\nSUMMARY:Other\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n';
    const put = await fetch(objectUrl, { method: 'PUT', headers: { authorization: radicale.authorization, 'content-type': 'text/calendar' }, body: foreign });
    expect(put.status).toBe(201);
    await t.app.engine.queue.enqueue(action);
    // Not ours: calendar.caldav fails for good, and the chain goes on (CALDAV_URL is set, so not to calendar.ics: to the operator).
    const until = Date.now() + 20_000;
    while (Date.now() < until && !(await t.app.db.manualTask.count({ where: { actionId: action.id } }))) await sleep(50);
    const executions = await t.app.db.execution.findMany({ where: { actionId: action.id }, orderBy: { startedAt: 'asc' } });
    expect(executions.map((e) => [e.handler, e.status])).toEqual([
      ['calendar.caldav', 'FAILED'],
      ['manual', 'WAITING'],
    ]);
    expect(executions[0]!.error).toMatch(/already has a different object/);
    const objects = await calendarObjects(calendarUrl);
    expect(objects.find((o) => o.url === objectUrl)?.data).toContain('UID:someone-else');
  });
});

describe('calendar.caldav configured per space (settings.url, secrets username and password)', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ worker: true, env: { MAIL_FROM, SMTP_URL: smtp.url } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('logs in with the space\'s secrets and creates the event there', async () => {
    const calendarUrl = await radicale.createCalendar(`space-${randomUUID().slice(0, 8)}`);
    const { action, admin } = await approvedEvent(t.app, { ...EVENT, attendees: undefined });
    await upsertHandlerConfig(t.app.engine, t.app.handlers, admin, { id: admin.id }, {
      handler: 'calendar.caldav',
      provider: '*',
      settings: { url: calendarUrl },
      secrets: { username: radicale.username, password: radicale.password },
    });
    await t.app.engine.queue.enqueue(action);
    await waitForActionStatus(t.app.db, action.id, 'COMPLETED', 20_000);
    const receipt = await t.app.db.receipt.findFirstOrThrow({ where: { actionId: action.id } });
    expect(receipt).toMatchObject({ handler: 'calendar.caldav', externalRef: new URL(`action-${action.id}.ics`, calendarUrl).href });
    expect(await calendarObjects(calendarUrl)).toHaveLength(1);
  });

  it('a refused login (wrong password in the space\'s secrets) fails calendar.caldav for good, and calendar.ics takes over', async () => {
    const calendarUrl = await radicale.createCalendar(`space-${randomUUID().slice(0, 8)}`);
    const { action, admin } = await approvedEvent(t.app, { ...EVENT, attendees: undefined });
    await upsertHandlerConfig(t.app.engine, t.app.handlers, admin, { id: admin.id }, {
      handler: 'calendar.caldav',
      provider: '*',
      settings: { url: calendarUrl },
      secrets: { username: radicale.username, password: 'wrong' },
    });
    await t.app.engine.queue.enqueue(action);
    await waitForActionStatus(t.app.db, action.id, 'COMPLETED', 20_000);
    const executions = await t.app.db.execution.findMany({ where: { actionId: action.id }, orderBy: { startedAt: 'asc' } });
    expect(executions.map((e) => [e.handler, e.status])).toEqual([
      ['calendar.caldav', 'FAILED'],
      ['calendar.ics', 'SUCCEEDED'],
    ]);
    expect(executions[0]!.error).toMatch(/refused the login or access \(HTTP 401\)/);
    expect(executions[0]!.error).not.toContain('wrong');
    expect(await calendarObjects(calendarUrl)).toHaveLength(0);
  });

  it('refuses a settings.url with credentials in it when the configuration is saved, naming the field', async () => {
    const { admin } = await approvedEvent(t.app);
    const url = new URL(radicale.origin);
    url.username = 'ada';
    url.password = 'secret';
    await expect(
      upsertHandlerConfig(t.app.engine, t.app.handlers, admin, { id: admin.id }, { handler: 'calendar.caldav', provider: '*', settings: { url: url.href }, secrets: null }),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/settings\.url.*must not contain credentials/) });
  });
});

/** The decoded text/calendar part of a raw message, and its Content-Type line. */
function calendarPart(mail: ReceivedMail): { contentType: string; body: string } {
  const match = /Content-Type: (text\/calendar[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)\r?\n((?:[A-Za-z-]+: [^\r\n]*\r?\n)*)\r?\n([\s\S]*?)\r?\n--/i.exec(mail.raw);
  if (!match) throw new Error(`no text/calendar part in:\n${mail.raw}`);
  const encoding = /Content-Transfer-Encoding: ([^\r\n]+)/i.exec(match[2]!)?.[1]?.trim().toLowerCase();
  let body = match[3]!;
  if (encoding === 'base64') body = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  else if (encoding === 'quoted-printable') body = body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  return { contentType: match[1]!.replace(/\r?\n[ \t]+/g, ' '), body: unfold(body) };
}

describe('calendar.ics (no CalDAV server configured)', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ worker: true, env: { MAIL_FROM, SMTP_URL: smtp.url } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('writes the .ics into the user\'s calendar folder and mails the attendees an iTIP REQUEST; rollback removes the file and mails a CANCEL', async () => {
    const { action, admin } = await approvedEvent(t.app);
    const before = smtp.received.length;
    await t.app.engine.queue.enqueue(action);
    await waitForActionStatus(t.app.db, action.id, 'COMPLETED', 20_000);

    const uid = `action-${action.id}@cal.example.test`;
    const folder = path.join(t.app.config.filesRoot, action.spaceId, action.userId, 'calendar');
    expect(await readdir(folder)).toEqual([`${uid}.ics`]);
    const file = unfold(await readFile(path.join(folder, `${uid}.ics`), 'utf8'));
    expect(file).toContain(`UID:${uid}`);
    expect(file).toMatch(/^DTSTART;TZID=Europe\/Berlin:20261121T120000\r?$/m);
    expect(file).toMatch(/^DTEND;TZID=Europe\/Berlin:20261121T133000\r?$/m);
    expect(file).toMatch(/^ATTENDEE;[^\r\n]*:mailto:bob@example\.com\r?$/im);
    expect(file).not.toMatch(/^METHOD:/m);

    const receipt = await t.app.db.receipt.findFirstOrThrow({ where: { actionId: action.id } });
    expect(receipt).toMatchObject({ handler: 'calendar.ics', provider: 'ics', externalRef: `${action.spaceId}/${action.userId}/calendar/${uid}.ics` });
    const executions = await t.app.db.execution.findMany({ where: { actionId: action.id } });
    expect(executions.map((e) => [e.handler, e.status])).toEqual([['calendar.ics', 'SUCCEEDED']]);
    const notes = (await t.app.db.statusUpdate.findMany({ where: { actionId: action.id }, orderBy: { seq: 'asc' } })).map((s) => s.message);
    expect(notes.join('\n')).toMatch(/No integration configured .*calendar\.caldav.*trying calendar\.ics/);
    expect(notes).toContain('Inviting ada@example.com, bob@example.com to “Team lunch”…');

    expect(smtp.received.length - before).toBe(1);
    const invite = smtp.received[before]!;
    expect(invite.to.sort()).toEqual(['ada@example.com', 'bob@example.com']);
    expect(invite.header('From')).toBe(MAIL_FROM);
    expect(invite.header('Subject')).toMatch(/^Invitation: Team lunch/);
    const request = calendarPart(invite);
    expect(request.contentType).toMatch(/method=REQUEST/i);
    expect(request.body).toMatch(/^METHOD:REQUEST\r?$/m);
    expect(request.body).toContain(`UID:${uid}`);
    expect(request.body).toMatch(/^ORGANIZER;[^\r\n]*:mailto:engine@cal\.example\.test\r?$/m);
    expect(request.body).toMatch(/^DTSTART;TZID=Europe\/Berlin:20261121T120000\r?$/m);

    const rolledBack = await rollbackAction(deps(t), admin, { id: admin.id }, action.id, 'called off');
    expect(rolledBack.status).toBe('ROLLED_BACK');
    expect(await readdir(folder)).toEqual([]);
    expect(smtp.received.length - before).toBe(2);
    const cancelMail = smtp.received[before + 1]!;
    expect(cancelMail.to.sort()).toEqual(['ada@example.com', 'bob@example.com']);
    expect(cancelMail.header('Subject')).toMatch(/^Cancelled: Team lunch/);
    const cancel = calendarPart(cancelMail);
    expect(cancel.contentType).toMatch(/method=CANCEL/i);
    expect(cancel.body).toMatch(/^METHOD:CANCEL\r?$/m);
    expect(cancel.body).toMatch(/^STATUS:CANCELLED\r?$/m);
    expect(cancel.body).toMatch(/^SEQUENCE:1\r?$/m);
    expect(cancel.body).toContain(`UID:${uid}`);
  });

  it('without attendees writes the file and sends no mail', async () => {
    const { action } = await approvedEvent(t.app, { ...EVENT, attendees: undefined, timezone: undefined });
    const before = smtp.received.length;
    await t.app.engine.queue.enqueue(action);
    await waitForActionStatus(t.app.db, action.id, 'COMPLETED', 20_000);
    const uid = `action-${action.id}@cal.example.test`;
    const file = await readFile(path.join(t.app.config.filesRoot, action.spaceId, action.userId, 'calendar', `${uid}.ics`), 'utf8');
    expect(file).toMatch(/^DTSTART:20261121T110000Z\r?$/m);
    await sleep(200);
    expect(smtp.received.length).toBe(before);
  });
});
