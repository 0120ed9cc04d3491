import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium (.ci/run installs it when missing); never a downloaded browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** A headless Chromium that can reach one origin only, and what its page asked for and reported. */
export interface OfflineBrowser {
  context: BrowserContext;
  page: Page;
  /** Every URL the page requested, WebSockets included. */
  requests: string[];
  /** Console messages about the Content-Security-Policy. */
  cspViolations: string[];
  /** Uncaught errors in the page. */
  pageErrors: string[];
  close(): Promise<void>;
}

/**
 * Starts Chromium (the flags the machine needs, a fresh profile) with every request to another
 * origin than `origin` aborted, as with no internet: a page that needs a CDN fails visibly.
 */
export async function openOfflineBrowser(origin: string, viewport = { width: 1280, height: 900 }): Promise<OfflineBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  const profile = await mkdtemp(path.join(tmpdir(), 'ae-chromium-'));
  let context: BrowserContext | undefined;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const allowed = new URL(origin).origin;
    await context.route(
      (url) => url.origin !== allowed,
      (route) => route.abort('internetdisconnected'),
    );
    const opened: OfflineBrowser = {
      context,
      page,
      requests: [],
      cspViolations: [],
      pageErrors: [],
      async close() {
        await context?.close();
        await rm(profile, { recursive: true, force: true });
      },
    };
    page.on('request', (r) => opened.requests.push(r.url()));
    page.on('websocket', (ws) => opened.requests.push(ws.url()));
    page.on('console', (m) => {
      if (/Content.Security.Policy/i.test(m.text())) opened.cspViolations.push(m.text());
    });
    page.on('pageerror', (e) => opened.pageErrors.push(e.message));
    return opened;
  } catch (error) {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Signs in to the console at `baseUrl` with `key` from a fresh sign-in form (a test that failed
 * signed in leaves its key in the tab's session storage), and waits until it is signed in.
 */
export async function consoleSignIn(page: Page, baseUrl: string, key: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.evaluate(() => sessionStorage.clear());
  await page.reload();
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Signs out of the console and waits for the sign-in form. */
export async function consoleSignOut(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API key').waitFor();
}
