import { describe, expect, it } from 'vitest';
import { providerOf, rankHandlerConfigs } from '../../src/engine/config-cache.js';
import type { HandlerConfig } from '../../src/generated/prisma/client.js';

const SPACE = '0b6a3c3e-6f1e-4d59-9a43-2f5c1f0c9a01';

function row(handler: string, spaceId: string | null, provider: string): HandlerConfig {
  const now = new Date(0);
  return {
    id: `${handler}|${spaceId ?? '*'}|${provider}`,
    configKey: `${spaceId ?? '*'}:${handler}:${provider}`,
    spaceId,
    handler,
    provider,
    enabled: true,
    settings: {},
    secretsCiphertext: null,
    createdAt: now,
    updatedAt: now,
  };
}

/** The four places a configuration can live, most specific first. */
const SLOTS = [
  { name: 'space, named provider', spaceId: SPACE, provider: 'acme' },
  { name: 'space, *', spaceId: SPACE, provider: '*' },
  { name: 'global, named provider', spaceId: null, provider: 'acme' },
  { name: 'global, *', spaceId: null, provider: '*' },
] as const;

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [items.slice()];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

describe('rankHandlerConfigs (most specific configuration wins)', () => {
  // Every non-empty subset of the four slots, in every order the database might return them.
  for (let mask = 1; mask < 1 << SLOTS.length; mask++) {
    const present = SLOTS.filter((_, i) => mask & (1 << i));
    const expected = present[0]!;
    it(`with ${present.map((s) => s.name).join(' + ')}: "${expected.name}" wins, whatever the row order`, () => {
      for (const order of permutations(present)) {
        const ranked = rankHandlerConfigs(
          order.map((s) => row('manual', s.spaceId, s.provider)),
          'acme',
        );
        expect(ranked.size).toBe(1);
        expect(ranked.get('manual')?.id).toBe(`manual|${expected.spaceId ?? '*'}|${expected.provider}`);
      }
    });
  }

  it('ranks each handler on its own', () => {
    const ranked = rankHandlerConfigs(
      [row('manual', null, '*'), row('webhook', SPACE, '*'), row('webhook', null, 'acme'), row('manual', null, 'acme')],
      'acme',
    );
    expect(Object.fromEntries([...ranked].map(([handler, config]) => [handler, config.id]))).toEqual({
      manual: 'manual|*|acme',
      webhook: `webhook|${SPACE}|*`,
    });
  });

  it('for an action naming no provider (`*`), the space\'s own `*` row beats the global one', () => {
    const ranked = rankHandlerConfigs([row('manual', null, '*'), row('manual', SPACE, '*')], '*');
    expect(ranked.get('manual')?.spaceId).toBe(SPACE);
  });

  it('no rows: no configurations', () => {
    expect(rankHandlerConfigs([], 'acme').size).toBe(0);
  });
});

describe('providerOf', () => {
  it("is the payload's provider when it is a string, else *", () => {
    expect(providerOf({ provider: 'acme' })).toBe('acme');
    expect(providerOf({ provider: 42 })).toBe('*');
    expect(providerOf({})).toBe('*');
    expect(providerOf(null)).toBe('*');
    expect(providerOf(undefined)).toBe('*');
  });
});
