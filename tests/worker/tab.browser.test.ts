// The /worker tab in headless Chromium (SwiftShader WebGPU) against a real coordinator serving
// dist/worker: it shows the adapter, previews the cap under the 20 B/param rule, starts
// contributing and completes tasks on WebGPU, and Stop says bye. Without WebGPU it explains why and
// trains in the opt-in CPU mode. A bad cap is refused with a message and starts nothing.
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
  it('finds the software adapter, contributes on WebGPU, and Stop returns the lease at once', async () => {
    const page = await browser.newPage();
    await page.goto(`${coord.url}/worker/`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 60_000 });
    expect(await text(page, 'backend')).toBe('WebGPU');
    expect(await text(page, 'adapter-architecture')).toMatch(/swiftshader/i);
    expect(await text(page, 'adapter-software')).toMatch(/software/);
    expect(await text(page, 'probed-memory')).toMatch(/MiB|GiB/);
    await page.fill('#memory-cap', '256MiB');
    expect(await text(page, 'cap-preview')).toContain(Math.floor((256 * 2 ** 20) / 20).toLocaleString('en-US'));
    await page.uncheck('#pause-hidden'); // headless windows may count as hidden
    await page.fill('#worker-name', 'tab-test');
    await page.click('#start');
    // First the engine compiles its kernels (tens of seconds on SwiftShader), then tasks flow.
    await page.waitForFunction(() => Number(document.getElementById('accepted')?.textContent) >= 2, null, { timeout: 200_000 });
    expect(await num(page, 'tasks-done')).toBeGreaterThanOrEqual(2);
    expect(await num(page, 'rejected')).toBe(0);
    expect(await text(page, 'plan-role')).toBe('replica');
    expect(await page.$$eval('#plan-breakdown li', (l) => l.map((x) => (x as HTMLElement).dataset.part))).toEqual(
      expect.arrayContaining(['weights', 'gradients', 'optimizer', 'activations']),
    );
    expect(Number((await text(page, 'gpu-time')).replace(/ s$/, ''))).toBeGreaterThan(0);
    expect(Number(await text(page, 'last-loss'))).toBeGreaterThan(0);
    const id = await text(page, 'worker-id');
    const rec = workerRecord(id)!;
    expect(rec.hello).toMatchObject({ backend: 'webgpu', name: 'tab-test', userCapBytes: 256 * 2 ** 20, agent: 'web-worker/0.1' });
    expect(rec.hello.adapter.isSoftware).toBe(true);
    expect(rec.tasksDone).toBeGreaterThanOrEqual(2);

    await page.click('#stop');
    const t0 = Date.now();
    await until(() => workerRecord(id)?.socket === null, 3_000, 'Stop to drop the worker');
    expect(Date.now() - t0).toBeLessThan(3_000);
    await page.waitForSelector('body[data-state="stopped"]', { timeout: 10_000 });
    expect(await page.isDisabled('#start')).toBe(false);
    expect(browser.problems).toEqual([]);
    await page.close();
  }, 300_000);

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
