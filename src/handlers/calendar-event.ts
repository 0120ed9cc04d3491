import ical, { ICalAttendeeRole, ICalAttendeeStatus, ICalCalendarMethod, ICalEventStatus } from 'ical-generator';
import type { z } from 'zod';
import type { createCalendarEvent } from '../engine/action-types/create-calendar-event.js';
import { parseIsoDateTime } from '../engine/date-time.js';
import { PermanentHandlerError } from './types.js';

/** A `create_calendar_event` payload, parsed. */
export type CalendarEventPayload = z.output<(typeof createCalendarEvent)['payload']>;

/** The event's UID: derived from the action id, so a repeat writes the same event. */
export function eventUid(actionId: string, domain: string): string {
  return `action-${actionId}@${domain}`;
}

export interface BuildOptions {
  uid: string;
  /** `REQUEST` (an invitation), `CANCEL`; none for a stored calendar object (RFC 4791 forbids METHOD there). */
  method?: 'REQUEST' | 'CANCEL';
  /** `Name <address>` or an address: who organizes it (the engine's sender). */
  organizer: string;
  /** When the object was made (DTSTAMP). */
  stamp: Date;
  /** 0 when created; a cancellation is a later revision. */
  sequence?: number;
}

/**
 * The VCALENDAR text of the event (ical-generator): UID, DTSTART/DTEND with TZID and a
 * VTIMEZONE for the payload's IANA time zone (UTC times when it names none), summary,
 * location, description, organizer and attendees.
 */
export function buildCalendar(event: CalendarEventPayload, options: BuildOptions): string {
  const start = instant(event.start_time, 'start_time');
  const end = instant(event.end_time, 'end_time');
  const zone = event.timezone && event.timezone !== 'UTC' && event.timezone !== 'Etc/UTC' ? event.timezone : null;
  const cal = ical({
    prodId: { company: 'Action Engine', product: 'action-engine', language: 'EN' },
    ...(options.method ? { method: options.method === 'REQUEST' ? ICalCalendarMethod.REQUEST : ICalCalendarMethod.CANCEL } : {}),
  });
  if (zone) cal.timezone({ name: null, generator: (tz) => vtimezone(tz, start, end) });
  const organizer = parseAddress(options.organizer);
  cal.createEvent({
    id: options.uid,
    sequence: options.sequence ?? 0,
    stamp: options.stamp,
    start: zone ? new WallClock(start.getTime(), zone) : start,
    end: zone ? new WallClock(end.getTime(), zone) : end,
    ...(zone ? { timezone: zone } : {}),
    summary: event.title,
    ...(event.location ? { location: event.location } : {}),
    ...(event.description ? { description: event.description } : {}),
    ...(options.method === 'CANCEL' ? { status: ICalEventStatus.CANCELLED } : {}),
    ...(event.attendees?.length
      ? {
          organizer: organizer.name ? { name: organizer.name, email: organizer.email } : { name: organizer.email, email: organizer.email },
          attendees: event.attendees.map((email) => ({
            email,
            role: ICalAttendeeRole.REQ,
            ...(options.method === 'CANCEL' ? {} : { status: ICalAttendeeStatus.NEEDSACTION, rsvp: true }),
          })),
        }
      : {}),
  });
  return cal.toString();
}

function instant(value: string, field: string): Date {
  const parsed = parseIsoDateTime(value);
  if (!('date' in parsed)) throw new PermanentHandlerError(`payload.${field}: is not a date-time with a time zone`);
  return parsed.date;
}

function parseAddress(from: string): { name: string | null; email: string } {
  const match = /^\s*"?([^"<]*?)"?\s*<([^>]+)>\s*$/.exec(from);
  if (match) return { name: match[1]!.trim() || null, email: match[2]!.trim() };
  return { name: null, email: from.trim() };
}

/** Wall-clock fields of `ms` in `timeZone`. */
function fieldsIn(ms: number, timeZone: string): { year: number; month: number; day: number; hour: number; minute: number; second: number } {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(ms));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return { year: get('year'), month: get('month'), day: get('day'), hour: get('hour'), minute: get('minute'), second: get('second') };
}

/** Offset of `timeZone` from UTC at `ms`, in minutes. */
function offsetMinutes(ms: number, timeZone: string): number {
  const f = fieldsIn(ms, timeZone);
  const asUtc = Date.UTC(f.year, f.month - 1, f.day, f.hour, f.minute, f.second);
  return Math.round((asUtc - Math.floor(ms / 1000) * 1000) / 60_000);
}

/**
 * A Date that ical-generator formats as wall-clock time in its zone (its "TZDate" shape:
 * `internal`, `withTimeZone`, `tzComponents`; local getters answer in the zone, not the
 * process's), so DTSTART;TZID=Europe/Berlin carries Berlin time whatever TZ the worker has.
 */
class WallClock extends Date {
  readonly internal: Date;
  readonly #fields: ReturnType<typeof fieldsIn>;
  constructor(
    ms: number,
    readonly zone: string,
  ) {
    super(ms);
    this.internal = new Date(ms);
    this.#fields = fieldsIn(ms, zone);
  }
  withTimeZone(zone?: string | null): WallClock {
    return new WallClock(this.getTime(), zone ?? this.zone);
  }
  tzComponents(): ReturnType<typeof fieldsIn> {
    return { ...this.#fields };
  }
  override getFullYear(): number {
    return this.#fields.year;
  }
  override getMonth(): number {
    return this.#fields.month - 1;
  }
  override getDate(): number {
    return this.#fields.day;
  }
  override getHours(): number {
    return this.#fields.hour;
  }
  override getMinutes(): number {
    return this.#fields.minute;
  }
  override getSeconds(): number {
    return this.#fields.second;
  }
}

const pad = (n: number, width = 2) => String(Math.abs(n)).padStart(width, '0');
const offsetText = (minutes: number) => `${minutes < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(minutes) / 60))}${pad(Math.abs(minutes) % 60)}`;
const localText = (ms: number, offset: number) => {
  const d = new Date(ms + offset * 60_000);
  return `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}T${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
};

/**
 * A VTIMEZONE for `zone` valid from a year before `from` to a year after `to`, built from the
 * platform's time zone data (Intl): one observance per offset change in that span (found to
 * the minute), after one that holds from 1970. Enough for the event's own dates (RFC 5545
 * needs a VTIMEZONE for every TZID used), without a time zone library.
 */
export function vtimezone(zone: string, from: Date, to: Date): string {
  const DAY = 86_400_000;
  const begin = Date.UTC(from.getUTCFullYear() - 1, 0, 1);
  const finish = Date.UTC(to.getUTCFullYear() + 2, 0, 1);
  const changes: Array<{ at: number; before: number; after: number }> = [];
  let previous = offsetMinutes(begin, zone);
  for (let t = begin + DAY; t <= finish; t += DAY) {
    const current = offsetMinutes(t, zone);
    if (current === previous) continue;
    let lo = t - DAY;
    let hi = t;
    while (hi - lo > 60_000) {
      const mid = lo + Math.floor((hi - lo) / 120_000) * 60_000;
      if (offsetMinutes(mid, zone) === previous) lo = mid;
      else hi = mid;
    }
    changes.push({ at: hi, before: previous, after: current });
    previous = current;
  }
  const initial = offsetMinutes(begin, zone);
  const offsets = [initial, ...changes.map((c) => c.after)];
  const standard = Math.min(...offsets);
  const lines = ['BEGIN:VTIMEZONE', `TZID:${zone}`];
  const observance = (dtstart: string, fromOffset: number, toOffset: number) => {
    const kind = toOffset > standard ? 'DAYLIGHT' : 'STANDARD';
    lines.push(`BEGIN:${kind}`, `DTSTART:${dtstart}`, `TZOFFSETFROM:${offsetText(fromOffset)}`, `TZOFFSETTO:${offsetText(toOffset)}`, `END:${kind}`);
  };
  observance('19700101T000000', initial, initial);
  for (const change of changes) observance(localText(change.at, change.before), change.before, change.after);
  lines.push('END:VTIMEZONE');
  return lines.join('\r\n');
}
