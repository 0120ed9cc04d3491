import { describe, expect, it } from 'vitest';
import { ActionTypeRegistry, BUILT_IN_ACTION_TYPES } from '../../src/engine/action-types.js';
import { InvalidPayloadError, UnknownTypeError } from '../../src/engine/errors.js';

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
