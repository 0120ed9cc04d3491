import { setTimeout as sleep } from 'node:timers/promises';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { graphqlData } from '../helpers/http.js';
import { consoleSignIn, consoleSignOut, openOfflineBrowser, type OfflineBrowser } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// Every list in the console reaches its end: more pending actions, open tasks or audit entries
// than one page are shown with "Show more" / "Older entries", never silently cut.
// Over the server's 100-per-page cap, so "Show more" must page by cursor: inbox pages of 20.
const PENDING = 105;
const TASKS = 55; // task pages of 50

let t: TestServer;
let browser: OfflineBrowser;
let page: Page;
const keys = {} as Record<'admin' | 'agent' | 'approver' | 'operator' | 'analyst', string>;

const CREATE = 'mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status } errors { code message } } }';
const RULE = 'mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { errors { code message } } }';

beforeAll(async () => {
  // More approval browser.requests for one user than the default hourly limit allows.
  t = await startTestServer({ worker: true, env: { RECONCILE_SECONDS: '3600', APPROVAL_REQUESTS_PER_HOUR: '1000' } });
  keys.admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'paging' })).key;
  keys.agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'paging', user: 'pia' })).key;
  keys.approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'paging', user: 'pia' })).key;
  keys.operator = (await createApiKey(t.app.db, { role: 'OPERATOR', space: 'paging' })).key;
  keys.analyst = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'paging' })).key;
  // Documents wait for approval; orders run at once, and with no integration each opens a manual task.
  expect((await graphqlData(t.url, keys.admin, RULE, { input: { actionType: 'create_document', kind: 'REQUIRES_APPROVAL' } })).upsertSafetyRule.errors).toEqual([]);
  expect((await graphqlData(t.url, keys.admin, RULE, { input: { actionType: 'order', kind: 'REQUIRES_APPROVAL', enabled: false } })).upsertSafetyRule.errors).toEqual([]);
  for (let i = 1; i <= PENDING; i++) {
    const out = (await graphqlData(t.url, keys.agent, CREATE, { input: { type: 'create_document', payload: { title: `Memo ${i}`, content: 'x' } } })).createAction;
    expect(out.errors).toEqual([]);
    expect(out.action.status).toBe('PENDING');
  }
  for (let i = 1; i <= TASKS; i++) {
    const out = (await graphqlData(t.url, keys.agent, CREATE, { input: { type: 'order', payload: { provider: 'deli', items: [{ name: `Bagel ${i}`, price: 1, quantity: 1 }] } } })).createAction;
    expect(out.errors).toEqual([]);
  }
  for (const until = Date.now() + 60_000; (await t.app.db.manualTask.count({ where: { status: 'OPEN' } })) < TASKS; await sleep(100)) {
    if (Date.now() > until) throw new Error('the orders did not all reach a manual task');
  }
  // Offline for real: every request to another origin is aborted, as with no internet.
  browser = await openOfflineBrowser(t.url, { width: 1280, height: 900 });
  page = browser.page;
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
});

async function signIn(key: string, section: string) {
  await consoleSignIn(page, t.url, key);
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('button', { name: section, exact: true }).click();
}

const signOut = () => consoleSignOut(page);

describe('console lists reach their end', () => {
  it(`the approver's inbox shows 20 of ${PENDING} pending actions, then all of them with "Show more", past the server's 100-item page`, async () => {
    await signIn(keys.approver, 'Inbox');
    const cards = page.locator('section[aria-labelledby="inbox-title"] ul.cards > *');
    await expect.poll(() => cards.count(), { timeout: 20_000 }).toBe(20);
    for (let shown = 20; shown < PENDING; shown += 20) {
      await page.getByRole('button', { name: 'Show more' }).click();
      await expect.poll(() => cards.count(), { timeout: 20_000 }).toBe(Math.min(PENDING, shown + 20));
    }
    await expect.poll(() => page.getByRole('button', { name: 'Show more' }).count()).toBe(0);
    await expect.poll(() => page.locator('#inbox-title').innerText()).toMatch(new RegExp(`\\(${PENDING}\\)`));
    // The oldest one is there too.
    await page.getByRole('article', { name: /Memo 1\W/ }).waitFor();
    await signOut();
  }, 90_000);

  it(`the operator's queue shows 50 of ${TASKS} open tasks, then all of them with "Show more"`, async () => {
    await signIn(keys.operator, 'Manual tasks');
    const cards = page.locator('section[aria-labelledby="tasks-title"] ul.cards > *');
    await expect.poll(() => cards.count(), { timeout: 20_000 }).toBe(50);
    await page.getByRole('button', { name: 'Show more' }).click();
    await expect.poll(() => cards.count(), { timeout: 20_000 }).toBe(TASKS);
    await expect.poll(() => page.getByRole('button', { name: 'Show more' }).count()).toBe(0);
    await signOut();
  }, 60_000);

  it(`the actions list shows 30 at a time up to all ${PENDING + TASKS}, each "Show more" adding 30`, async () => {
    await signIn(keys.admin, 'Actions');
    const rows = page.locator('section[aria-labelledby="actions-title"] ul.rows > li');
    await expect.poll(() => rows.count(), { timeout: 20_000 }).toBe(30);
    for (let shown = 30; shown < PENDING + TASKS; shown += 30) {
      await page.getByRole('button', { name: 'Show more' }).click();
      await expect.poll(() => rows.count(), { timeout: 20_000 }).toBe(Math.min(PENDING + TASKS, shown + 30));
    }
    await expect.poll(() => page.getByRole('button', { name: 'Show more' }).count()).toBe(0);
    await signOut();
  }, 60_000);

  it('the analyst pages back through the audit log with "Older entries" until the first entry', async () => {
    await signIn(keys.analyst, 'Audit');
    const entries = page.locator('ol.audit > li');
    await expect.poll(() => entries.count(), { timeout: 20_000 }).toBe(50);
    const { spaceId } = await t.app.db.principal.findFirstOrThrow({ where: { role: 'ANALYST', space: { slug: 'paging' } } });
    const total = await t.app.db.auditEntry.count({ where: { spaceId } });
    expect(total).toBeGreaterThan(100);
    for (let shown = 50; shown < total; shown = Math.min(total, shown + 50)) {
      await page.getByRole('button', { name: 'Older entries' }).click();
      await expect.poll(() => entries.count(), { timeout: 20_000 }).toBe(Math.min(total, shown + 50));
    }
    expect(await page.getByRole('button', { name: 'Older entries' }).count()).toBe(0);
    await signOut();
  }, 90_000);
});
