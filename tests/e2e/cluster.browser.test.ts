// End to end in a real browser: the coordinator (tiny preset, in-process on port 0) serves the built
// pages; Chromium (SwiftShader WebGPU) opens the dashboard and two /worker tabs that join on WebGPU
// and train. Asserts on the DOM and on /api/status:
//  - both workers are listed on the dashboard, steps advance and the loss falls, the loss chart
//    is drawn (screenshot kept at test-artifacts/dashboard.png);
//  - closing one tab mid-step loses no sample: counted from the rows each tab was acknowledged for
//    (self-describing data, the tabs' audit trace), and the coordinator's counters must agree;
//  - the playground answers from the trained parameters;
//  - a worker whose adapter description and name contain markup is shown as text, not HTML;
//  - the admin controls are hidden without a token (their full flow: tests/dashboard/pages.browser.test.ts);
//  - the worker tab's own panel (moved here from tests/worker/tab.browser.test.ts, so that the suite
//    pays one Chromium kernel compile less): the software adapter, the cap preview under the
//    20 B/param rule, the replica plan, GPU time and loss, the hello the coordinator got, and Stop
//    drops the worker at once;
//  - no page hits a Content-Security-Policy violation or an uncaught error.
// SwiftShader runs at ~0.3 GFLOP/s, so the run is kept to a handful of small steps.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { io as ioClient, type Socket } from 'socket.io-client';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import { PROTOCOL_VERSION, type HelloMsg, type WelcomeMsg } from '../../shared/protocol/messages.ts';
import type { HistoryPoint, StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { launchBrowser, type Browser } from './chromium.ts';
import { countIndependently, writeChaosData, type TraceLine } from '../chaos/accounting.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const ARTIFACTS = join(ROOT, 'test-artifacts');
const ADMIN_TOKEN = 'e2e-admin-token-0123';
const GLOBAL_BATCH = 8;
const HOSTILE = '<img src=x onerror="window.__xss=1">';
const HOSTILE_NAME = '<script>window.__xss=2</script><b>bold</b>';

let coord: CoordinatorHandle;
let browser: Browser;
let runDir: string;
let dash: Page;
const tabs: Page[] = [];
/** Each tab's audit trace (worker welcome, task rows, acks, discards), streamed out as it happens. */
const traces = new Map<Page, TraceLine[]>();

async function status(): Promise<StatusSnapshot> {
  const r = await fetch(`${coord.url}/api/status`);
  expect(r.status).toBe(200);
  return (await r.json()) as StatusSnapshot;
}

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
}

const text = async (p: Page, id: string) => ((await p.textContent(`#${id}`)) ?? '').trim();
const CAP = 256 * 2 ** 20;

/** Opens a worker tab, keeps it training while in the background, and starts it (tab-A with a memory cap). */
async function openWorkerTab(name: string): Promise<Page> {
  const page = await browser.newPage();
  const trace: TraceLine[] = [];
  traces.set(page, trace);
  await page.exposeFunction('__workerTrace', (e: Omit<TraceLine, 't'>) => void trace.push({ t: Date.now(), ...e } as TraceLine));
  await page.goto(`${coord.url}/worker/?trace=1`);
  await page.waitForFunction(() => !(document.getElementById('start') as HTMLButtonElement).disabled, null, { timeout: 60_000 });
  expect(await text(page, 'backend')).toBe('WebGPU');
  expect(await text(page, 'adapter-architecture')).toMatch(/swiftshader/i);
  expect(await text(page, 'adapter-software')).toMatch(/software/);
  expect(await text(page, 'probed-memory')).toMatch(/MiB|GiB/);
  if (name === 'tab-A') {
    await page.fill('#memory-cap', '256MiB');
    expect(await text(page, 'cap-preview')).toContain(Math.floor(CAP / 20).toLocaleString('en-US'));
  }
  await page.fill('#worker-name', name);
  // Several tabs share one headless window, so all but one are "hidden": keep them working.
  await page.uncheck('#pause-hidden');
  await page.click('#start');
  return page;
}

beforeAll(async () => {
  // The coordinator serves dist/; build it when this test runs on its own (tests/run-all.sh builds first).
  if (!existsSync(join(ROOT, 'dist/dashboard/index.html')) || !existsSync(join(ROOT, 'dist/worker/index.html'))) {
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  runDir = mkdtempSync(join(tmpdir(), 'e2e-run-'));
  // Self-describing rows ("#NNNN a+b="): the test reads back which samples each tab was acknowledged for.
  const data = join(runDir, 'e2e-data.jsonl');
  writeChaosData(data, 600, 11);
  coord = await startCoordinator({
    preset: 'tiny',
    port: 0,
    host: '127.0.0.1',
    runDir,
    resume: false,
    data,
    globalBatch: GLOBAL_BATCH,
    lr: 3e-3,
    warmupSteps: 1,
    evalEvery: 4,
    evalSamples: 8,
    checkpointEvery: 0,
    // Small tasks keep SwiftShader's kernel compile and each step to about a second.
    maxMicroBatch: 4,
    leaseMs: 30_000,
    adminToken: ADMIN_TOKEN,
    logLevel: 'silent',
  });
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await coord?.close();
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

describe('cluster in a real browser', () => {
  it('shows the dashboard with admin controls hidden until a token is given', async () => {
    dash = await browser.newPage();
    await dash.goto(`${coord.url}/`);
    await dash.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
    expect(await dash.textContent('#stat-model')).toContain('tiny');
    expect(await dash.isVisible('#admin-controls')).toBe(false);
    expect(await dash.isVisible('#admin-token')).toBe(true);
    expect(await dash.textContent('#share-url')).toBe(`${coord.url}/worker/`);
  });

  it('shows a worker whose adapter and name contain markup as text, never HTML', async () => {
    const sock: Socket = ioClient(coord.url, { parser: msgpackParser, transports: ['websocket'], forceNew: true });
    try {
      const welcome = new Promise<WelcomeMsg>((res) => sock.once('welcome', res));
      const hello: HelloMsg = {
        protocol: PROTOCOL_VERSION,
        backend: 'cpu',
        adapter: { vendor: '<i>v</i>', architecture: 'x', description: HOSTILE, isSoftware: false },
        limits: {},
        userCapBytes: 1024, // too small to hold a layer: it waits and is never leased a task
        name: HOSTILE_NAME,
        agent: 'e2e-hostile/1',
      };
      sock.emit('hello', hello);
      const w = await welcome;
      const row = `tr[data-testid="worker-row"][data-worker-id="${w.workerId}"]`;
      await dash.waitForSelector(row, { timeout: 20_000 });
      expect(await dash.textContent(`${row} td[data-col="adapter"]`)).toContain(HOSTILE);
      expect(await dash.textContent(`${row} td[data-col="name"]`)).toBe(HOSTILE_NAME);
      const injected = await dash.evaluate(() => ({
        img: document.querySelectorAll('#workers img, #memory-plan img, #event-log img').length,
        script: document.querySelectorAll('#workers script, #memory-plan script').length,
        bold: document.querySelectorAll('#workers b, #memory-plan b').length,
        xss: (window as unknown as { __xss?: number }).__xss ?? null,
      }));
      expect(injected).toEqual({ img: 0, script: 0, bold: 0, xss: null });
    } finally {
      sock.disconnect();
    }
  });

  it('trains with two WebGPU tabs: both listed, steps advance, loss falls, chart drawn', async () => {
    tabs.push(await openWorkerTab('tab-A'), await openWorkerTab('tab-B'));
    // Both tabs welcomed as WebGPU replicas, listed on the dashboard.
    const ids = await waitFor('two webgpu workers', async () => {
      const s = await status();
      const live = s.workers.filter((w) => w.backend === 'webgpu' && !['left', 'dead', 'kicked'].includes(w.state));
      return live.length === 2 ? live.map((w) => w.id) : null;
    }, 150_000, 500); // each tab compiles its kernels before taking work (tens of seconds on SwiftShader)
    for (const id of ids) {
      await dash.waitForSelector(`tr[data-testid="worker-row"][data-worker-id="${id}"] td[data-col="backend"]:text("webgpu")`, { timeout: 20_000 });
    }
    const names = await dash.$$eval('tr[data-testid="worker-row"] td[data-col="name"]', (tds) => tds.map((t) => t.textContent));
    expect(names).toEqual(expect.arrayContaining(['tab-A', 'tab-B']));

    await waitFor('6 optimizer steps with both tabs contributing', async () => {
      const s = await status();
      return s.step >= 6 && s.workers.filter((w) => ids.includes(w.id) && w.tasksDone > 0).length === 2;
    }, 120_000, 500);

    const hist = (await (await fetch(`${coord.url}/api/history`)).json()) as HistoryPoint[] | { points: HistoryPoint[] };
    const points = Array.isArray(hist) ? hist : hist.points;
    const losses = points.map((p) => p.loss);
    expect(losses.length).toBeGreaterThanOrEqual(6);
    const first = (losses[0] + losses[1]) / 2;
    const last = (losses.at(-1)! + losses.at(-2)!) / 2;
    expect(last).toBeLessThan(first);

    // The dashboard drew the loss curve from pushed points and shows the current step.
    await dash.waitForFunction((n) => Number(document.getElementById('chart-loss')?.dataset.points ?? 0) >= n, 6, { timeout: 10_000 });
    expect(await dash.getAttribute('#chart-loss', 'data-drawn')).toBe('true');
    expect(await dash.$$eval('#chart-loss canvas', (c) => c.length)).toBeGreaterThan(0);
    await dash.waitForFunction((n) => Number(document.getElementById('stat-step')?.textContent?.replace(/,/g, '')) >= n, 6, { timeout: 10_000 });
    expect(await dash.$$eval('#memory-plan [data-testid="mem-bar"]', (rows) => rows.length)).toBeGreaterThanOrEqual(2);
    await dash.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    // Each tab's own panel: accepted WebGPU work as a replica, with its plan, GPU time and loss;
    // the coordinator got the hello the page meant to send (tab-A's cap included).
    for (const [i, page] of tabs.entries()) {
      await page.waitForFunction(() => Number(document.getElementById('accepted')?.textContent) >= 1, null, { timeout: 60_000 });
      expect(Number((await text(page, 'tasks-done')).replace(/,/g, ''))).toBeGreaterThanOrEqual(1);
      expect(await text(page, 'rejected')).toBe('0');
      expect(await text(page, 'plan-role')).toBe('replica');
      expect(await page.$$eval('#plan-breakdown li', (l) => l.map((x) => (x as HTMLElement).dataset.part))).toEqual(
        expect.arrayContaining(['weights', 'gradients', 'optimizer', 'activations']),
      );
      expect(Number((await text(page, 'gpu-time')).replace(/ s$/, ''))).toBeGreaterThan(0);
      expect(Number(await text(page, 'last-loss'))).toBeGreaterThan(0);
      const rec = coord.hub.workers.byId.get(await text(page, 'worker-id'))!;
      expect(rec.hello).toMatchObject({ backend: 'webgpu', name: i === 0 ? 'tab-A' : 'tab-B', agent: 'web-worker/0.1' });
      if (i === 0) expect(rec.hello.userCapBytes).toBe(CAP);
      expect(rec.hello.adapter.isSoftware).toBe(true);
    }
  }, 300_000);

  it('closing a tab mid-step loses no sample', async () => {
    const before = await status();
    const victimId = await waitFor('a tab computing', async () => {
      const s = await status();
      return s.workers.find((w) => w.backend === 'webgpu' && w.state === 'computing')?.id;
    }, 60_000, 50);
    const victim = await waitFor('the victim tab', async () => {
      for (const t of tabs) if ((await t.textContent('#worker-id'))?.trim() === victimId) return t;
      return null;
    }, 5_000);
    // Close it just after a task reached it: every ack before that task has reached its trace (acks
    // and tasks share one ordered socket), and its answer to this one cannot have been acknowledged.
    const vt = traces.get(victim)!;
    const seen = vt.length;
    await waitFor('a fresh task at the victim', async () => vt.length > seen && vt.at(-1)!.ev === 'task', 60_000, 2);
    await victim.close();
    tabs.splice(tabs.indexOf(victim), 1);

    await waitFor('the victim to leave', async () => (await status()).workers.find((w) => w.id === victimId)?.state !== 'computing', 20_000);
    const stepAtClose = (await status()).step;
    await waitFor('3 more steps with one tab', async () => (await status()).step >= stepAtClose + 3, 150_000, 500);

    const after = await status();
    // Counted from the outside: the samples each tab was acknowledged for (decoded from the rows of
    // its tasks), step by step. The last acks of step after.step - 1 may still be on their way.
    const count = await waitFor('every finished step accounted for by the tabs', async () => {
      const c = countIndependently([...traces.values()], [], after.step, GLOBAL_BATCH);
      return c.badSteps.length === 0 ? c : null;
    }, 20_000, 100).catch((e: Error) => {
      const c = countIndependently([...traces.values()], [], after.step, GLOBAL_BATCH);
      throw new Error(`${e.message}; steps short or over: ${c.badSteps.join(', ')}`);
    });
    expect(count.undecodable).toBe(0);
    expect(count.doubled).toBe(0);
    expect(count.lost).toBe(0);
    // The coordinator's own counters must agree with that count.
    expect(after.samplesTrained).toBe(count.trained);
    expect(after.accounting.doubled).toBe(0);
    if (after.epoch === before.epoch) expect(after.accounting.trained).toBeGreaterThan(before.accounting.trained);
    await dash.waitForSelector(`tr[data-worker-id="${victimId}"] td[data-col="state"]:text-matches("left|dead")`, { timeout: 20_000 });
    await dash.waitForSelector('#event-log li[data-kind="leave"], #event-log li[data-kind="dead"]', { timeout: 20_000 });
  }, 200_000);

  it('Stop on the remaining tab drops the worker at once', async () => {
    const page = tabs[0];
    const id = await text(page, 'worker-id');
    await page.click('#stop');
    const t0 = Date.now();
    await waitFor('Stop to drop the worker', async () => coord.hub.workers.byId.get(id)?.socket === null, 3_000, 50);
    expect(Date.now() - t0).toBeLessThan(3_000);
    await page.waitForSelector('body[data-state="stopped"]', { timeout: 10_000 });
    expect(await page.isDisabled('#start')).toBe(false);
  });

  it('queries the trained model from the playground', async () => {
    const page = await browser.newPage();
    await page.goto(`${coord.url}/playground.html`);
    await page.fill('#gen-prompt', '21+13=');
    await page.fill('#gen-max', '6');
    await page.click('#gen-submit');
    await page.waitForSelector('#gen-output[data-state="done"]', { timeout: 30_000 });
    expect(['eos', 'length', 'stop']).toContain(await page.getAttribute('#gen-finish', 'data-reason'));
    // The completion came from the parameters trained above, not the initial ones.
    expect(Number(await page.textContent('#gen-step'))).toBeGreaterThanOrEqual(6);
    await page.close();
  });

  it('had no CSP violation or page error on any page', () => {
    expect(browser.problems).toEqual([]);
  });
});
