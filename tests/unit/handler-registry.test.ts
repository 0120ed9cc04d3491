import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { defineActionType } from '../../src/engine/action-types.js';
import type { HandlerConfig } from '../../src/generated/prisma/client.js';
import { defineHandler } from '../../src/handlers/define-handler.js';
import { builtInHandlers, describeChain } from '../../src/handlers/index.js';
import { HandlerRegistry, UnknownHandlerError } from '../../src/handlers/registry.js';
import { PermanentHandlerError, type ActionHandler, type HandlerContext, type HandlerKind, type HandlerServices } from '../../src/handlers/types.js';

const handler = (name: string, kind: HandlerKind, types: string[]): ActionHandler => ({
  name,
  kind,
  types,
  repeat: 'check',
  isConfigured: () => true,
  execute: async () => ({ status: 'completed', provider: name, data: {} }),
});

describe('HandlerRegistry', () => {
  it('orders a chain api → webhook → email → manual, then by registration', () => {
    const registry = new HandlerRegistry([
      handler('manual', 'manual', ['order', 'send_email']),
      handler('order.email', 'email', ['order']),
      handler('order.webhook-b', 'webhook', ['order']),
      handler('order.square', 'api', ['order']),
      handler('order.webhook-a', 'webhook', ['order']),
      handler('order.toast', 'api', ['order']),
      handler('email.smtp', 'api', ['send_email']),
    ]);
    expect(registry.chainFor('order').map((h) => h.name)).toEqual([
      'order.square',
      'order.toast',
      'order.webhook-b',
      'order.webhook-a',
      'order.email',
      'manual',
    ]);
    expect(describeChain(registry, 'send_email')).toEqual(['email.smtp', 'manual']);
    expect(registry.types()).toEqual(['order', 'send_email']);
    // Callers get a copy: changing it does not change the registry.
    registry.chainFor('order').pop();
    expect(registry.chainFor('order')).toHaveLength(6);
  });

  it('refuses two handlers with the same name', () => {
    expect(() => new HandlerRegistry([handler('twin', 'api', ['a']), handler('twin', 'email', ['b'])])).toThrow(
      /handler "twin" is registered twice/,
    );
  });

  it('names an unknown handler', () => {
    const registry = new HandlerRegistry([handler('known', 'api', ['a'])]);
    expect(registry.get('known').name).toBe('known');
    expect(() => registry.get('ghost')).toThrow(UnknownHandlerError);
    expect(() => registry.get('ghost')).toThrow(/unknown handler "ghost"; registered handlers: known/);
  });

  it('gives an empty chain for a type nobody serves', () => {
    const registry = new HandlerRegistry([handler('known', 'api', ['a'])]);
    expect(registry.chainFor('nobody_serves_this')).toEqual([]);
    expect(describeChain(registry, 'nobody_serves_this')).toEqual([]);
  });

  it('built-in handlers: manual ends every built-in chain but make_payment\'s, noop only when enabled', () => {
    const registry = new HandlerRegistry(builtInHandlers({ noop: false }));
    expect(describeChain(registry, 'create_document')).toEqual(['create_document.filesystem', 'manual']);
    expect(describeChain(registry, 'move_file')).toEqual(['move_file.filesystem', 'manual']);
    expect(describeChain(registry, 'send_email')).toEqual(['send_email.smtp', 'manual']);
    expect(describeChain(registry, 'create_calendar_event')).toEqual(['calendar.caldav', 'calendar.ics', 'manual']);
    expect(describeChain(registry, 'order')).toEqual(['order.api', 'order.webhook', 'order.email', 'manual']);
    expect(describeChain(registry, 'make_purchase')).toEqual(['order.api', 'order.webhook', 'order.email', 'manual']);
    // A payment never ends at an operator: only a configured payment integration carries it out.
    expect(describeChain(registry, 'make_payment')).toEqual(['payment.webhook']);
    expect(describeChain(registry, 'noop')).toEqual([]);
    expect(describeChain(new HandlerRegistry(builtInHandlers({ noop: true })), 'noop')).toEqual(['noop']);
  });
});

const room = defineActionType({
  type: 'book_room',
  description: 'Book a room.',
  payload: z.strictObject({ room: z.string(), seats: z.int().default(1) }),
  reversible: true,
});
const lamp = defineActionType({ type: 'buy_lamp', description: 'Buy a lamp.', payload: z.strictObject({ watts: z.number() }), reversible: false });

const SECRET = 'sk_live_do-not-print-me';

/** The context the engine passes (payload already parsed). */
function engineContext(type: string, payload: Record<string, unknown>, config: Partial<HandlerConfig> | null, secrets: Record<string, unknown> | null): HandlerContext {
  return {
    action: { id: 'a1', spaceId: 's1', userId: 'u1', type, payload, priority: 5 },
    idempotencyKey: 'action:a1',
    attempt: 1,
    executionId: 'e1',
    config: config === null ? null : ({ id: 'c1', configKey: '*:h:*', spaceId: null, handler: 'h', provider: '*', enabled: true, settings: {}, secretsCiphertext: null, createdAt: new Date(), updatedAt: new Date(), ...config } as HandlerConfig),
    secrets,
    services: {} as HandlerServices,
    progress: async () => {},
  };
}

describe('defineHandler', () => {
  const seen: unknown[] = [];
  const booking = defineHandler({
    name: 'rooms.acme',
    kind: 'api',
    types: [room, lamp],
    repeat: 'provider',
    settings: z.object({ url: z.url(), retries: z.int().max(5).default(2) }),
    secrets: z.object({ apiKey: z.string().startsWith('sk_').min(10) }),
    rollbackData: z.object({ bookingId: z.string() }),
    async execute(ctx) {
      // Typed by the types served: narrowing on the type narrows the payload (checked by tsc).
      if (ctx.action.type === 'book_room') expectTypeOf(ctx.action.payload).toEqualTypeOf<{ room: string; seats: number }>();
      else expectTypeOf(ctx.action.payload).toEqualTypeOf<{ watts: number }>();
      expectTypeOf(ctx.settings).toEqualTypeOf<{ url: string; retries: number }>();
      expectTypeOf(ctx.secrets).toEqualTypeOf<{ apiKey: string }>();
      seen.push({ payload: ctx.payload, settings: ctx.settings, secretLength: ctx.secrets.apiKey.length });
      return { status: 'completed', provider: 'acme', data: {}, rollbackData: { bookingId: 'b-1' } };
    },
    async rollback(ctx) {
      expectTypeOf(ctx.rollbackData).toEqualTypeOf<{ bookingId: string }>();
      seen.push({ rollback: ctx.rollbackData.bookingId });
    },
  });

  it('is an ActionHandler: name, kind, type names, repeat and its schemas', () => {
    expect(booking).toMatchObject({ name: 'rooms.acme', kind: 'api', types: ['book_room', 'buy_lamp'], repeat: 'provider' });
    expect(booking.settings).toBeDefined();
    expect(booking.secrets).toBeDefined();
    expect(new HandlerRegistry([booking]).chainFor('buy_lamp')).toEqual([booking]);
  });

  it('gives execute the parsed settings and secrets (defaults applied)', async () => {
    seen.length = 0;
    const result = await booking.execute(engineContext('book_room', { room: 'Ada', seats: 1 }, { settings: { url: 'https://rooms.example/api' } }, { apiKey: SECRET }));
    expect(result).toEqual({ status: 'completed', provider: 'acme', data: {}, rollbackData: { bookingId: 'b-1' } });
    expect(seen).toEqual([{ payload: { room: 'Ada', seats: 1 }, settings: { url: 'https://rooms.example/api', retries: 2 }, secretLength: SECRET.length }]);
  });

  it('fails an attempt permanently when settings do not fit, naming each field and rule', async () => {
    const run = booking.execute(engineContext('book_room', { room: 'Ada', seats: 1 }, { settings: { url: 'not a url', retries: 9 } }, { apiKey: SECRET }));
    await expect(run).rejects.toThrow(PermanentHandlerError);
    await expect(booking.execute(engineContext('book_room', { room: 'Ada', seats: 1 }, { settings: { url: 'not a url', retries: 9 } }, { apiKey: SECRET }))).rejects.toThrow(
      /^the configuration of handler rooms\.acme does not fit it: settings\.url: .+; settings\.retries: must be at most 5$/,
    );
  });

  it('names a secret that does not fit, never its value', async () => {
    for (const secrets of [{ apiKey: 'pk_live_do-not-print-me' }, { apiKey: 'sk_short' }, { apiKey: 12345678901 }, null]) {
      const error = await booking.execute(engineContext('book_room', { room: 'Ada', seats: 1 }, { settings: { url: 'https://rooms.example' } }, secrets)).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error, JSON.stringify(secrets)).toBeInstanceOf(PermanentHandlerError);
      const message = (error as Error).message;
      expect(message).toMatch(/secrets\.apiKey: /);
      expect(message).not.toContain('do-not-print-me');
      expect(message).not.toContain('sk_short');
      expect(message).not.toContain('12345678901');
    }
  });

  it('is configured only with a configuration when it declares settings or secrets; always otherwise; or as it says', () => {
    const action = engineContext('book_room', { room: 'Ada' }, null, null).action;
    expect(booking.isConfigured(action, null)).toBe(false);
    expect(booking.isConfigured(action, engineContext('book_room', {}, {}, null).config)).toBe(true);
    const plain = defineHandler({ name: 'p', kind: 'manual', types: [room], repeat: 'check', execute: async () => ({ status: 'waiting', key: 'k', message: 'm' }) });
    expect(plain.isConfigured(action, null)).toBe(true);
    const picky = defineHandler({
      name: 'q',
      kind: 'webhook',
      types: [room],
      repeat: 'provider',
      isConfigured: (a) => a.payload.room === 'Ada',
      execute: async () => ({ status: 'waiting', key: 'k', message: 'm' }),
    });
    expect(picky.isConfigured(action, null)).toBe(true);
    expect(picky.isConfigured({ ...action, payload: { room: 'Bob', seats: 1 } }, null)).toBe(false);
  });

  it('gives rollback the saved data parsed, and refuses saved data that does not fit, naming the field', async () => {
    seen.length = 0;
    const ctx = engineContext('book_room', { room: 'Ada', seats: 1 }, { settings: { url: 'https://rooms.example' } }, { apiKey: SECRET });
    await booking.rollback!({ ...ctx, rollbackData: { bookingId: 'b-1' } });
    expect(seen).toEqual([{ rollback: 'b-1' }]);
    await expect(booking.rollback!({ ...ctx, rollbackData: { booking: 'b-1' } })).rejects.toThrow(
      /^cannot roll back: the data saved when rooms\.acme ran does not fit \(rollbackData\.bookingId: is required\)$/,
    );
    await expect(booking.rollback!({ ...ctx, rollbackData: null })).rejects.toThrow(PermanentHandlerError);
  });

  it('refuses a definition without a valid repeat, kind or types', () => {
    const base = { name: 'x', kind: 'api' as const, types: [room], repeat: 'check' as const, execute: async () => ({ status: 'waiting' as const, key: 'k', message: 'm' }) };
    expect(() => defineHandler({ ...base, repeat: 'maybe' as never })).toThrow(/repeat is one of provider, check, none/);
    expect(() => defineHandler({ ...base, kind: 'carrier-pigeon' as never })).toThrow(/unknown kind/);
    expect(() => defineHandler({ ...base, types: [] })).toThrow(/serves no action type/);
    expect(() => defineHandler({ ...base, types: [room, room] })).toThrow(/lists an action type twice/);
    // The registry checks handlers not made by defineHandler too.
    expect(() => new HandlerRegistry([{ ...handler('y', 'api', ['a']), repeat: undefined as never }])).toThrow(/must say how a repeat is made harmless/);
  });

  it('built-in handlers say how a repeat is made harmless', () => {
    const repeats = Object.fromEntries(builtInHandlers({ noop: true }).map((h) => [h.name, h.repeat]));
    expect(repeats).toEqual({
      'create_document.filesystem': 'check',
      'move_file.filesystem': 'check',
      'send_email.smtp': 'none',
      'calendar.caldav': 'provider',
      'calendar.ics': 'none',
      manual: 'provider',
      noop: 'provider',
      'order.api': 'provider',
      'order.webhook': 'provider',
      'payment.webhook': 'provider',
      'order.email': 'none',
    });
  });
});
