import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { consoleSignIn, consoleSignOut, openOfflineBrowser, type OfflineBrowser } from '../helpers/browser.js';
import { graphqlData } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const DIST = path.resolve('dist/console/index.html');
// SCREENSHOTS=1 writes them into docs/screenshots (the README shows them); else a temp folder.
const SHOTS = process.env.SCREENSHOTS === '1' ? path.resolve('docs/screenshots') : path.join(tmpdir(), 'ae-console-shots');

let t: TestServer;
let browser: OfflineBrowser;
let page: Page;
const keys = {} as Record<'admin' | 'agent' | 'approver' | 'operator' | 'analyst', string>;

beforeAll(async () => {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: npm ci (or npm run generate) builds the console`);
  await mkdir(SHOTS, { recursive: true });
  t = await startTestServer({ worker: true });
  keys.admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'acme' })).key;
  keys.agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'acme', user: 'alice', email: 'alice@example.com' })).key;
  keys.approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'acme', user: 'alice' })).key;
  keys.operator = (await createApiKey(t.app.db, { role: 'OPERATOR', space: 'acme' })).key;
  keys.analyst = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'acme' })).key;
  const rule = await gql(
    'mutation($input: SafetyRuleInput!) { upsertSafetyRule(input: $input) { errors { code message } } }',
    { input: { actionType: 'create_document', kind: 'REQUIRES_APPROVAL' } },
    keys.admin,
  );
  expect(rule.upsertSafetyRule.errors).toEqual([]);
  // Offline for real: every request to another origin is aborted, as with no internet.
  browser = await openOfflineBrowser(t.url, { width: 1280, height: 900 });
  page = browser.page;
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
});

const gql = (query: string, variables: Record<string, unknown>, key: string) => graphqlData(t.url, key, query, variables);

const CREATE = 'mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status headline } errors { code message } } }';

const signIn = (key: string) => consoleSignIn(page, t.url, key);

async function signOut() {
  await consoleSignOut(page);
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
}

async function shoot(name: string) {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(SHOTS, `${name}-390.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: path.join(SHOTS, `${name}-desktop.png`), fullPage: true });
}

describe('the console in Chromium, offline', () => {
  it('serves / as a redirect and the console under a strict CSP', async () => {
    const root = await fetch(`${t.url}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/console/');
    const res = await fetch(`${t.url}/console/`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(html).not.toMatch(/https?:\/\//);
    expect((await fetch(`${t.url}/console/assets/..%2F..%2Fpackage.json`)).status).toBe(404);
  });

  it('an approver sees a new action appear live, approves it with an edit, and watches it complete with its receipt', async () => {
    await signIn(keys.approver);
    await page.getByRole('heading', { name: /Waiting for your decision/ }).waitFor();
    await page.getByText('Nothing is waiting for you.').waitFor({ timeout: 10_000 }).catch(async (e) => {
      await page.screenshot({ path: path.join(SHOTS, 'debug.png') });
      throw e;
    });
    expect(await page.evaluate(() => document.cookie)).toBe('');

    const created = (await gql(CREATE, { input: { type: 'create_document', payload: { title: 'Q3 notes', content: 'Revenue grew.', format: 'markdown' } } }, keys.agent)).createAction;
    expect(created.errors).toEqual([]);
    expect(created.action.status).toBe('PENDING');
    const headline = created.action.headline as string;
    expect(headline).toMatch(/Q3 notes/);

    // Appears without a reload, named by its headline.
    const item = page.getByRole('article', { name: headline });
    await item.waitFor({ timeout: 15_000 });
    await expect.poll(() => item.innerText()).toMatch(/Revenue grew\./);
    await expect.poll(() => item.innerText()).toMatch(/1 of 1 approval still needed/);
    await shoot('inbox');

    await item.getByRole('button', { name: 'Approve with edits', exact: true }).click();
    const title = item.getByLabel(/^title/);
    expect(await title.inputValue()).toBe('Q3 notes');
    await title.fill('Q3 notes (final)');
    await shoot('approve-with-edits');
    await item.getByRole('button', { name: 'Approve with edits', exact: true }).click();

    // Its live timeline below: revision 2, executed, COMPLETED with a signed receipt, no reload.
    const timeline = page.getByRole('article', { name: /Q3 notes \(final\)/ });
    await timeline.waitFor({ timeout: 15_000 });
    await expect.poll(() => timeline.innerText(), { timeout: 20_000 }).toMatch(/Status: COMPLETED/);
    await expect.poll(() => timeline.innerText(), { timeout: 10_000 }).toMatch(/Receipt \S+ from .* signed \(key /);
    expect(await timeline.innerText()).toMatch(/create_document\.filesystem.*attempt 1/);
    expect(await page.getByRole('article', { name: headline }).count()).toBe(0);
    await shoot('completed');

    const action = (await gql('query($id: ID!) { action(id: $id) { status revision payload } }', { id: created.action.id }, keys.approver)).action;
    expect(action).toMatchObject({ status: 'COMPLETED', revision: 2, payload: { title: 'Q3 notes (final)' } });
    await signOut();
  }, 90_000);

  it('an operator completes a manual task', async () => {
    const created = (await gql(CREATE, { input: { type: 'order', payload: { provider: 'corner-deli', items: [{ name: 'Bagel', price: 3.5, quantity: 2 }] } } }, keys.agent)).createAction;
    expect(created.errors).toEqual([]);
    const approved = await gql('mutation($id: ID!) { approveAction(id: $id) { errors { code } } }', { id: created.action.id }, keys.approver);
    expect(approved.approveAction.errors).toEqual([]);

    await signIn(keys.operator);
    const item = page.getByRole('article', { name: created.action.headline });
    await item.waitFor({ timeout: 20_000 });
    await expect.poll(() => item.innerText()).toMatch(/corner-deli/);
    await item.getByLabel(/^Reference/).fill('CD-42');
    await shoot('manual-task');
    await item.getByRole('button', { name: 'Complete', exact: true }).click();
    await page.getByRole('status').filter({ hasText: 'Completed:' }).waitFor();
    expect(await page.getByRole('article', { name: created.action.headline }).count()).toBe(0);

    const action = (await gql('query($id: ID!) { action(id: $id) { status receipts { handler externalRef } } }', { id: created.action.id }, keys.admin)).action;
    expect(action.status).toBe('COMPLETED');
    expect(action.receipts).toEqual([{ handler: 'manual', externalRef: 'CD-42' }]);
    await signOut();
  }, 60_000);

  it('an analyst sees the audit chain verify', async () => {
    await signIn(keys.analyst);
    // Analysts land on the overview, which says whether the chain verifies; the Audit page has the detail.
    await page.getByRole('heading', { name: 'Overview', level: 2 }).waitFor();
    await page.getByText(/Chain verified: \d+ entries/).waitFor({ timeout: 20_000 });
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('button', { name: 'Audit', exact: true }).click();
    await page.getByText(/Chain verified: \d+ entries/).waitFor({ timeout: 20_000 });
    await page.getByText('action.approved').first().waitFor();
    await shoot('audit');
    await signOut();

    const origin = new URL(t.url).host;
    const foreign = browser.requests.filter((u) => !u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).host !== origin);
    expect(foreign).toEqual([]);
    expect(browser.requests.some((u) => u.startsWith(`ws://${origin}/graphql`))).toBe(true);
    expect(browser.cspViolations).toEqual([]);
  }, 60_000);
});
