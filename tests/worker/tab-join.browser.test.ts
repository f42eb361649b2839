// The /worker tab against a closed cluster: a real coordinator started with a join token (as
// `--join-token`), the tab in Chromium in CPU mode (`?backend=cpu`, fast). Without a token the hello
// is refused as UNAUTHORIZED and the tab says so (and stops retrying); a wrong token is refused
// with its own message; the share link's `?join=` fills the token, the tab joins and trains, and
// the token never appears in the tab's log or text.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'vite';
import type { Page } from 'playwright-core';
import { launchBrowser, type Browser } from '../e2e/chromium.ts';
import { tinyCoordinator } from './helpers.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const TOKEN = 'closed-cluster-T0ken-7f3a';
let browser: Browser;
let coord: Awaited<ReturnType<typeof tinyCoordinator>>;

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/worker/index.html'))) {
    await build({ configFile: join(ROOT, 'worker-web/vite.config.ts'), logLevel: 'warn' });
  }
  coord = await tinyCoordinator({ maxSteps: 0, globalBatch: 4, maxMicroBatch: 4, joinToken: TOKEN });
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  await coord?.dispose();
});

const text = async (p: Page, id: string) => ((await p.textContent(`#${id}`)) ?? '').trim();
const liveWorkers = () => [...coord.hub.workers.byId.values()].filter((w) => w.socket !== null).length;

async function openAndStart(query: string, token?: string): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${coord.url}/worker/?backend=cpu${query}`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 30_000 });
  await page.uncheck('#pause-hidden'); // headless windows may count as hidden
  if (token !== undefined) await page.fill('#join-token', token);
  await page.click('#start');
  return page;
}

describe('/worker tab and the join token', () => {
  it('without a token the hello is refused as UNAUTHORIZED and the tab says the cluster is closed', async () => {
    const page = await openAndStart('');
    expect(await page.inputValue('#join-token')).toBe('');
    await page.waitForSelector('#join-refused:not([hidden])', { timeout: 20_000 });
    expect(await page.getAttribute('#join-refused', 'data-code')).toBe('UNAUTHORIZED');
    expect(await text(page, 'join-refused')).toMatch(/closed: it needs a join token/);
    await page.waitForSelector('body[data-state="stopped"]', { timeout: 10_000 });
    expect(await text(page, 'detail')).toMatch(/UNAUTHORIZED/);
    expect(await text(page, 'worker-id')).toBe('-');
    expect(liveWorkers()).toBe(0);
    expect(await page.isDisabled('#start')).toBe(false);

    // A wrong token typed into the input: refused too, with the "wrong token" message.
    await page.fill('#join-token', 'not-the-token');
    await page.click('#start');
    await page.waitForFunction(() => /token is wrong/.test(document.getElementById('join-refused')?.textContent ?? ''), null, { timeout: 20_000 });
    expect(await page.isVisible('#join-refused')).toBe(true);
    expect(liveWorkers()).toBe(0);
    await page.close();
  }, 60_000);

  it('with ?join= the token is filled in, the tab joins and trains, and the token is never shown', async () => {
    const page = await openAndStart(`&join=${encodeURIComponent(TOKEN)}`);
    expect(await page.inputValue('#join-token')).toBe(TOKEN);
    await page.waitForFunction(() => Number(document.getElementById('accepted')?.textContent) >= 1, null, { timeout: 60_000 });
    expect(await page.isVisible('#join-refused')).toBe(false);
    const id = await text(page, 'worker-id');
    const rec = coord.hub.workers.byId.get(id)!;
    expect(rec.hello.backend).toBe('cpu');
    expect(rec.socket).not.toBeNull();
    // The token reaches the coordinator, not the page's text or log.
    const shown = await page.evaluate(() => document.body.innerText);
    expect(shown).not.toContain(TOKEN);
    expect(await text(page, 'log')).not.toContain(TOKEN);
    await page.click('#stop');
    await page.waitForSelector('body[data-state="stopped"]', { timeout: 10_000 });
    expect(await page.isVisible('#join-refused')).toBe(false);
    expect(browser.problems).toEqual([]);
    await page.close();
  }, 90_000);
});
