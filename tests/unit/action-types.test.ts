import { describe, expect, it } from 'vitest';
import { ActionTypeRegistry, BUILT_IN_ACTION_TYPES, USER_PATH_PATTERN } from '../../src/engine/action-types.js';
import { InvalidPayloadError, PayloadErrors, UnknownTypeError } from '../../src/engine/errors.js';
import { isReversible } from '../../src/engine/rollback.js';
import { manualHandler } from '../../src/handlers/manual.js';
import { HandlerRegistry } from '../../src/handlers/registry.js';
import type { ActionHandler } from '../../src/handlers/types.js';

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
    expect(move.properties.from!.pattern).toBe(USER_PATH_PATTERN);
    expect(move.properties.from!.description).toMatch(/relative/);
    const purchase = types.jsonSchema('make_purchase') as { required: string[]; properties: Record<string, { description?: string }> };
    expect(purchase.required).toContain('currency');
    expect(purchase.properties.total!.description).toMatch(/price × quantity/);
  });

  it('the path pattern accepts exactly the paths the server accepts', () => {
    const pattern = new RegExp(USER_PATH_PATTERN);
    for (const p of ['a/b.txt', 'notes', 'a..b', '..a/x', './a', '/etc/passwd', '\\x', 'a/../b', '..', 'a/..', 'a\\..\\b', 'a\u0000b']) {
      let accepted = true;
      try {
        types.validate('move_file', { from: p, to: 'elsewhere' });
      } catch {
        accepted = false;
      }
      expect(pattern.test(p), p).toBe(accepted);
    }
  });
});

describe('reversible comes from the handler chain', () => {
  const undoable = { name: 'undoable', kind: 'api', types: ['create_document'], isConfigured: () => true, execute: async () => ({ status: 'waiting', message: '' }), rollback: async () => {} } as ActionHandler;
  const registry = new HandlerRegistry([undoable, manualHandler]);

  it('is true only when the type allows it and a handler of its chain implements rollback', () => {
    expect(isReversible(types, registry, 'create_document')).toBe(true);
    // move_file allows rollback, but its only handler (manual) cannot undo.
    expect(isReversible(types, registry, 'move_file')).toBe(false);
    expect(isReversible(types, registry, 'send_email')).toBe(false);
  });
});
