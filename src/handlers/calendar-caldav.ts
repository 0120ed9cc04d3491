import { createObject, deleteObject } from 'tsdav';
import { z } from 'zod';
import { createCalendarEvent } from '../engine/action-types/create-calendar-event.js';
import { OutboundRefusedError } from '../engine/outbound.js';
import { buildCalendar, eventUid } from './calendar-event.js';
import { defineHandler } from './define-handler.js';
import type { HandlerConfig } from '../generated/prisma/client.js';
import { PermanentHandlerError, RetryableHandlerError, type HandlerServices } from './types.js';

/** Where the calendar is and how to log in: the space's configuration, else `CALDAV_URL`. */
interface Target {
  /** The calendar collection, with a trailing slash and without credentials. */
  collection: string;
  /** `Basic …`, when there are credentials. */
  authorization: string | null;
}

const noCredentials = (value: string) => {
  try {
    const u = new URL(value);
    return !u.username && !u.password;
  } catch {
    return true; // z.url() reports it
  }
};

/**
 * `create_calendar_event` on a CalDAV server (tsdav), in the calendar collection named by the
 * space's configuration (`settings.url`, credentials in `secrets`) or by `CALDAV_URL`
 * (credentials in the URL) for every space. The event (ical-generator) has a UID derived from
 * the action id and is PUT to `<collection>/action-<id>.ics` with `If-None-Match: *`, so a
 * repeat cannot make a second one: the server answers 412 and the handler checks that what is
 * there is this action's event (`repeat: 'provider'`). Rollback deletes it (already gone is fine).
 */
export const calendarCaldavHandler = defineHandler({
  name: 'calendar.caldav',
  kind: 'api',
  types: [createCalendarEvent],
  repeat: 'provider',
  settings: z.strictObject({
    url: z
      .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
      .refine(noCredentials, { error: 'must not contain credentials: put them in secrets (username, password)' })
      .optional()
      .meta({ description: 'The calendar collection, e.g. https://cal.example/dav/ada/work/ (default: CALDAV_URL).' }),
  }),
  secrets: z.strictObject({
    username: z.string().min(1).max(500).optional(),
    password: z.string().max(2000).optional(),
  }),
  rollbackData: z.object({ url: z.url(), etag: z.string().optional() }),

  isConfigured(_action, config: HandlerConfig | null, services?: HandlerServices) {
    return config !== null || Boolean(services?.caldavUrl);
  },

  async execute({ action, payload, settings, secrets, services, progress }) {
    const target = resolveTarget(settings.url, secrets, services.caldavUrl);
    const uid = eventUid(action.id, services.mailer.domain);
    const url = objectUrl(target.collection, action.id);
    await progress(`Creating “${payload.title}” in the calendar…`);
    const body = buildCalendar(payload, { uid, organizer: services.mailer.from, stamp: services.clock() });

    const put = await call(() =>
      createObject({
        url,
        data: body,
        headers: { 'content-type': 'text/calendar; charset=utf-8', 'if-none-match': '*', ...auth(target) },
        fetch: services.fetch,
      }),
    );
    await put.body?.cancel();
    let etag = put.headers.get('etag') ?? undefined;
    let repeated = false;
    if (put.status === 412) {
      // Something is already there: this action's event from an earlier run, or someone else's.
      const existing = await call(() => services.fetch(url, { headers: auth(target) }));
      const text = existing.ok ? await existing.text() : (await existing.body?.cancel(), '');
      if (!existing.ok || !new RegExp(`^UID:${escapeRegExp(uid)}\\r?$`, 'm').test(unfold(text))) {
        throw new PermanentHandlerError(`the calendar already has a different object at ${url}; it was not replaced`);
      }
      etag = existing.headers.get('etag') ?? undefined;
      repeated = true;
    } else if (!put.ok) {
      throw refusal(put.status, 'create the event');
    }
    return {
      status: 'completed',
      provider: 'caldav',
      externalRef: url,
      data: { url, uid, ...(etag ? { etag } : {}), ...(repeated ? { alreadyThere: true } : {}) },
      rollbackData: { url, ...(etag ? { etag } : {}) },
    };
  },

  async rollback({ rollbackData, settings, secrets, services }) {
    const target = resolveTarget(settings.url, secrets, services.caldavUrl);
    // The credentials go only to the calendar they are for.
    const inCollection = rollbackData.url.startsWith(target.collection);
    const res = await call(() => deleteObject({ url: rollbackData.url, headers: inCollection ? auth(target) : {}, fetch: services.fetch }));
    await res.body?.cancel();
    if (res.ok || res.status === 404 || res.status === 410) return;
    throw refusal(res.status, 'delete the event');
  },
});

function resolveTarget(settingsUrl: string | undefined, secrets: { username?: string | undefined; password?: string | undefined }, caldavUrl: string | undefined): Target {
  const raw = settingsUrl ?? caldavUrl;
  if (!raw) throw new PermanentHandlerError('no CalDAV calendar is configured: set settings.url in the calendar.caldav configuration, or CALDAV_URL');
  const url = new URL(raw);
  let username = decodeURIComponent(url.username);
  let password = decodeURIComponent(url.password);
  url.username = '';
  url.password = '';
  if (secrets.username !== undefined) {
    username = secrets.username;
    password = secrets.password ?? '';
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return {
    collection: url.href,
    authorization: username ? `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}` : null,
  };
}

function objectUrl(collection: string, actionId: string): string {
  return new URL(`action-${actionId}.ics`, collection).href;
}

function auth(target: Target): Record<string, string> {
  return target.authorization ? { authorization: target.authorization } : {};
}

/** Runs a request; a URL refused by the outbound rules is permanent, other failures (timeouts, resets) are retried. */
async function call(request: () => Promise<Response>): Promise<Response> {
  try {
    return await request();
  } catch (error) {
    if (error instanceof OutboundRefusedError) throw new PermanentHandlerError(`the calendar server may not be called: ${error.message}`);
    throw error;
  }
}

function refusal(status: number, what: string): Error {
  if (status >= 500 || status === 429 || status === 408) return new RetryableHandlerError(`the calendar server could not ${what} now (HTTP ${status})`);
  if (status === 401 || status === 403) return new PermanentHandlerError(`the calendar server refused the login or access (HTTP ${status}); check the credentials`);
  if (status === 404 || status === 409) return new PermanentHandlerError(`the calendar collection does not exist on the server (HTTP ${status}); check the calendar URL`);
  return new PermanentHandlerError(`the calendar server refused to ${what} (HTTP ${status})`);
}

function unfold(text: string): string {
  return text.replace(/\r?\n[ \t]/g, '');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
