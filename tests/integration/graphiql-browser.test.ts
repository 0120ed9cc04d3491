import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { openOfflineBrowser, type OfflineBrowser } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { postGraphql } from '../helpers/http.js';

const SCREENSHOT = path.join(tmpdir(), 'ae-graphiql-subscription.png');

let t: TestServer;
let browser: OfflineBrowser;
let page: Page;
const keys = {} as Record<'agent' | 'approver', string>;

beforeAll(async () => {
  t = await startTestServer();
  keys.agent = (await createApiKey(t.app.db, { role: 'AGENT', space: 'acme', user: 'alice', email: 'alice@example.com' })).key;
  keys.approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'acme', user: 'alice' })).key;
  // Offline for real: every request to another origin is aborted, as with no internet.
  browser = await openOfflineBrowser(t.url, { width: 1400, height: 900 });
  page = browser.page;
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
});

/** Replaces the whole text of a Monaco editor (no auto-closed brackets: inserted, not typed). */
async function setEditor(selector: string, text: string) {
  const editor = page.locator(selector).first();
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
}

describe('GraphiQL in Chromium, offline', () => {
  it('serves every asset itself under a CSP, and a subscription with the key from the headers editor shows live events', async () => {
    const res = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html' } });
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).not.toMatch(/https?:|unpkg|jsdelivr|cdn/);
    expect(await res.text()).not.toMatch(/https?:\/\/(?!localhost)[a-z]/i);

    const created = (await postGraphql(
      t.url,
      keys.agent,
      'mutation { createAction(input: {type: "move_file", payload: {from: "inbox/a.txt", to: "archive/a.txt"}}) { action { id status } } }',
    )).body;
    const actionId = created.data.createAction.action.id as string;
    expect(created.data.createAction.action.status).toBe('PENDING');

    await page.goto(`${t.url}/graphql`);
    try {
    await page.locator('.graphiql-container').first().waitFor({ timeout: 30_000 });
    await page.locator('.graphiql-query-editor .monaco-editor').first().waitFor({ timeout: 30_000 });

    // The headers editor: its tab, then the key.
    await page.getByRole('button', { name: /^headers$/i }).click();
    await setEditor('.graphiql-editor-tool .monaco-editor >> visible=true', JSON.stringify({ Authorization: `Bearer ${keys.agent}` }));
    await setEditor('.graphiql-query-editor .monaco-editor', `subscription { actionStatus(actionId: "${actionId}") { status } }`);
    await page.locator('.graphiql-execute-button').click();

    const response = page.locator('.graphiql-response');
    await expect.poll(() => response.innerText(), { timeout: 15_000 }).toMatch(/"status":\s*"PENDING"/);
    const approved = (await postGraphql(t.url, keys.approver, 'mutation A($id: ID!) { approveAction(id: $id) { errors { code } } }', { id: actionId })).body;
    expect(approved.data.approveAction.errors).toEqual([]);
    await expect.poll(() => response.innerText(), { timeout: 10_000 }).toMatch(/"status":\s*"APPROVED"/);
      await page.screenshot({ path: SCREENSHOT });
      // Queries go over HTTP with the same headers: stop the subscription, run one.
      await page.locator('.graphiql-execute-button').click();
      await setEditor('.graphiql-query-editor .monaco-editor', 'query Me { me { role } }');
      await page.locator('.graphiql-execute-button').click();
      await expect.poll(() => response.innerText(), { timeout: 10_000 }).toMatch(/"role":\s*"AGENT"/);
    } finally {
      await page.screenshot({ path: SCREENSHOT.replace('.png', '-last.png') });
    }

    const origin = new URL(t.url).host;
    const foreign = browser.requests.filter((u) => !u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).host !== origin);
    expect(foreign).toEqual([]);
    expect(browser.requests.some((u) => u.startsWith(`ws://${origin}/graphql`))).toBe(true);
    expect(browser.cspViolations).toEqual([]);
  }, 90_000);
});
