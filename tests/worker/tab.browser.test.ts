// The /worker tab in headless Chromium against a real coordinator serving dist/worker, without
// WebGPU: it explains why, refuses a bad cap with a message and starts nothing, trains in the
// opt-in CPU mode, and pauses while hidden. The tab on WebGPU (software adapter shown, cap preview
// under the 20 B/param rule, WebGPU tasks accepted, Stop drops the worker at once) is checked by
// tests/e2e/cluster.browser.test.ts on its two training tabs: one Chromium kernel compile, not two.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'vite';
import type { Page } from 'playwright-core';
import { launchBrowser, type Browser } from '../e2e/chromium.ts';
import { tinyCoordinator, until } from './helpers.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
let browser: Browser;
let coord: Awaited<ReturnType<typeof tinyCoordinator>>;

beforeAll(async () => {
  // The coordinator serves dist/worker; build it when this test runs on its own (run-all.sh builds first).
  if (!existsSync(join(ROOT, 'dist/worker/index.html'))) {
    await build({ configFile: join(ROOT, 'worker-web/vite.config.ts'), logLevel: 'warn' });
  }
  coord = await tinyCoordinator({ maxSteps: 0, globalBatch: 4, maxMicroBatch: 4 });
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  await coord?.dispose();
});

const text = async (p: Page, id: string) => ((await p.textContent(`#${id}`)) ?? '').trim();
const num = async (p: Page, id: string) => Number((await text(p, id)).replace(/,/g, ''));
const workerRecord = (id: string) => coord.hub.workers.byId.get(id);

describe('/worker tab in Chromium', () => {
  it('without WebGPU: explains, refuses a bad cap, trains in the opt-in CPU mode, pauses while hidden', async () => {
    const page = await browser.newPage();
    // A browser without WebGPU: the page's navigator has no gpu.
    await page.addInitScript(() => {
      delete (Navigator.prototype as unknown as { gpu?: unknown }).gpu;
    });
    await page.goto(`${coord.url}/worker/`);
    await page.waitForSelector('body[data-state="no-webgpu"]', { timeout: 30_000 });
    expect(await page.isVisible('#no-webgpu')).toBe(true);
    expect(await text(page, 'no-webgpu-reason')).toMatch(/navigator\.gpu/);
    expect(await page.textContent('#no-webgpu')).toMatch(/enable-unsafe-webgpu/);
    expect(await page.isDisabled('#start')).toBe(true);
    await page.check('#cpu-optin');
    await page.waitForSelector('body[data-state="ready"]', { timeout: 30_000 });
    expect(await text(page, 'backend')).toMatch(/CPU/);
    await page.fill('#memory-cap', 'lots');
    await page.click('#start');
    expect(await text(page, 'error')).toMatch(/not a size/);
    expect(await page.evaluate(() => document.body.dataset.state)).toBe('ready');
    await page.fill('#memory-cap', '');
    expect(await page.isChecked('#pause-hidden')).toBe(true); // the default
    await page.click('#start');
    await page.waitForFunction(() => Number(document.getElementById('accepted')?.textContent) >= 1, null, { timeout: 60_000 });
    const id = await text(page, 'worker-id');
    expect(workerRecord(id)!.hello.backend).toBe('cpu');

    // The tab is hidden: it pauses (bye: the coordinator drops it at once); visible again: it
    // resumes under the same id.
    const setHidden = (hidden: boolean) => page.evaluate((h) => {
      Object.defineProperty(document, 'hidden', { value: h, configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
    await setHidden(true);
    await page.waitForSelector('body[data-state="paused"]', { timeout: 10_000 });
    await until(() => workerRecord(id)?.socket === null, 3_000, 'pause to drop the worker');
    const accepted = await num(page, 'accepted');
    await setHidden(false);
    await page.waitForFunction((n) => Number(document.getElementById('accepted')?.textContent) > n, accepted, { timeout: 60_000 });
    expect(await text(page, 'worker-id')).toBe(id);
    expect(workerRecord(id)?.socket).not.toBeNull();
    await page.click('#stop');
    await page.waitForSelector('body[data-state="stopped"]', { timeout: 10_000 });
    await page.close();
  }, 120_000);
});
