import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer({ env: { RECONCILE_SECONDS: '3600' } });
});
afterAll(async () => {
  await t?.close();
});

describe('auditVerification', () => {
  it('says whether the trail verifies, with counts of the caller\'s own space only; agents may not ask', async () => {
    const busy = (await createApiKey(t.app.db, { role: 'AGENT', space: 'busy', user: 'bo' })).key;
    const analystA = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'quiet' })).key;
    for (let i = 0; i < 5; i++) {
      const out = (await postGraphql(t.url, busy, `mutation { createAction(input: { type: "create_document", payload: { title: "D${i}", content: "x" } }) { errors { code } } }`)).body;
      expect(out.data.createAction.errors).toEqual([]);
    }
    const quietSpace = await t.app.db.space.findUniqueOrThrow({ where: { slug: 'quiet' } });
    const own = await t.app.db.auditEntry.count({ where: { spaceId: quietSpace.id } });
    const all = await t.app.db.auditEntry.count();
    expect(all).toBeGreaterThan(own);

    const seen = (await postGraphql(t.url, analystA, '{ auditVerification { ok entriesChecked sealed unsealed problem } }')).body.data.auditVerification;
    expect(seen.ok).toBe(true);
    expect(seen.problem).toBeNull();
    expect(seen.entriesChecked).toBe(own);
    expect(seen.sealed + seen.unsealed).toBe(own);

    expect((await postGraphql(t.url, busy, '{ auditVerification { ok } }')).body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});
