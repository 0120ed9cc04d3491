import { randomBytes } from 'node:crypto';
import { link, open, unlink } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { createCalendarEvent } from '../engine/action-types/create-calendar-event.js';
import { formatRange, listWords } from '../engine/action-types/describe.js';
import { buildCalendar, eventUid, type CalendarEventPayload } from './calendar-event.js';
import {
  assertRelative,
  assertSafeSegment,
  ensureFolder,
  ensureUserRoot,
  ignoreCode,
  isInside,
  readRegularFile,
  realpathOrNull,
  sha256Of,
} from './user-files.js';
import { defineHandler } from './define-handler.js';
import { mailFailure } from './mail-outcome.js';
import { PermanentHandlerError, type HandlerServices } from './types.js';

/** The folder in the user's folder where events go. */
const CALENDAR_FOLDER = 'calendar';

/**
 * `create_calendar_event` without a CalDAV server (skipped when `CALDAV_URL` is set; after
 * `calendar.caldav` in the chain, so it also takes over when a space's own CalDAV configuration
 * fails for good): the event as an `.ics` file in the user's
 * folder (`<FILES_ROOT>/<space>/<user>/calendar/<uid>.ics`, never outside it, never replacing
 * another file) and, when it has attendees, an iTIP invitation (METHOD:REQUEST, a
 * `text/calendar` part) mailed to them from `MAIL_FROM`, the organizer. Rollback deletes the
 * file (unless it was changed since) and mails them the cancellation (METHOD:CANCEL).
 *
 * `repeat: 'none'`: the file could be checked, but the invitation is mail, and SMTP cannot
 * tell a repeat from a new message; so an interrupted run is never repeated (an operator
 * confirms), and a send that broke off mid-way waits for an operator too. A retry after a mail
 * server's clear "try later" reuses the file it wrote and sends the invitation then.
 */
export const calendarIcsHandler = defineHandler({
  name: 'calendar.ics',
  kind: 'api',
  types: [createCalendarEvent],
  repeat: 'none',
  rollbackData: z.object({ path: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/), uid: z.string().min(1) }),

  /** Not when `CALDAV_URL` names a calendar for every space: events go there, never into files instead. */
  isConfigured(_action, _config, services) {
    return !services?.caldavUrl;
  },

  async execute({ action, payload, services, progress }) {
    const { mailer } = services;
    const uid = eventUid(action.id, mailer.domain);
    await progress(`Saving “${payload.title}” to the calendar folder…`);

    const userRoot = await ensureUserRoot(services.filesRoot, action);
    const dir = await ensureFolder(userRoot, CALENDAR_FOLDER);
    const name = `${uid}.ics`;
    const rel = `${CALENDAR_FOLDER}/${name}`;
    const target = path.join(dir, name);
    // A retry (the mail server said "later") finds the file its first run wrote: it keeps it.
    let content = await readRegularFile(target, rel);
    if (content === null || !hasUid(content, uid)) {
      content = Buffer.from(buildCalendar(payload, { uid, organizer: mailer.from, stamp: services.clock() }), 'utf8');
      await writeNew(target, content, rel);
    }
    const sha256 = sha256Of(content);

    const attendees = payload.attendees ?? [];
    let invitation: string | null = null;
    if (attendees.length) {
      await progress(`Inviting ${listWords(attendees)} to “${payload.title}”…`);
      const messageId = `<action-${action.id}-invite@${mailer.domain}>`;
      try {
        await sendItip(services, payload, uid, 'REQUEST', messageId);
      } catch (error) {
        const known = mailFailure(error, mailer.mode);
        if (!known) {
          services.logger.warn({ err: error, actionId: action.id }, 'SMTP conversation broke off while sending an invitation; the outcome is unknown');
          return {
            status: 'waiting',
            key: `confirm:${action.id}`,
            message: `Waiting for an operator: the mail server stopped answering while the invitation to ${listWords(attendees)} was being sent; did it go out?`,
            task: {
              instructions:
                `The event file ${rel} is written, but the connection to the mail server broke off while the invitation (Message-ID ${messageId}) ` +
                'was being sent, so it may or may not have been delivered, and sending it again could deliver it twice. Check, and if the ' +
                `invitation went out, complete this task with what you found (e.g. {"reference": "${messageId}"}); if not, send it yourself and complete the task.`,
            },
          };
        }
        if (known instanceof PermanentHandlerError) {
          // Nobody was invited: leave no half-done event behind for the next handler.
          await unlink(target).catch(ignoreCode('ENOENT'));
        }
        throw known;
      }
      invitation = messageId;
    }
    return {
      status: 'completed',
      provider: 'ics',
      externalRef: `${action.spaceId}/${action.userId}/${rel}`,
      data: { path: rel, uid, invited: attendees, ...(invitation ? { invitationMessageId: invitation } : {}) },
      rollbackData: { path: rel, sha256, uid },
    };
  },

  async rollback({ action, payload, rollbackData, services }) {
    const { path: rel, sha256: expected, uid } = rollbackData;
    assertSafeSegment(action.spaceId, 'space id');
    assertSafeSegment(action.userId, 'user id');
    assertRelative(rel, 'event file path');
    const userRoot = await realpathOrNull(path.join(services.filesRoot, action.spaceId, action.userId));
    const parent = userRoot && (await realpathOrNull(path.dirname(path.resolve(userRoot, rel))));
    if (userRoot && parent) {
      if (!isInside(parent, userRoot)) throw new PermanentHandlerError(`cannot roll back: "${rel}" resolves outside the user's folder`);
      const file = path.join(parent, path.basename(rel));
      const current = await readRegularFile(file, rel);
      if (current !== null) {
        if (sha256Of(current) !== expected) throw new PermanentHandlerError(`cannot roll back: "${rel}" was changed since it was created; it was not deleted and nobody was told`);
        await unlink(file).catch(ignoreCode('ENOENT'));
      }
    }
    if (payload.attendees?.length) {
      // A repeated rollback (the mail failed the first time) finds the file gone and sends the cancellation again.
      try {
        await sendItip(services, payload, uid, 'CANCEL', `<action-${action.id}-cancel@${services.mailer.domain}>`);
      } catch (error) {
        throw mailFailure(error, services.mailer.mode) ?? new PermanentHandlerError('the mail server stopped answering while the cancellation was being sent; it may not have reached the attendees');
      }
    }
  },
});

/** Mails the attendees the iTIP message: a text part saying what it is, and the `text/calendar; method=…` part. */
async function sendItip(services: HandlerServices, event: CalendarEventPayload, uid: string, method: 'REQUEST' | 'CANCEL', messageId: string): Promise<void> {
  const when = formatRange(event.start_time, event.end_time, event.timezone) ?? `${event.start_time} – ${event.end_time}`;
  const cancel = method === 'CANCEL';
  const lines = [
    cancel ? `This event has been cancelled: ${event.title}` : `You are invited: ${event.title}`,
    '',
    `When: ${when}`,
    ...(event.location ? [`Where: ${event.location}`] : []),
    ...(event.description && !cancel ? ['', event.description] : []),
  ];
  await services.mailer.send({
    to: event.attendees ?? [],
    subject: `${cancel ? 'Cancelled' : 'Invitation'}: ${event.title} (${when})`,
    text: lines.join('\n'),
    messageId,
    calendar: {
      method,
      content: buildCalendar(event, { uid, method, organizer: services.mailer.from, stamp: services.clock(), sequence: cancel ? 1 : 0 }),
    },
  });
}

/**
 * Makes `target` appear with `content` at once, never replacing anything: a synced temporary
 * file beside it, hard-linked into place (fails if the name is taken), then removed.
 */
async function writeNew(target: string, content: Buffer, label: string): Promise<void> {
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', 0o644);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(temp, target).catch((error: unknown) => {
      if ((error as { code?: string }).code === 'EEXIST') throw new PermanentHandlerError(`"${label}" already exists and is not this event; it was not replaced`);
      throw error;
    });
  } finally {
    await unlink(temp).catch(ignoreCode('ENOENT'));
  }
}

function hasUid(content: Buffer, uid: string): boolean {
  return content.toString('utf8').replace(/\r?\n[ \t]/g, '').split(/\r?\n/).includes(`UID:${uid}`);
}
