import { describe, expect, it } from 'vitest';
import { builtInHandlers, describeChain } from '../../src/handlers/index.js';
import { HandlerRegistry, UnknownHandlerError } from '../../src/handlers/registry.js';
import type { ActionHandler, HandlerKind } from '../../src/handlers/types.js';

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

  it('built-in handlers: manual ends every built-in chain, noop only when enabled', () => {
    const registry = new HandlerRegistry(builtInHandlers({ noop: false }));
    expect(describeChain(registry, 'create_document')).toEqual(['create-document.filesystem', 'manual']);
    expect(describeChain(registry, 'order')).toEqual(['manual']);
    expect(describeChain(registry, 'noop')).toEqual([]);
    expect(describeChain(new HandlerRegistry(builtInHandlers({ noop: true })), 'noop')).toEqual(['noop']);
  });
});
