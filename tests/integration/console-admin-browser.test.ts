import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/engine/api-keys.js';
import { consoleSignIn, openOfflineBrowser, type OfflineBrowser } from '../helpers/browser.js';
import { graphqlData, postGraphql } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// The admin pages and the overview in Chromium (Debian's /usr/bin/chromium, never a downloaded
// browser), offline: everything the page asks of another host is aborted.
const DIST = path.resolve('dist/console/index.html');
// SCREENSHOTS=1 writes them into docs/screenshots (the README shows them); else a temp folder.
const SHOTS = process.env.SCREENSHOTS === '1' ? path.resolve('docs/screenshots') : path.join(tmpdir(), 'ae-console-shots');

let t: TestServer;
let browser: OfflineBrowser;
let page: Page;
let receiver: Server;
let receiverUrl: string;
const received: string[] = [];
const keys = {} as Record<'admin' | 'agent' | 'approver' | 'analyst', string>;
let aliceId: string;

beforeAll(async () => {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: npm ci (or npm run generate) builds the console`);
  await mkdir(SHOTS, { recursive: true });
  t = await startTestServer({ worker: true });
  keys.admin = (await createApiKey(t.app.db, { role: 'ADMIN', space: 'acme' })).key;
  const agent = await createApiKey(t.app.db, { role: 'AGENT', space: 'acme', user: 'alice', email: 'alice@example.com' });
  keys.agent = agent.key;
  aliceId = agent.userId!;
  keys.approver = (await createApiKey(t.app.db, { role: 'APPROVER', space: 'acme', user: 'alice' })).key;
  keys.analyst = (await createApiKey(t.app.db, { role: 'ANALYST', space: 'acme' })).key;
  // A webhook receiver on this machine: answers 204 to every delivery.
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received.push(String(req.headers['webhook-id']));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/action-engine`;

  // Offline for real: every request to another origin is aborted, as with no internet.
  browser = await openOfflineBrowser(t.url, { width: 1280, height: 900 });
  page = browser.page;
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

const gql = (query: string, variables: Record<string, unknown>, key: string) => graphqlData(t.url, key, query, variables);

const CREATE = 'mutation($input: CreateActionInput!) { createAction(input: $input) { action { id status headline } errors { code message } } }';

const signIn = (key: string) => consoleSignIn(page, t.url, key);

async function open(tab: string, heading: string | RegExp) {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('button', { name: tab, exact: true }).click();
  await page.getByRole('heading', { name: heading, level: 2 }).first().waitFor();
}

async function shoot(name: string) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300); // the charts redraw on resize
  await page.screenshot({ path: path.join(SHOTS, `${name}-390.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(SHOTS, `${name}-desktop.png`), fullPage: true });
}

/** Every text, attribute and form value in the page, to prove a secret is nowhere in it. */
async function everythingInThePage(): Promise<string> {
  return page.evaluate(() => {
    const values = [...document.querySelectorAll('input, textarea, select')].map((el) => (el as HTMLInputElement).value);
    return `${document.documentElement.outerHTML}\n${values.join('\n')}\n${JSON.stringify(sessionStorage)}`;
  });
}

/** The card (list item) whose accessible name matches. */
const card = (name: string | RegExp): Locator => page.getByRole('listitem', { name });

describe('the console admin pages in Chromium, offline', () => {
  it('an admin creates a rule with a condition, tests the condition live, and sees a bad condition refused next to its field', async () => {
    await signIn(keys.admin);
    // Admins land on the overview.
    await page.getByRole('heading', { name: 'Overview', level: 2 }).waitFor();
    await open('Safety rules', 'Safety rules');
    await page.getByRole('button', { name: 'New rule' }).click();
    await page.getByLabel('Action type').selectOption('send_email');
    await page.getByLabel('Kind').selectOption('REQUIRES_APPROVAL');

    // The sample payload starts as the type's own example.
    const sample = page.getByLabel('Sample payload (JSON)');
    expect(JSON.parse(await sample.inputValue())).toMatchObject({ subject: 'Quarterly report' });
    const condition = page.getByLabel('Condition');
    const result = page.locator('.test-result');

    await condition.fill('payload.subject.contains("report") && size(payload.to) > 0');
    await page.getByRole('button', { name: 'Test condition' }).click();
    await expect.poll(() => result.innerText()).toBe('Result: matches');

    await sample.fill(JSON.stringify({ to: ['ada@example.com'], subject: 'Lunch on Friday?', body: 'Pizza?' }));
    await page.getByRole('button', { name: 'Test condition' }).click();
    await expect.poll(() => result.innerText()).toMatch(/^Result: does not match/);

    await condition.fill('payload.subject.contains("report") &&');
    await page.getByRole('button', { name: 'Test condition' }).click();
    await expect.poll(() => result.innerText()).toMatch(/^Result: error\. INVALID_CONDITION: .*line 1, column \d+/);

    // Saving the bad condition: refused, the message under the condition field, which is marked invalid.
    await page.getByRole('button', { name: 'Save rule' }).click();
    const fieldError = page.locator('#rule-condition-error');
    await expect.poll(() => fieldError.innerText()).toMatch(/line 1, column \d+/);
    expect(await condition.getAttribute('aria-invalid')).toBe('true');
    expect(await condition.getAttribute('aria-describedby')).toContain('rule-condition-error');
    await shoot('admin-rule-error');

    await condition.fill('payload.subject.contains("report")');
    await page.getByLabel('Approvals required').fill('2');
    await sample.fill(JSON.stringify({ to: ['ada@example.com'], subject: 'Monthly report', body: 'Attached.' }));
    await page.getByRole('button', { name: 'Test condition' }).click();
    await expect.poll(() => result.innerText()).toBe('Result: matches');
    await shoot('admin-rules-edit');
    await page.getByRole('button', { name: 'Save rule' }).click();
    await page.getByRole('status').filter({ hasText: /Saved: send_email, requires approval when payload\.subject\.contains\("report"\)/ }).waitFor();
    const saved = card(/^Requires approval$/).filter({ hasText: 'payload.subject.contains("report")' });
    await saved.waitFor();
    expect(await saved.innerText()).toMatch(/this space[\s\S]*2 distinct approvers/);
    await shoot('admin-rules');

    // The rule is in force: a report needs two approvals, lunch does not need any.
    const report = (await gql(CREATE, { input: { type: 'send_email', payload: { to: ['ada@example.com'], subject: 'Q3 report', body: 'x' } } }, keys.agent)).createAction;
    expect(report.action.status).toBe('PENDING');
    const rules = (await gql('{ safetyRules(type: "send_email") { kind condition approvalsRequired spaceId } }', {}, keys.admin)).safetyRules;
    expect(rules).toContainEqual(expect.objectContaining({ kind: 'REQUIRES_APPROVAL', condition: 'payload.subject.contains("report")', approvalsRequired: 2 }));
  }, 90_000);

  it('an admin creates an API key that is shown once, revokes it, and the key then fails', async () => {
    await open('API keys', 'API keys');
    await page.getByLabel('Role').selectOption('AGENT');
    await page.getByLabel('Name', { exact: true }).fill('ci bot');
    await page.getByLabel(/^User handle/).fill('bob');
    await page.getByRole('button', { name: 'Create key' }).click();
    const shown = page.getByLabel('New key');
    await shown.waitFor();
    const key = await shown.inputValue();
    expect(key).toMatch(/^ae_/);
    expect(await page.getByRole('region', { name: 'New API key' }).innerText()).toMatch(/you will not see it again/i);
    await page.getByRole('button', { name: 'Copy key' }).waitFor();
    expect((await gql('{ me { role user { handle } } }', {}, key)).me).toEqual({ role: 'AGENT', user: { handle: 'bob' } });

    await page.getByRole('button', { name: 'Done' }).click();
    await shown.waitFor({ state: 'detached' });
    expect(await everythingInThePage()).not.toContain(key);

    const item = card(/ci bot/);
    await item.waitFor();
    await shoot('admin-keys');
    // By keyboard: Enter on "Revoke" asks first, with the focus on "Confirm revoke"; Enter again revokes.
    await item.getByRole('button', { name: 'Revoke' }).focus();
    await page.keyboard.press('Enter');
    const confirm = item.getByRole('button', { name: 'Confirm revoke' });
    await expect.poll(() => confirm.evaluate((el) => el === document.activeElement)).toBe(true);
    expect(await item.getByRole('group').getAttribute('aria-label')).toMatch(/^Revoke key ae_\S+…\? Anything using it stops working at once\.$/);
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: /revoked: it no longer authenticates/ }).waitFor();
    await expect.poll(() => item.innerText()).toMatch(/revoked/);
    expect(await item.getByRole('button', { name: /Revoke/ }).count()).toBe(0);

    const refused = await postGraphql(t.url, key, '{ me { role } }', {});
    expect(refused.status).toBe(401);
    expect(refused.body.data?.me).toBeUndefined();
  }, 60_000);

  it('an admin sets a handler secret: shown as set, its value nowhere in the page; a secret-looking setting is refused at its field', async () => {
    const SECRET = 'sk-live-NEVER-SHOWN-4242';
    await open('Handlers', 'Handler configuration');
    await page.getByRole('button', { name: 'New configuration' }).click();
    await page.getByLabel('Handler').selectOption('order.api');
    await page.getByLabel('Provider').fill('pizza-place');
    const settings = page.getByLabel('Settings (JSON)');
    await settings.fill(JSON.stringify({ baseUrl: 'http://127.0.0.1:9/', token: 'abc' }));
    await page.getByLabel('Secret name').fill('apiKey');
    await page.getByLabel('Value of apiKey').fill(SECRET);
    await page.getByRole('button', { name: 'Save configuration' }).click();
    await expect.poll(() => page.locator('#config-settings-error').innerText()).toMatch(/token looks like a secret/);
    expect(await settings.getAttribute('aria-invalid')).toBe('true');

    await settings.fill(JSON.stringify({ baseUrl: 'http://127.0.0.1:9/' }, null, 2));
    await page.getByRole('button', { name: 'Save configuration' }).click();
    await page.getByRole('status').filter({ hasText: 'Saved order.api for pizza-place.' }).waitFor();
    const item = card('order.api · pizza-place');
    await item.waitFor();
    expect(await item.innerText()).toMatch(/apiKey:\s*set/);
    expect(await everythingInThePage()).not.toContain(SECRET);

    // Editing: the secret's field is empty, says "set", and the value is still nowhere.
    await item.getByRole('button', { name: 'Edit' }).click();
    const value = page.getByLabel('Value of apiKey');
    expect(await value.inputValue()).toBe('');
    expect(await value.getAttribute('type')).toBe('password');
    expect(await value.getAttribute('placeholder')).toBe('set (not shown)');
    expect(await everythingInThePage()).not.toContain(SECRET);
    await shoot('admin-handlers');
    await page.getByRole('button', { name: 'Cancel' }).click();

    const configs = (await gql('{ handlerConfigs(handler: "order.api") { provider hasSecrets secretNames settings } }', {}, keys.admin)).handlerConfigs;
    expect(configs).toEqual([{ provider: 'pizza-place', hasSecrets: true, secretNames: ['apiKey'], settings: { baseUrl: 'http://127.0.0.1:9/' } }]);
  }, 60_000);

  it('an admin adds a webhook endpoint and reads its delivery log', async () => {
    await open('Webhooks', 'Webhook endpoints');
    await page.getByRole('button', { name: 'New endpoint' }).click();
    await page.getByLabel('URL').fill(receiverUrl);
    await page.getByRole('button', { name: 'Save endpoint' }).click();
    // No secret: refused, next to the secret field.
    await expect.poll(() => page.locator('#endpoint-secret-error').innerText()).toMatch(/whsec_/);
    await page.getByRole('button', { name: 'Generate secret' }).click();
    const secret = await page.getByLabel('Signing secret').inputValue();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    await page.getByLabel('completed').check();
    await page.getByLabel('pending').check();
    await page.getByRole('button', { name: 'Save endpoint' }).click();
    await page.getByRole('status').filter({ hasText: `Saved ${receiverUrl}.` }).waitFor();
    const item = card(receiverUrl);
    await item.waitFor();
    expect(await item.innerText()).toMatch(/Sends: pending, completed/);
    expect(await everythingInThePage()).not.toContain(secret);

    const created = (await gql(CREATE, { input: { type: 'create_document', payload: { title: 'Hook me', content: 'x' } } }, keys.agent)).createAction;
    expect(created.errors).toEqual([]);
    await expect.poll(() => received.length, { timeout: 20_000 }).toBeGreaterThan(0);
    await item.getByRole('button', { name: 'Delivery log' }).click();
    const log = item.locator('.delivery-log');
    await expect
      .poll(
        async () => {
          await log.getByRole('button', { name: 'Refresh log' }).click();
          return log.innerText();
        },
        { timeout: 20_000 },
      )
      .toMatch(/COMPLETED\s+delivered, 1 attempt, HTTP 204/);
    await shoot('admin-webhooks');
  }, 60_000);

  it('an admin creates a standing approval and revokes it', async () => {
    await open('Standing approvals', 'Standing approvals');
    await page.getByLabel('Action type').selectOption('move_file');
    await page.getByLabel('For', { exact: true }).selectOption({ label: 'alice' });
    await page.getByLabel('Condition').fill('payload.to.startsWith("reports/")');
    await page.getByRole('button', { name: 'Create standing approval' }).click();
    // The confirmation, or the refusal the page shows instead (so a failure says why).
    const outcome = page.getByRole('status').filter({ hasText: /Created: / }).or(page.getByRole('alert'));
    await outcome.first().waitFor();
    expect(await outcome.first().innerText()).toMatch(/Created: move_file for alice/);
    const item = card('move_file for alice');
    await item.waitFor();
    expect(await item.innerText()).toMatch(/in force[\s\S]*payload\.to\.startsWith\("reports\/"\)/);
    const grants = (await gql('{ standingApprovals { id type userId condition active } }', {}, keys.admin)).standingApprovals;
    expect(grants).toEqual([expect.objectContaining({ type: 'move_file', userId: aliceId, condition: 'payload.to.startsWith("reports/")', active: true })]);
    await shoot('admin-standing');

    await item.getByRole('button', { name: 'Revoke' }).click();
    await item.getByRole('button', { name: 'Confirm revoke' }).click();
    await page.getByRole('status').filter({ hasText: /Revoked: move_file for alice/ }).waitFor();
    await item.waitFor({ state: 'detached' });
    expect((await gql('{ standingApprovals { id } }', {}, keys.admin)).standingApprovals).toEqual([]);
    const all = (await gql('{ standingApprovals(active: false) { active revokedAt } }', {}, keys.admin)).standingApprovals;
    expect(all).toEqual([{ active: false, revokedAt: expect.any(String) }]);
  }, 60_000);

  it('the overview shows the space\'s numbers in charts and tables, and updates live', async () => {
    // So far this space has: send_email "Q3 report" PENDING (needs 2 approvals) and one
    // create_document that completed. Add a move_file waiting for approval, two more documents,
    // and reject the report.
    const move = (await gql(CREATE, { input: { type: 'move_file', payload: { from: 'inbox/a.pdf', to: 'reports/a.pdf' } } }, keys.agent)).createAction;
    expect(move.action.status).toBe('PENDING');
    for (const title of ['One', 'Two']) {
      const doc = (await gql(CREATE, { input: { type: 'create_document', payload: { title, content: 'x' } } }, keys.agent)).createAction;
      expect(doc.errors).toEqual([]);
    }
    const pending = (await gql('{ actions(filter: { type: ["send_email"], status: [PENDING] }) { edges { node { id } } } }', {}, keys.admin)).actions.edges;
    expect(pending).toHaveLength(1);
    const rejected = await gql('mutation($id: ID!) { rejectAction(id: $id, reason: "not now") { errors { code } } }', { id: pending[0].node.id }, keys.approver);
    expect(rejected.rejectAction.errors).toEqual([]);
    await expect
      .poll(async () => (await gql('{ actions(filter: { type: ["create_document"], status: [COMPLETED] }) { edges { node { id } } } }', {}, keys.admin)).actions.edges.length, {
        timeout: 30_000,
      })
      .toBe(3);

    await signIn(keys.analyst);
    await page.getByRole('heading', { name: 'Overview', level: 2 }).waitFor();
    const tile = (label: string) => page.locator('.tile').filter({ hasText: label }).locator('dd');
    await expect.poll(() => tile('Waiting for approval').innerText(), { timeout: 10_000 }).toBe('1');
    expect(await tile('Open manual tasks').innerText()).toBe('0');
    const summary = page.locator('#time-summary');
    await expect.poll(() => summary.innerText()).toBe('5 actions created in the last 24 hours: 1 pending, 3 completed, 1 rejected.');
    // Every chart is a canvas with a text alternative as its accessible name.
    const charts = page.getByRole('img', { name: /^Bar chart/ });
    await expect.poll(() => charts.count()).toBeGreaterThanOrEqual(4);
    const typeTable = page.locator('#type-table');
    expect(await typeTable.innerText()).toMatch(/create_document\s+3[\s\S]*move_file\s+1[\s\S]*send_email\s+1/);
    expect(await page.locator('#wait-title').locator('..').innerText()).toMatch(/1 decision: half within \d+ s/);
    const handlers = await page.locator('#handlers-table').innerText();
    expect(handlers).toMatch(/create_document\.filesystem\s+3\s+3\s+0\s+0\s+0\s+100 %\s+0 %/);
    await page.getByText(/Chain verified: \d+ entries/).waitFor({ timeout: 20_000 });

    // The type filter narrows the over-time chart and its summary.
    await page.getByLabel('Action type').selectOption('create_document');
    await expect.poll(() => summary.innerText()).toBe('3 create_document actions created in the last 24 hours: 3 completed.');
    await page.getByLabel('Action type').selectOption('');
    await page.getByText('Numbers per hour').click();
    await shoot('overview');

    // Live: a new pending action shows up without a reload.
    await gql(CREATE, { input: { type: 'move_file', payload: { from: 'inbox/b.pdf', to: 'reports/b.pdf' } } }, keys.agent);
    await expect.poll(() => tile('Waiting for approval').innerText(), { timeout: 15_000 }).toBe('2');

    // The 7-day window (by keyboard: the window picker is a radio group): the same actions, per day.
    await page.getByRole('radio', { name: '24 h' }).focus();
    await page.keyboard.press('ArrowRight');
    expect(await page.getByRole('radio', { name: '7 d' }).isChecked()).toBe(true);
    await expect.poll(() => summary.innerText()).toMatch(/^6 actions created in the last 7 days/);

    const origin = new URL(t.url).host;
    const foreign = browser.requests.filter((u) => !u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).host !== origin);
    expect(foreign).toEqual([]);
    expect(browser.cspViolations).toEqual([]);
    expect(browser.pageErrors).toEqual([]);
  }, 120_000);
});
