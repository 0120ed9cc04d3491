import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  ActionTypeRegistry,
  BUILT_IN_ACTION_TYPES,
  builtInActionTypes,
  defineActionType,
  type PayloadOf,
  FILE_PATH_PATTERN,
  MULTI_LINE_PATTERN,
  purchaseTotalMatches,
  SINGLE_LINE_PATTERN,
  USER_PATH_PATTERN,
} from '../../src/engine/action-types.js';
import { InvalidPayloadError, PayloadErrors, UnknownTypeError } from '../../src/engine/errors.js';
import { isReversible } from '../../src/engine/rollback.js';
import { createDocument } from '../../src/engine/action-types/create-document.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { manualHandler } from '../../src/handlers/manual.js';
import { HandlerRegistry } from '../../src/handlers/registry.js';

const types = new ActionTypeRegistry(BUILT_IN_ACTION_TYPES);

function refusal(type: string, payload: unknown): InvalidPayloadError {
  try {
    types.validate(type, payload);
  } catch (error) {
    if (error instanceof InvalidPayloadError) return error;
    throw error;
  }
  throw new Error('accepted');
}

describe('action types', () => {
  it('registers the seven built-in types of spec §3 with JSON Schemas of their payloads', () => {
    expect(types.list().map((t) => t.type)).toEqual([
      'send_email',
      'create_calendar_event',
      'move_file',
      'create_document',
      'make_payment',
      'make_purchase',
      'order',
    ]);
    const schema = types.jsonSchema('send_email') as { type: string; required: string[]; properties: Record<string, unknown> };
    expect(schema.type).toBe('object');
    expect(schema.required.sort()).toEqual(['body', 'subject', 'to']);
    expect(Object.keys(schema.properties).sort()).toEqual(['bcc', 'body', 'cc', 'html', 'subject', 'to']);
  });

  it('names the field and the rule broken', () => {
    expect(refusal('send_email', { to: ['nope'], subject: 's', body: 'b' })).toMatchObject({ field: ['payload', 'to', '0'] });
    expect(refusal('create_calendar_event', { title: 't', start_time: '2026-01-01T10:00:00Z', end_time: '2026-01-01T09:00:00Z' }).message).toMatch(
      /payload\.end_time: must be after start_time/,
    );
    expect(refusal('move_file', { from: 'a/../../etc', to: 'b' }).message).toMatch(/payload\.from: must not contain "\.\."/);
    expect(refusal('move_file', { from: '/etc/passwd', to: 'b' }).message).toMatch(/relative to your file root/);
    expect(refusal('order', { provider: 'x', items: [] }).message).toMatch(/payload\.items: needs at least one item/);
    expect(refusal('send_email', { to: ['a@b.co'], subject: 's', body: 'b', bogus: 1 }).message).toMatch(/unknown field "bogus"/);
  });

  it('normalises a valid payload (defaults applied)', () => {
    expect(types.validate('create_document', { title: 'T', content: 'c' })).toEqual({ title: 'T', content: 'c', format: 'markdown' });
  });

  it('refuses an unknown type on the type field, listing the known ones', () => {
    expect(() => types.get('launch')).toThrow(UnknownTypeError);
    expect(() => types.get('launch')).toThrow(/known types: send_email/);
  });
});

function refusals(type: string, payload: unknown): Array<{ field: string[] | undefined; message: string }> {
  try {
    types.validate(type, payload);
  } catch (error) {
    if (error instanceof PayloadErrors) return error.errors.map((e) => ({ field: e.field, message: e.message }));
    throw error;
  }
  throw new Error('accepted');
}

describe('payload errors: every problem, each with its field and what was expected', () => {
  it('reports a wrong type as what was expected and what came, a missing field as required, all at once', () => {
    expect(refusals('send_email', { to: 5, subject: 3 })).toEqual([
      { field: ['payload', 'to'], message: 'payload.to: expected an array, got a whole number' },
      { field: ['payload', 'subject'], message: 'payload.subject: expected a string, got a whole number' },
      { field: ['payload', 'body'], message: 'payload.body: is required' },
    ]);
    expect(refusals('create_document', 'text')).toEqual([{ field: ['payload'], message: 'payload: expected an object, got a string' }]);
  });

  it('names each unknown field on its own path', () => {
    expect(refusals('send_email', { to: ['a@b.co'], subject: 's', body: 'b', bogus: 1, other: 2 }).map((e) => e.field)).toEqual([
      ['payload', 'bogus'],
      ['payload', 'other'],
    ]);
  });

  it('refuses impossible dates in start_time/end_time (2030-02-31, year 0000, hour 24) and accepts 29 February of a leap year', () => {
    const errors = refusals('create_calendar_event', { title: 't', start_time: '2030-02-31T10:00:00Z', end_time: '0000-01-01T24:00:00Z' });
    expect(errors.map((e) => e.field)).toEqual([
      ['payload', 'start_time'],
      ['payload', 'end_time'],
    ]);
    expect(errors[0]!.message).toMatch(/2030-02 has no day 31/);
    expect(refusals('create_calendar_event', { title: 't', start_time: '2030-01-01T24:00:00Z', end_time: '2030-01-02T10:00:00Z' })[0]!.message).toMatch(
      /time of day/,
    );
    expect(types.validate('create_calendar_event', { title: 't', start_time: '2028-02-29T10:00:00Z', end_time: '2028-02-29T12:00:00+01:00' })).toBeTruthy();
  });

  it('a purchase names its currency (no default) and its total must equal Σ price × quantity to the cent when every item has a price', () => {
    const items = [
      { name: 'Chair', price: 19.99, quantity: 3 },
      { name: 'Lamp', price: 0.1, quantity: 2 },
    ];
    expect(refusals('make_purchase', { items, merchant: 'Shop', total: 60.17 })).toEqual([{ field: ['payload', 'currency'], message: 'payload.currency: is required' }]);
    expect(refusals('make_purchase', { items, merchant: 'Shop', total: 61, currency: 'EUR' })).toEqual([
      { field: ['payload', 'total'], message: 'payload.total: is 61.00 but the items add up to 60.17 (Σ price × quantity)' },
    ]);
    expect(types.validate('make_purchase', { items, merchant: 'Shop', total: 60.17, currency: 'EUR' })).toMatchObject({ total: 60.17 });
    // An item without a price: the total cannot be checked, and is taken as given.
    expect(types.validate('make_purchase', { items: [{ name: 'Mystery box' }], merchant: 'Shop', total: 5, currency: 'EUR' })).toBeTruthy();
  });
});

describe('the published JSON Schema says what the server checks', () => {
  it('gives descriptions and examples, states end_time after start_time, and path rules as a pattern', () => {
    const calendar = types.jsonSchema('create_calendar_event') as { description: string; properties: Record<string, { description?: string; examples?: unknown[]; format?: string }> };
    expect(calendar.description).toMatch(/end_time must be after start_time/);
    expect(calendar.properties.end_time!.description).toMatch(/after start_time/);
    expect(calendar.properties.start_time!.format).toBe('date-time');
    expect(calendar.properties.start_time!.examples?.length).toBeGreaterThan(0);
    const move = types.jsonSchema('move_file') as { properties: Record<string, { pattern: string; description: string }> };
    expect(move.properties.from!.pattern).toBe(FILE_PATH_PATTERN);
    const document = types.jsonSchema('create_document') as { properties: Record<string, { pattern: string }> };
    expect(document.properties.folder!.pattern).toBe(USER_PATH_PATTERN);
    expect(move.properties.from!.description).toMatch(/relative/);
    const purchase = types.jsonSchema('make_purchase') as { required: string[]; properties: Record<string, { description?: string }> };
    expect(purchase.required).toContain('currency');
    expect(purchase.properties.total!.description).toMatch(/price × quantity/);
  });

  const PATHS = ['a/b.txt', 'notes', 'a..b', '..a/x', './a', '/etc/passwd', '\\x', 'a/../b', '..', 'a/..', 'a\\..\\b', 'a\u0000b'];
  const MORE_PATHS = ['.', './', './/.', '.\\', '...', '.a', 'a\tb', 'a\nb', 'a\rb', 'a\u0007b', 'a\u007fb', 'a\u0085b', 'a\u202eb', 'a\u2066b', 'a\u2028b', 'ü/ä.txt'];
  const accepts = (type: string, payload: unknown) => {
    try {
      types.validate(type, payload);
      return true;
    } catch {
      return false;
    }
  };

  it('the path pattern accepts exactly the paths the server accepts', () => {
    const file = new RegExp(FILE_PATH_PATTERN, 'u');
    const folder = new RegExp(USER_PATH_PATTERN, 'u');
    for (const p of [...PATHS, ...MORE_PATHS]) {
      expect(file.test(p), `move_file ${JSON.stringify(p)}`).toBe(accepts('move_file', { from: p, to: 'elsewhere' }));
      expect(folder.test(p), `folder ${JSON.stringify(p)}`).toBe(accepts('create_document', { title: 't', content: 'c', folder: p }));
    }
  });

  it('the single-line and multi-line patterns accept exactly the text the server accepts', () => {
    const single = new RegExp(SINGLE_LINE_PATTERN, 'u');
    const multi = new RegExp(MULTI_LINE_PATTERN, 'u');
    for (const text of ['plain', 'tab\there', 'line\nbreak', 'cr\rlf', 'bell\u0007', 'del\u007f', 'c1\u0085', 'c1\u009f', 'not c1 \u00a0', 'rlo\u202e', 'lri\u2066', 'pdi\u2069', 'ls\u2028', 'lrm\u200e', 'emoji 😀', 'nul\u0000']) {
      expect(single.test(text), `single ${JSON.stringify(text)}`).toBe(accepts('send_email', { to: ['a@b.co'], subject: text, body: 'b' }));
      expect(multi.test(text), `multi ${JSON.stringify(text)}`).toBe(accepts('send_email', { to: ['a@b.co'], subject: 's', body: text }));
    }
  });
});

describe('reversible comes from the handler chain', () => {
  const undoable = defineHandler({
    name: 'undoable',
    kind: 'api',
    types: [createDocument],
    repeat: 'check',
    execute: async () => ({ status: 'completed', provider: 'test', data: {} }),
    rollback: async () => {},
  });
  const registry = new HandlerRegistry([undoable, manualHandler]);

  it('is true only when the type allows it and a handler of its chain implements rollback', () => {
    expect(isReversible(types, registry, 'create_document')).toBe(true);
    // move_file allows rollback, but its only handler (manual) cannot undo.
    expect(isReversible(types, registry, 'move_file')).toBe(false);
    expect(isReversible(types, registry, 'send_email')).toBe(false);
  });
});

describe('text fields: control characters, line breaks and bidi controls', () => {
  const ok = { to: ['a@b.co'], subject: 's', body: 'b' };
  /** Every single-line field of every type, as [type, valid payload, path, set a value there]. */
  const event = { title: 't', start_time: '2030-01-01T10:00:00Z', end_time: '2030-01-01T11:00:00Z' };
  const orderBase = { provider: 'cafe', items: [{ name: 'Latte', price: 3, modifications: ['oat milk'] }] };
  const purchaseBase = { items: [{ name: 'Chair' }], merchant: 'Shop', total: 5, currency: 'EUR' };
  const SINGLE_LINE: Array<[string, string[], (v: string) => unknown]> = [
    ['send_email', ['subject'], (v) => ({ ...ok, subject: v })],
    ['send_email', ['to', '0'], (v) => ({ ...ok, to: [`a${v}@b.co`] })],
    ['send_email', ['cc', '0'], (v) => ({ ...ok, cc: [`a@b.co${v}`] })],
    ['send_email', ['bcc', '0'], (v) => ({ ...ok, bcc: [`a${v}@b.co`] })],
    ['create_calendar_event', ['title'], (v) => ({ ...event, title: v })],
    ['create_calendar_event', ['location'], (v) => ({ ...event, location: v })],
    ['create_calendar_event', ['timezone'], (v) => ({ ...event, timezone: `Europe/Berlin${v}` })],
    ['create_calendar_event', ['attendees', '0'], (v) => ({ ...event, attendees: [`a${v}@b.co`] })],
    ['order', ['provider'], (v) => ({ ...orderBase, provider: v })],
    ['order', ['items', '0', 'name'], (v) => ({ ...orderBase, items: [{ name: v, price: 3 }] })],
    ['order', ['items', '0', 'modifications', '0'], (v) => ({ ...orderBase, items: [{ name: 'Latte', price: 3, modifications: [v] }] })],
    ['order', ['pickup_time'], (v) => ({ ...orderBase, pickup_time: `12:30${v}` })],
    ['order', ['customer_name'], (v) => ({ ...orderBase, customer_name: v })],
    ['order', ['customer_phone'], (v) => ({ ...orderBase, customer_phone: `+49 30 1234${v}5` })],
    ['make_purchase', ['merchant'], (v) => ({ ...purchaseBase, merchant: v })],
    ['make_purchase', ['items', '0', 'name'], (v) => ({ ...purchaseBase, items: [{ name: v }] })],
    ['make_payment', ['recipient'], (v) => ({ amount: 1, currency: 'EUR', recipient: v })],
    ['make_payment', ['currency'], (v) => ({ amount: 1, currency: `EU${v}R`, recipient: 'r' })],
    ['create_document', ['title'], (v) => ({ title: v, content: 'c' })],
    ['create_document', ['folder'], (v) => ({ title: 't', content: 'c', folder: v })],
    ['move_file', ['from'], (v) => ({ from: v, to: 'b.txt' })],
    ['move_file', ['to'], (v) => ({ from: 'a.txt', to: v })],
  ];
  const MULTI_LINE: Array<[string, string[], (v: string) => unknown]> = [
    ['send_email', ['body'], (v) => ({ ...ok, body: v })],
    ['send_email', ['html'], (v) => ({ ...ok, html: v })],
    ['create_calendar_event', ['description'], (v) => ({ ...event, description: v })],
    ['create_document', ['content'], (v) => ({ title: 't', content: v })],
    ['make_payment', ['memo'], (v) => ({ amount: 1, currency: 'EUR', recipient: 'r', memo: v })],
    ['order', ['special_instructions'], (v) => ({ ...orderBase, special_instructions: v })],
  ];
  // C0 but TAB/LF/CR, DEL, C1 (edges of each range).
  const CONTROLS = ['\u0000', '\u0001', '\u0008', '\u000b', '\u000c', '\u000e', '\u001b', '\u001f', '\u007f', '\u0080', '\u0085', '\u009f'];
  const LINE_BREAKS = ['\r', '\n', '\r\n', '\u2028', '\u2029'];
  const BIDI = ['\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'];

  it('refuses C0 controls but TAB/LF/CR, DEL and C1 controls in every string field, naming the field', () => {
    for (const [type, path, payload] of [...SINGLE_LINE, ...MULTI_LINE]) {
      for (const c of CONTROLS) {
        const errors = refusals(type, payload(`x${c}y`));
        expect(errors, `${type} ${path.join('.')} ${JSON.stringify(c)}`).toEqual([
          { field: ['payload', ...path], message: expect.stringMatching(/NUL|control character U\+00[0-9A-F]{2}, which is not allowed/) },
        ]);
      }
    }
  });

  it('refuses line breaks and bidi override/isolate characters in single-line fields, saying what is not allowed', () => {
    for (const [type, path, payload] of SINGLE_LINE) {
      for (const c of LINE_BREAKS) {
        expect(refusals(type, payload(`x${c}y`)), `${type} ${path.join('.')} ${JSON.stringify(c)}`).toEqual([
          { field: ['payload', ...path], message: expect.stringMatching(/must be a single line: contains a line break \(U\+\w{4} [A-Z ]+\); CR, LF, U\+2028 and U\+2029 are not allowed here/) },
        ]);
      }
      for (const c of BIDI) {
        expect(refusals(type, payload(`x${c}y`)), `${type} ${path.join('.')} ${JSON.stringify(c)}`).toEqual([
          { field: ['payload', ...path], message: expect.stringMatching(/bidirectional control character U\+20\w\w; override and isolate characters .* are not allowed here/) },
        ]);
      }
    }
  });

  it('refuses the header injection of a subject "hi\\r\\nBcc: evil@x.co", even where trimming would hide it', () => {
    expect(refusals('send_email', { ...ok, subject: 'hi\r\nBcc: evil@x.co' })).toEqual([
      { field: ['payload', 'subject'], message: 'payload.subject: must be a single line: contains a line break (U+000D CR); CR, LF, U+2028 and U+2029 are not allowed here' },
    ]);
    expect(refusals('send_email', { ...ok, subject: 'hi\n' })[0]!.field).toEqual(['payload', 'subject']);
    expect(refusals('create_calendar_event', { ...event, location: 'Room 1\r\nATTENDEE:mailto:evil@x.co' })[0]!.field).toEqual(['payload', 'location']);
  });

  it('keeps TAB in every field and CR, LF and TAB in multi-line fields (body, html, content, description, memo, special_instructions)', () => {
    for (const [type, path, payload] of MULTI_LINE) {
      expect(() => types.validate(type, payload('line 1\r\nline 2\n\tindented\r')), `${type} ${path.join('.')}`).not.toThrow();
    }
    for (const [type, path, payload] of SINGLE_LINE) {
      if (['to', 'cc', 'bcc', 'attendees', 'timezone', 'customer_phone', 'currency'].includes(path[0]!)) continue;
      expect(() => types.validate(type, payload('a\tb')), `${type} ${path.join('.')}`).not.toThrow();
    }
    // Other Unicode (accents, emoji, no-break space, left-to-right mark) is text.
    expect(() => types.validate('send_email', { ...ok, subject: 'Grüße 😀\u00a0\u200e' })).not.toThrow();
  });

  it('publishes the rule in the JSON Schema descriptions', () => {
    const email = types.jsonSchema('send_email') as { properties: Record<string, { description: string; pattern?: string }> };
    expect(email.properties.subject!.description).toMatch(/One line: no line breaks \(CR, LF.*bidirectional override or isolate characters \(U\+202A–U\+202E, U\+2066–U\+2069\)/);
    expect(email.properties.subject!.pattern).toBe(SINGLE_LINE_PATTERN);
    expect(email.properties.body!.description).toMatch(/Line breaks \(LF, CR\) and TAB are allowed; other control characters \(U\+0000–U\+001F, U\+007F–U\+009F\) are not/);
    expect(email.properties.body!.pattern).toBe(MULTI_LINE_PATTERN);
    const order = types.jsonSchema('order') as { properties: Record<string, { description: string; items?: { properties: Record<string, { description: string }> } }> };
    expect(order.properties.customer_name!.description).toMatch(/One line/);
    expect(order.properties.special_instructions!.description).toMatch(/Line breaks \(LF, CR\) and TAB are allowed/);
    expect(order.properties.items!.items!.properties.name!.description).toMatch(/One line/);
  });
});

describe('order.pickup_time', () => {
  const order = (pickup_time: string) => ({ provider: 'cafe', items: [{ name: 'Latte', price: 3 }], pickup_time });

  it('refuses an impossible ISO 8601 date-time (hour 24, 30 February, no time zone) naming the field', () => {
    expect(refusals('order', order('2031-02-01T24:00:00Z'))).toEqual([
      { field: ['payload', 'pickup_time'], message: expect.stringMatching(/^payload\.pickup_time: is not a real time of day/) },
    ]);
    expect(refusals('order', order('2031-02-30T10:00:00Z'))).toEqual([
      { field: ['payload', 'pickup_time'], message: expect.stringMatching(/2031-02 has no day 30/) },
    ]);
    for (const bad of ['2031-02-01', '2031-02-01T10:00:00', '2031-13-01T10:00:00Z', '0000-01-01T10:00:00Z']) {
      expect(refusals('order', order(bad))[0]!.field, bad).toEqual(['payload', 'pickup_time']);
    }
  });

  it('accepts a real date-time and free text (the spec gives no format), and says so in its JSON Schema', () => {
    for (const good of ['2031-02-01T12:30:00Z', '2028-02-29T10:00:00+01:00', '12:30', 'in 20 minutes', 'tomorrow at 9']) {
      expect(types.validate('order', order(good)).pickup_time, good).toBe(good);
    }
    const schema = types.jsonSchema('order') as { properties: Record<string, { description: string }> };
    expect(schema.properties.pickup_time!.description).toMatch(/free text.*starts with a date, an ISO 8601 date-time with a time zone/);
  });
});

describe('make_purchase total, computed exactly', () => {
  const purchase = (items: Array<{ price: number; quantity: number }>, total: number) => ({
    items: items.map((item, i) => ({ name: `item ${i}`, ...item })),
    merchant: 'Shop',
    total,
    currency: 'EUR',
  });

  it('accepts correct totals that rounding each unit price to the cent would refuse', () => {
    expect(types.validate('make_purchase', purchase([{ price: 0.005, quantity: 1000 }], 5))).toMatchObject({ total: 5 });
    expect(types.validate('make_purchase', purchase([{ price: 2.675, quantity: 2 }], 5.35))).toMatchObject({ total: 5.35 });
    expect(types.validate('make_purchase', purchase([{ price: 0.333, quantity: 3 }], 0.999))).toMatchObject({ total: 0.999 });
    // Float error does not matter: 0.1 × 3 is 0.30000000000000004 in floating point.
    expect(types.validate('make_purchase', purchase([{ price: 0.1, quantity: 3 }, { price: 0.2, quantity: 1 }], 0.5))).toBeTruthy();
    // To the cent: 0.999 may be given as 1.00.
    expect(types.validate('make_purchase', purchase([{ price: 0.333, quantity: 3 }], 1))).toBeTruthy();
  });

  it('refuses a genuinely wrong total, naming payload.total with both amounts', () => {
    expect(refusals('make_purchase', purchase([{ price: 0.005, quantity: 1000 }], 10))).toEqual([
      { field: ['payload', 'total'], message: 'payload.total: is 10.00 but the items add up to 5.00 (Σ price × quantity)' },
    ]);
    expect(refusals('make_purchase', purchase([{ price: 0.333, quantity: 3 }], 0.98))).toEqual([
      { field: ['payload', 'total'], message: 'payload.total: is 0.98 but the items add up to 0.999 (Σ price × quantity)' },
    ]);
    expect(refusals('make_purchase', purchase([{ price: 2.675, quantity: 2 }], 5.36))[0]!.field).toEqual(['payload', 'total']);
  });

  it('allows at most half a cent between the exact sum and the total', () => {
    expect(purchaseTotalMatches([{ price: 10.005, quantity: 1 }], 10).matches).toBe(true);
    expect(purchaseTotalMatches([{ price: 10.005, quantity: 1 }], 10.01).matches).toBe(true);
    expect(purchaseTotalMatches([{ price: 10.0051, quantity: 1 }], 10).matches).toBe(false);
    expect(purchaseTotalMatches([{ price: 10.0049, quantity: 1 }], 10.01).matches).toBe(false);
    expect(purchaseTotalMatches([{ price: 1e-7, quantity: 3 }], 0.01)).toEqual({ matches: false, sum: '0.0000003' });
    expect(purchaseTotalMatches([{ price: 999_999_999.99, quantity: 10_000 }], 1_000_000_000).matches).toBe(false);
  });
});

describe('loose checks made strict', () => {
  const event = { title: 't', start_time: '2030-01-01T10:00:00Z', end_time: '2030-01-01T11:00:00Z' };

  it('calendar timezone must be a real IANA name', () => {
    for (const good of ['Europe/Berlin', 'UTC', 'America/Argentina/Buenos_Aires', 'Etc/GMT+1']) {
      expect(() => types.validate('create_calendar_event', { ...event, timezone: good }), good).not.toThrow();
    }
    expect(refusals('create_calendar_event', { ...event, timezone: 'Mars/Olympus' })).toEqual([
      { field: ['payload', 'timezone'], message: 'payload.timezone: must be an IANA time zone name such as Europe/Berlin or UTC; "Mars/Olympus" is not one' },
    ]);
    for (const bad of ['+01:00', '', 'Europe/', 'x'.repeat(100)]) {
      expect(refusals('create_calendar_event', { ...event, timezone: bad }), bad).toEqual([{ field: ['payload', 'timezone'], message: expect.stringMatching(/IANA time zone/) }]);
    }
  });

  it('email addresses: at most 254 characters, at most 64 before the @, no display-name forms', () => {
    const send = (to: string) => ({ to: [to], subject: 's', body: 'b' });
    expect(() => types.validate('send_email', send(`${'x'.repeat(64)}@${'d'.repeat(63)}.${'e'.repeat(63)}.${'f'.repeat(57)}.co`))).not.toThrow();
    expect(refusals('send_email', send(`${'x'.repeat(65)}@b.co`))).toEqual([{ field: ['payload', 'to', '0'], message: expect.stringMatching(/before @ has at most 64 characters/) }]);
    expect(refusals('send_email', send(`a@${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(60)}.${'g'.repeat(60)}.${'h'.repeat(60)}.co`))).toEqual([
      { field: ['payload', 'to', '0'], message: expect.stringMatching(/at most 254 characters/) },
    ]);
    expect(refusals('send_email', send(`a@${'d'.repeat(64)}.co`))).toEqual([{ field: ['payload', 'to', '0'], message: expect.stringMatching(/domain labels have at most 63/) }]);
    for (const display of ['<a@b.co>', 'Ada <a@b.co>', '"Ada" <a@b.co>', 'a@b.co, c@d.co']) {
      expect(refusals('send_email', send(display)), display).toEqual([{ field: ['payload', 'to', '0'], message: expect.stringMatching(/no display name/) }]);
    }
    expect(refusals('create_calendar_event', { ...event, attendees: ['Ada <a@b.co>'] })[0]!.field).toEqual(['payload', 'attendees', '0']);
    const schema = types.jsonSchema('send_email') as { properties: { to: { items: { maxLength: number; description: string } } } };
    expect(schema.properties.to.items.maxLength).toBe(254);
    expect(schema.properties.to.items.description).toMatch(/no display name/);
  });

  it('move_file refuses the whole folder ("", ".", "./") and two names of the same path ("a.txt" and "./a.txt")', () => {
    for (const root of ['', '.', './', './/.', '.\\']) {
      expect(refusals('move_file', { from: root, to: 'b.txt' }).map((e) => e.field), `from ${JSON.stringify(root)}`).toEqual([['payload', 'from']]);
      expect(refusals('move_file', { from: 'a.txt', to: root }).map((e) => e.field), `to ${JSON.stringify(root)}`).toEqual([['payload', 'to']]);
    }
    expect(refusals('move_file', { from: '.', to: 'b.txt' })[0]!.message).toMatch(/not the whole root/);
    for (const [from, to] of [
      ['a.txt', './a.txt'],
      ['docs/a.txt', 'docs//a.txt'],
      ['docs/a.txt', 'docs\\a.txt'],
      ['docs/', 'docs'],
    ]) {
      expect(refusals('move_file', { from, to }), `${from} → ${to}`).toEqual([{ field: ['payload', 'to'], message: 'payload.to: must differ from from (both name the same path)' }]);
    }
    expect(types.validate('move_file', { from: './a.txt', to: 'b/a.txt' })).toEqual({ from: './a.txt', to: 'b/a.txt' });
    expect(types.validate('move_file', { from: 'A.txt', to: 'a.txt' })).toBeTruthy();
  });
});

describe('defineActionType', () => {
  it('fills in what a type does not say: no human approval, no one-time code', () => {
    const t = defineActionType({ type: 'book_room', description: 'Book a room.', payload: z.strictObject({ room: z.string() }), reversible: true });
    expect(t).toMatchObject({ type: 'book_room', humanApproval: false, approvalNeedsCode: false, reversible: true });
    expect(Object.isFrozen(t)).toBe(true);
  });

  it('refuses a name agents could not type', () => {
    for (const bad of ['', 'Send', 'send-email', '1st', 'a'.repeat(65), 'send email']) {
      expect(() => defineActionType({ type: bad, description: 'x', payload: z.strictObject({}), reversible: false }), bad).toThrow(/action type name/);
    }
  });

  it('built-in types say which need a person and a one-time code (payments and purchases), where the approval code used to keep a list', () => {
    const flags = Object.fromEntries(types.list().map((t) => [t.type, { human: t.humanApproval, code: t.approvalNeedsCode }]));
    expect(flags).toEqual({
      send_email: { human: false, code: false },
      create_calendar_event: { human: false, code: false },
      move_file: { human: false, code: false },
      create_document: { human: false, code: false },
      make_payment: { human: true, code: true },
      make_purchase: { human: false, code: true },
      order: { human: false, code: false },
    });
  });

  it('registers noop only when asked', () => {
    expect(builtInActionTypes({ noop: false }).map((t) => t.type)).not.toContain('noop');
    expect(builtInActionTypes({ noop: true }).map((t) => t.type)).toEqual([...BUILT_IN_ACTION_TYPES.map((t) => t.type), 'noop']);
  });

  it('types describe and handlers by the payload schema (checked by tsc)', () => {
    expectTypeOf<PayloadOf<typeof createDocument>>().toEqualTypeOf<{ title: string; content: string; format: 'markdown' | 'html' | 'text'; folder?: string | undefined }>();
    // A handler of all built-in types (manual) sees the union of their payloads.
    expectTypeOf<PayloadOf<typeof createDocument>>().toExtend<PayloadOf<(typeof BUILT_IN_ACTION_TYPES)[number]>>();
    expectTypeOf<PayloadOf<(typeof BUILT_IN_ACTION_TYPES)[0]>>().toHaveProperty('to').toEqualTypeOf<string[]>();
  });
});

/** Every property of a JSON Schema, with its path, through nested objects and array items. */
function properties(schema: JsonSchema, at: string[] = []): Array<{ path: string; schema: JsonSchema }> {
  const out: Array<{ path: string; schema: JsonSchema }> = [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    out.push({ path: [...at, name].join('.'), schema: child }, ...properties(child, [...at, name]));
  }
  if (schema.items) out.push(...properties(schema.items, [...at, '[]']));
  return out;
}
interface JsonSchema {
  description?: string;
  examples?: unknown[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
}

describe('published JSON Schemas explain themselves', () => {
  it('every field of every built-in type has a description', () => {
    for (const t of types.list()) {
      const missing = properties(types.jsonSchema(t.type) as JsonSchema).filter((p) => !p.schema.description && !p.schema.items?.description);
      expect(missing.map((p) => `${t.type}.${p.path}`)).toEqual([]);
    }
  });

  it('every built-in type has a whole-payload example, and it is valid', () => {
    for (const t of [...types.list(), ...builtInActionTypes({ noop: true }).filter((d) => d.type === 'noop')]) {
      const examples = (new ActionTypeRegistry([t]).jsonSchema(t.type) as JsonSchema).examples ?? [];
      expect(examples.length, t.type).toBeGreaterThan(0);
      for (const example of examples) expect(() => new ActionTypeRegistry([t]).validate(t.type, example), t.type).not.toThrow();
    }
  });
});

describe('parse (stored payloads, for the worker)', () => {
  it('returns the payload as handlers get it: defaults applied, text trimmed', () => {
    expect(types.parse('create_document', { title: '  Notes ', content: 'c' })).toEqual({ title: 'Notes', content: 'c', format: 'markdown' });
    expect(types.parse('order', { provider: 'cafe', items: [{ name: 'Latte', price: 3 }] })).toEqual({
      provider: 'cafe',
      items: [{ name: 'Latte', price: 3, quantity: 1 }],
    });
  });

  it('refuses a stored payload that no longer fits, naming the field, and an unknown type', () => {
    expect(() => types.parse('send_email', { to: ['a@b.co'], subject: 's' })).toThrow(PayloadErrors);
    expect(() => types.parse('send_email', { to: ['a@b.co'], subject: 's' })).toThrow(/payload\.body: is required/);
    expect(() => types.parse('launch', {})).toThrow(UnknownTypeError);
  });
});

describe('describe: what an action will do, from its type', () => {
  it('every built-in type describes its example in plain words, with operator instructions', () => {
    for (const t of types.list()) {
      const [example] = (types.jsonSchema(t.type) as JsonSchema).examples ?? [];
      const d = types.describe(t.type, example);
      expect(d.generic, t.type).toBe(false);
      expect(d.headline, t.type).toMatch(/^[A-Z]/);
      expect(d.details.length, t.type).toBeGreaterThan(0);
      expect(d.instructions, t.type).toMatch(/\S/);
      // Nothing left over: each built-in describer reads every field it is given.
      expect(d.details.map((x) => x.label), t.type).not.toContain('Other details');
    }
  });

  it('built-in describers show every field of a payload that has them all (none left to "Other details")', () => {
    const full: Record<string, unknown> = {
      send_email: { to: ['a@b.co'], cc: ['c@b.co'], bcc: ['d@b.co'], subject: 'S', body: 'B', html: '<p>B</p>' },
      create_calendar_event: {
        title: 'T',
        start_time: '2030-01-01T10:00:00Z',
        end_time: '2030-01-01T11:00:00Z',
        description: 'D',
        attendees: ['a@b.co'],
        location: 'L',
        timezone: 'Europe/Berlin',
      },
      move_file: { from: 'a', to: 'b' },
      create_document: { title: 'T', content: 'C', format: 'text', folder: 'f' },
      make_payment: { amount: 1, currency: 'EUR', recipient: 'R', memo: 'M' },
      make_purchase: { items: [{ name: 'N', price: 1, quantity: 2 }], merchant: 'M', total: 2, currency: 'EUR' },
      order: {
        provider: 'P',
        items: [{ name: 'N', price: 1, quantity: 2, modifications: ['m'] }],
        pickup_time: '12:30',
        customer_name: 'C',
        customer_phone: '+1 555 0100',
        special_instructions: 'S',
      },
    };
    expect(Object.keys(full)).toEqual(types.list().map((t) => t.type));
    for (const t of types.list()) {
      expect(t.payload, t.type).toBeInstanceOf(z.ZodObject);
      const fields = Object.keys((t.payload as z.ZodObject).shape);
      expect(Object.keys(full[t.type] as object).sort(), `${t.type}: the payload above has every field`).toEqual(fields.sort());
      const d = types.describe(t.type, full[t.type]);
      expect(d.generic, t.type).toBe(false);
      expect(d.details.map((x) => x.label), t.type).not.toContain('Other details');
    }
  });

  it('shows a payload as JSON when its type has no describe, when it does not fit, or when describe throws', () => {
    const plain = defineActionType({ type: 'plain', description: 'x', payload: z.strictObject({ n: z.number() }), reversible: false });
    const broken = defineActionType({
      type: 'broken',
      description: 'x',
      payload: z.strictObject({ n: z.number() }),
      reversible: false,
      describe: () => {
        throw new Error('bug in a describer');
      },
    });
    const registry = new ActionTypeRegistry([plain, broken]);
    expect(registry.describe('plain', { n: 1 })).toMatchObject({ generic: true, headline: 'Run the action “plain”' });
    expect(registry.describe('plain', { n: 1 }).instructions).toBe('Carry out this plain action:\n\n{\n  "n": 1\n}');
    expect(registry.describe('broken', { n: 1 })).toMatchObject({ generic: true, headline: 'Run the action “broken”' });
    expect(types.describe('send_email', { to: 'not a list' })).toMatchObject({ generic: true });
    expect(types.describe('no_such_type', { a: 1 })).toMatchObject({ generic: true });
  });

  it('makes what a describer returns safe to show, whatever the schema let through: one-line values, no control or bidi characters, long text cut', () => {
    const lax = defineActionType({
      type: 'lax',
      description: 'x',
      payload: z.strictObject({ name: z.string(), notes: z.string(), tags: z.array(z.string()) }),
      reversible: false,
      describe: (p) => ({
        headline: `Greet ${p.name}`,
        details: [
          { label: 'Name', value: p.name },
          { label: 'Tags', value: p.tags },
          { label: 'Notes', value: p.notes, format: 'text' },
          { label: 'Empty', value: '  ' },
          { label: 'Nothing', value: undefined },
          false,
        ],
      }),
    });
    const registry = new ActionTypeRegistry([lax]);
    const d = registry.describe('lax', { name: 'Eve\r\nBcc: x@y\u202e', tags: ['a\nb'], notes: `ok\r\nline\u0007${'n'.repeat(50)}` }, { maxTextLength: 20 });
    expect(d.headline).toBe('Greet Eve Bcc: x@y');
    expect(d.details).toEqual([
      { label: 'Name', value: 'Eve Bcc: x@y' },
      { label: 'Tags', value: ['a b'] },
      // "ok\nline" and 50 × n is 57 characters: 20 shown.
      { label: 'Notes', value: `ok\nline${'n'.repeat(13)}\n… (37 more characters not shown)`, format: 'text' },
    ]);
    // Without instructions of its own: the headline and the details.
    expect(d.instructions).toMatch(/^Greet Eve Bcc: x@y\.\nName: Eve Bcc: x@y\nTags: a b\nNotes:\n\nok\nline/);
  });

  it('parsed payloads are not parsed again (the worker\'s), and operator instructions name the user\'s folder', () => {
    const d = types.describe('move_file', { from: 'a.txt', to: 'b.txt' }, { parsed: true, about: { id: 'act', spaceId: 'sp', userId: 'us' } });
    expect(d.instructions).toBe('Move the file "a.txt" to "b.txt" inside the user\'s folder (sp/us).');
  });
});
