import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { watchEngineStatements, type StatementWatch } from '../helpers/statements.js';
import { postGraphql } from '../helpers/http.js';

/**
 * Spec §11 / issue #8: at most this many SQL statements per auto-approved action, end to end
 * (createAction → queue → no-op handler → COMPLETED), counted on the engine's own connections.
 */
const STATEMENT_BUDGET = 10;
const MEASURED = 5;

let t: TestServer;
let key: string;
let counted: StatementWatch;

beforeAll(async () => {
  counted = watchEngineStatements();
  // Background rounds (reconciler, expiry sweep, key recheck) are not per action: keep them out of the window.
  t = await startTestServer({
    env: { ENABLE_NOOP_HANDLER: 'true', RECONCILE_SECONDS: '3600', EXPIRY_SWEEP_SECONDS: '3600', WS_KEY_RECHECK_SECONDS: '3600' },
    worker: true,
  });
  ({ key } = await createApiKey(t.app.db, { role: 'AGENT', space: 'budget', user: 'bea' }));
});
afterAll(async () => {
  counted?.stop();
  await t?.close();
});

describe('statement budget', () => {
  it(`an auto-approved no-op action costs at most ${STATEMENT_BUDGET} SQL statements from createAction to its COMPLETED event`, async () => {
    const completed = new Set<string>();
    t.wsClient({ apiKey: key }).subscribe<{ actionEvents: { actionId: string; status: string } }>(
      { query: 'subscription { actionEvents { actionId status } }' },
      { next: (v) => v.data?.actionEvents.status === 'COMPLETED' && completed.add(v.data.actionEvents.actionId), error: () => {}, complete: () => {} },
    );
    const run = async () => {
      const { body } = await postGraphql(t.url, key, 'mutation { createAction(input: { type: "noop", payload: {} }) { action { id status } } }');
      const id = body.data.createAction.action.id as string;
      for (let i = 0; i < 200 && !completed.has(id); i++) await sleep(25);
      expect(completed.has(id)).toBe(true);
    };
    // Warm-up: the key lookup, the rules and the handler configuration are read once, then cached.
    await run();
    await run();
    await sleep(300);
    counted.reset();
    for (let i = 0; i < MEASURED; i++) await run();
    // Whatever the path sends after the COMPLETED event is published counts too.
    await sleep(300);
    const perAction = counted.count / MEASURED;
    if (perAction > STATEMENT_BUDGET) console.error(counted.texts.join('\n'));
    expect(perAction).toBeGreaterThan(0);
    expect(perAction).toBeLessThanOrEqual(STATEMENT_BUDGET);
  }, 60_000);
});
