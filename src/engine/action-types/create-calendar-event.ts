import { z } from 'zod';
import { parseIsoDateTime } from '../date-time.js';
import { defineActionType } from './define.js';
import { formatRange, instructionLines, listWords, quoted } from './describe.js';
import { email, isoDateTime, line, multiLine, refuse, text, timeZoneProblem } from './fields.js';

/** `create_calendar_event`: an event in the user's calendar (CalDAV, or an .ics file); rollback deletes it. */
export const createCalendarEvent = defineActionType({
  type: 'create_calendar_event',
  description: 'Create an event in the user\'s calendar.',
  payload: z
    .strictObject({
      title: text(500, 'The event\'s title.').meta({ examples: ['Team lunch'] }),
      start_time: isoDateTime.meta({ description: 'Start: an ISO 8601 date-time with a time zone.' }),
      end_time: isoDateTime.meta({ description: 'End: an ISO 8601 date-time with a time zone, after start_time.' }),
      description: multiLine(10_000, 'Event description.').optional(),
      attendees: z.array(email).max(500).optional().meta({ description: 'Who is invited (at most 500 email addresses).' }),
      location: line(500, 'Where it takes place.').optional(),
      timezone: z
        .string()
        .superRefine(refuse(timeZoneProblem))
        .max(64)
        .optional()
        .meta({ description: 'IANA time zone name for display (e.g. Europe/Berlin or UTC; unknown names and offsets are refused).', examples: ['Europe/Berlin'] }),
    })
    .superRefine((e, ctx) => {
      const start = parseIsoDateTime(e.start_time);
      const end = parseIsoDateTime(e.end_time);
      if ('date' in start && 'date' in end && end.date.getTime() <= start.date.getTime()) {
        ctx.addIssue({ code: 'custom', message: 'must be after start_time', path: ['end_time'], input: e.end_time });
      }
    })
    .meta({
      description: 'end_time must be after start_time.',
      examples: [{ title: 'Team lunch', start_time: '2026-11-21T12:00:00+01:00', end_time: '2026-11-21T13:00:00+01:00', timezone: 'Europe/Berlin', attendees: ['ada@example.com'] }],
    }),
  reversible: true,

  describe(p) {
    const when = formatRange(p.start_time, p.end_time, p.timezone);
    let headline = `Create the calendar event ${quoted(p.title)}`;
    if (when !== undefined) headline += ` on ${when}`;
    if (p.attendees?.length) headline += ` with ${listWords(p.attendees)}`;
    return {
      headline,
      details: [
        { label: 'Title', value: p.title },
        { label: 'When', value: when },
        { label: 'Time zone', value: p.timezone },
        { label: 'Attendees', value: p.attendees },
        { label: 'Location', value: p.location },
        { label: 'Description', value: p.description, format: 'text' },
      ],
      instructions: instructionLines(
        `Create this event in the user's calendar: "${p.title}".`,
        ['Starts', p.start_time],
        ['Ends', p.end_time],
        ['Time zone', p.timezone],
        ['Location', p.location],
        ['Attendees', p.attendees],
        ['Description', p.description],
      ),
    };
  },
});
