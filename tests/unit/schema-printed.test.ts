import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { printSortedSchema } from '../../src/resolvers/index.js';

describe('schema/schema.graphql', () => {
  it('is what the Pothos schema prints today (run `npm run schema:print` after changing the API)', () => {
    const checkedIn = readFileSync(new URL('../../schema/schema.graphql', import.meta.url), 'utf8');
    expect(checkedIn, 'schema/schema.graphql is stale: run `npm run schema:print` and commit it').toBe(printSortedSchema());
  });
});
