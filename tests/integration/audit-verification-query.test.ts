import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' } });
});
afterAll(async () => {
  await t?.close();
});

async function gql(query: string, key: string) {
  const res = await fetch(`${t.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ query }) });
  return (await res.json()) as { data?: any; errors?: Array<{ extensions?: { code?: string } }> };
}

describe('auditVerification', () => {
  it('says whether the trail verifies, with counts of the caller\'s own space only; agents may not ask', async () => {
    const busy = (await createApiKey(t.app.db, { role: 'AGENT', space: 'busy', user: 'bo' })).key;
    const analystA = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'quiet' })).key;
    for (let i = 0; i < 5; i++) {
      const out = await gql(`mutation { createAction(input: { type: "create_document", payload: { title: "D${i}", content: "x" } }) { errors { code } } }`, busy);
      expect(out.data.createAction.errors).toEqual([]);
    }
    const quietSpace = await t.app.db.space.findUniqueOrThrow({ where: { slug: 'quiet' } });
    const own = await t.app.db.auditEntry.count({ where: { spaceId: quietSpace.id } });
    const all = await t.app.db.auditEntry.count();
    expect(all).toBeGreaterThan(own);

    const seen = (await gql('{ auditVerification { ok entriesChecked sealed unsealed problem } }', analystA)).data.auditVerification;
    expect(seen.ok).toBe(true);
    expect(seen.problem).toBeNull();
    expect(seen.entriesChecked).toBe(own);
    expect(seen.sealed + seen.unsealed).toBe(own);

    expect((await gql('{ auditVerification { ok } }', busy)).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});
