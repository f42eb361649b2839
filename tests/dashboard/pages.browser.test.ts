// The dashboard pages in a real browser (Chromium via playwright-core) against the real coordinator
// (tiny preset, in-process on port 0, serving the built pages under its Content-Security-Policy).
// No GPU work: the cluster has only a raw-socket worker too small to be given tasks.
//  - live page: connects, shows the model and the share link's QR code; a worker whose
//    name/adapter contain markup is shown as text (no element created, no script run); its memory
//    bar and join event appear;
//  - admin: hidden without a token; a wrong token is refused by the server and forgotten; the right
//    one pauses, resumes and kicks;
//  - playground: a real /api/generate completion and why it stopped; a bad request shows the error;
//  - simulator: a real /api/simulate plan drawn as bars with the arithmetic;
//  - no CSP violation or uncaught error on any page.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { io as ioClient, type Socket } from 'socket.io-client';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import { PROTOCOL_VERSION, type HelloMsg, type WelcomeMsg } from '../../shared/protocol/messages.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { launchBrowser, type Browser } from '../e2e/chromium.ts';
import { qrMatrix } from '../../dashboard/src/qr.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const ADMIN_TOKEN = 'pages-admin-token-42';
const HOSTILE_ADAPTER = '<img src=x onerror="window.__xss=1">';
const HOSTILE_NAME = '<script>window.__xss=2</script><b>bold</b>';

let coord: CoordinatorHandle;
let browser: Browser;
let runDir: string;
let dash: Page;
let hostile: Socket;
let hostileId: string;

async function status(): Promise<StatusSnapshot> {
  return (await (await fetch(`${coord.url}/api/status`)).json()) as StatusSnapshot;
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/dashboard/index.html'))) {
    execFileSync('npx', ['vite', 'build', '--config', 'dashboard/vite.config.ts', '--logLevel', 'warn'], { cwd: ROOT, stdio: 'inherit' });
  }
  runDir = mkdtempSync(join(tmpdir(), 'dash-pages-'));
  coord = await startCoordinator({ preset: 'tiny', port: 0, host: '127.0.0.1', runDir, resume: false, checkpointEvery: 0, adminToken: ADMIN_TOKEN, logLevel: 'silent' });
  browser = await launchBrowser();
  dash = await browser.newPage();
});

afterAll(async () => {
  hostile?.disconnect();
  await browser?.close();
  await coord?.close();
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

describe('dashboard pages against the real coordinator', () => {
  it('connects, shows the model, and hides admin controls without a token', async () => {
    await dash.goto(`${coord.url}/`);
    await dash.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
    await dash.waitForSelector('#stat-model:text("tiny")', { timeout: 10_000 });
    expect(await dash.textContent('#stat-step')).toBe('0');
    expect(await dash.isVisible('[data-testid="workers-empty"]')).toBe(true);
    expect(await dash.isVisible('#admin-controls')).toBe(false);
    expect(await dash.isVisible('#admin-token')).toBe(true);
    expect(await dash.getAttribute('#share-url', 'href')).toBe(`${coord.url}/worker/`);
    // The QR code is drawn: black modules on white, as many modules as the URL's matrix.
    const qr = await dash.evaluate(() => {
      const c = document.getElementById('share-qr') as HTMLCanvasElement;
      const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let dark = 0;
      for (let i = 0; i < px.length; i += 4) if (px[i] < 128) dark++;
      return { modules: Number(c.dataset.modules), width: c.width, darkShare: dark / (px.length / 4) };
    });
    expect(qr.modules).toBe(qrMatrix(`${coord.url}/worker/`).length);
    expect(qr.width).toBe((qr.modules + 8) * 5);
    expect(qr.darkShare).toBeGreaterThan(0.2);
    expect(qr.darkShare).toBeLessThan(0.6);
  });

  it('shows a worker whose name and adapter contain markup as plain text', async () => {
    hostile = ioClient(coord.url, { parser: msgpackParser, transports: ['websocket'], forceNew: true, reconnection: false });
    const welcome = new Promise<WelcomeMsg>((res) => hostile.once('welcome', res));
    const hello: HelloMsg = {
      protocol: PROTOCOL_VERSION,
      backend: 'cpu',
      adapter: { vendor: '<i>v</i>', architecture: 'x', description: HOSTILE_ADAPTER, isSoftware: false },
      limits: {},
      userCapBytes: 1024, // too small for one layer: it waits, is never leased a task
      name: HOSTILE_NAME,
    };
    hostile.emit('hello', hello);
    hostileId = (await welcome).workerId;
    const row = `tr[data-testid="worker-row"][data-worker-id="${hostileId}"]`;
    await dash.waitForSelector(row, { timeout: 10_000 });
    expect(await dash.textContent(`${row} td[data-col="adapter"]`)).toBe(HOSTILE_ADAPTER);
    expect(await dash.textContent(`${row} td[data-col="name"]`)).toBe(HOSTILE_NAME);
    expect(await dash.textContent(`${row} td[data-col="role"]`)).toBe('too-small');
    // Its plan is drawn as a bar labelled with the same literal name, and the join is logged.
    await dash.waitForSelector(`#memory-plan [data-testid="mem-bar"][data-key="${hostileId}"]`, { timeout: 10_000 });
    expect(await dash.textContent(`#memory-plan [data-key="${hostileId}"] .mem-name`)).toContain(HOSTILE_NAME);
    await dash.waitForSelector(`#event-log li[data-kind="join"]`, { timeout: 10_000 });
    const injected = await dash.evaluate(() => ({
      img: document.querySelectorAll('main img').length,
      script: document.querySelectorAll('main script').length,
      bold: document.querySelectorAll('main b, main i').length,
      xss: (window as unknown as { __xss?: number }).__xss ?? null,
    }));
    expect(injected).toEqual({ img: 0, script: 0, bold: 0, xss: null });
  });

  it('admin: a wrong token is refused and forgotten; the right one pauses, resumes and kicks', async () => {
    expect(await dash.$$eval('button[data-testid="kick"]', (b) => b.length)).toBe(0);
    await dash.fill('#admin-token', 'not-the-token');
    await dash.click('#admin-unlock');
    await dash.click('#admin-pause');
    await dash.waitForSelector('#admin-msg[data-ok="false"]', { timeout: 10_000 });
    expect(await dash.textContent('#admin-msg')).toMatch(/^refused: /);
    expect(await dash.isVisible('#admin-controls')).toBe(false);
    expect(await dash.evaluate(() => sessionStorage.getItem('dashboard.adminToken'))).toBeNull();
    expect((await status()).paused).toBe(false);

    await dash.fill('#admin-token', ADMIN_TOKEN);
    await dash.click('#admin-unlock');
    expect(await dash.evaluate(() => sessionStorage.getItem('dashboard.adminToken'))).toBe(ADMIN_TOKEN);
    await dash.click('#admin-pause');
    await dash.waitForSelector('#stat-run-state[data-state="paused"]', { timeout: 10_000 });
    expect((await status()).paused).toBe(true);
    await dash.click('#admin-resume');
    await dash.waitForSelector('#stat-run-state[data-state="running"]', { timeout: 10_000 });
    expect((await status()).paused).toBe(false);

    const kicked = new Promise<void>((res) => hostile.once('disconnect', () => res()));
    await dash.click(`button[data-testid="kick"][data-worker-id="${hostileId}"]`);
    await kicked;
    await dash.waitForSelector(`tr[data-worker-id="${hostileId}"] td[data-col="state"]:text("kicked")`, { timeout: 10_000 });
    await dash.waitForSelector('#event-log li[data-kind="kick"]', { timeout: 10_000 });
  });

  it('playground: generates from the live model and says why it stopped', async () => {
    const page = await browser.newPage();
    await page.goto(`${coord.url}/playground.html`);
    await page.fill('#gen-prompt', '12+34=');
    await page.fill('#gen-max', '5');
    await page.fill('#gen-temp', '0');
    await page.click('#gen-submit');
    await page.waitForSelector('#gen-output[data-state="done"]', { timeout: 30_000 });
    const reason = await page.getAttribute('#gen-finish', 'data-reason');
    expect(['eos', 'length', 'stop']).toContain(reason);
    expect(await page.textContent('#gen-finish')).toMatch(/^(eos|length|stop): /);
    expect(await page.textContent('#gen-step')).toBe('0');
    // Greedy decoding is deterministic: the page shows exactly what the API returns.
    const api = await (await fetch(`${coord.url}/api/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: '12+34=', maxTokens: 5, temperature: 0, topP: 1, seed: 0 }) })).json() as { text: string };
    expect(await page.textContent('[data-testid="gen-text"]')).toBe(api.text);
    // A prompt longer than the context is refused by the server with a clear message, shown as text.
    await page.fill('#gen-prompt', 'x'.repeat(200));
    await page.click('#gen-submit');
    await page.waitForSelector('#gen-output[data-state="error"]', { timeout: 10_000 });
    expect(await page.textContent('#gen-error')).toMatch(/context/);
    // Prompt suggestions of the built-in task: a click fills the prompt and generates greedily.
    await page.waitForSelector('#gen-suggestions:not([hidden]) button[data-prompt="57-23="]', { timeout: 10_000 });
    expect(await page.$$eval('#gen-suggestions button', (b) => b.map((x) => x.textContent))).toContain('rev cat=');
    await page.click('#gen-suggestions button[data-prompt="57-23="]');
    await page.waitForSelector('#gen-output[data-state="done"]', { timeout: 30_000 });
    expect(await page.inputValue('#gen-prompt')).toBe('57-23=');
    expect(await page.textContent('#gen-output .prompt')).toBe('57-23=');
    await page.close();
  });

  it('simulator: draws the real plan with its arithmetic and reports bad input', async () => {
    const page = await browser.newPage();
    await page.goto(`${coord.url}/simulator.html`);
    await page.selectOption('#sim-model', 'gpt2-medium');
    await page.fill('#sim-cluster', '3x8GiB,1x24GiB');
    // Rows of 512 tokens: at 1024 one row's logits (206 MB) exceed the default 128 MiB binding limit, so no
    // device could train whole rows (docs/memory.md).
    await page.fill('#sim-seq', '512');
    await page.click('#sim-submit');
    await page.waitForSelector('#sim-result:not([hidden])', { timeout: 10_000 });
    expect(await page.getAttribute('#sim-verdict', 'data-fits')).toBe('true');
    expect(await page.textContent('#sim-verdict')).toMatch(/^Fits\. gpt2-medium: 354,823,168 parameters need 7\.1\d? GB/);
    expect(await page.$$eval('#sim-bars [data-testid="mem-bar"]', (r) => r.length)).toBe(4);
    expect(await page.textContent('#sim-bars [data-testid="mem-total"]')).toMatch(/of 48\.0 GiB/);
    expect(await page.textContent('#sim-arith')).toMatch(/weights\s+354,823,168 × 4 B/);
    expect(await page.isVisible('#sim-churn')).toBe(false);

    await page.fill('#sim-session', '4h');
    await page.fill('#sim-offline', '12h');
    await page.click('#sim-submit');
    await page.waitForSelector('#sim-churn:not([hidden])', { timeout: 20_000 });
    expect(await page.textContent('#sim-churn')).toMatch(/model fully covered \d+\.\d% of the time/);

    await page.fill('#sim-cluster', '12xGB');
    await page.click('#sim-submit');
    await page.waitForFunction(() => (document.getElementById('sim-error')?.textContent ?? '').length > 0, null, { timeout: 10_000 });
    expect(await page.textContent('#sim-error')).toMatch(/^ERR_\w+: /);
    await page.close();
  });

  it('had no CSP violation or page error on any page', () => {
    expect(browser.problems).toEqual([]);
  });
});
