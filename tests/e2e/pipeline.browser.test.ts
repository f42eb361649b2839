// Pipeline stages in a real browser (issue 12): three /worker tabs in Chromium (WebGPU on SwiftShader), each with
// a 1 MiB memory cap in the page's cap field (too small for the tiny model, so each is a stage), join,
// form one 3-stage pipeline and train together; the dashboard draws the pipeline (three stage
// segments, the ends marked). Every acknowledged share's samples are counted from the tabs' own
// audit traces (the first stage's hop rows, self-describing data) and must be exactly the steps'
// samples, once; the coordinator's counters must agree. No page logs an error.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { decodeSampleId, writeChaosData } from '../chaos/accounting.ts';
import { launchBrowser, type Browser } from './chromium.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const G = 8;
const STEPS = 4;

type Trace = { ev: string; taskId?: string; micro?: number; step?: number; heads?: number[][] };
let coord: CoordinatorHandle;
let browser: Browser;
let runDir: string;
const traces = new Map<Page, Trace[]>();

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/dashboard/index.html')) || !existsSync(join(ROOT, 'dist/worker/index.html'))) {
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  }
  runDir = mkdtempSync(join(tmpdir(), 'e2e-pipe-'));
  const data = join(runDir, 'data.jsonl');
  writeChaosData(data, 400, 12);
  coord = await startCoordinator({
    preset: 'tiny', port: 0, host: '127.0.0.1', runDir, resume: false, data, seqLen: 16, globalBatch: G, maxSteps: STEPS,
    lr: 3e-3, warmupSteps: 1, evalEvery: 0, checkpointEvery: 0, leaseMs: 60_000, logLevel: 'silent', verifyRate: 0,
  });
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await coord?.close();
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

async function status(): Promise<StatusSnapshot> {
  return (await (await fetch(`${coord.url}/api/status`)).json()) as StatusSnapshot;
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

async function openStageTab(name: string): Promise<Page> {
  const page = await browser.newPage();
  const trace: Trace[] = [];
  traces.set(page, trace);
  await page.exposeFunction('__workerTrace', (e: Trace) => void trace.push(e));
  // The tab's default backend: WebGPU (SwiftShader here). Each stage compiles its shapes when its stage
  // message arrives (async pipeline creation: heartbeats go on); the share is timed from the first answers.
  await page.goto(`${coord.url}/worker/?trace=1`);
  await page.waitForFunction(() => !(document.getElementById('start') as HTMLButtonElement).disabled, null, { timeout: 60_000 });
  await page.fill('#worker-name', name);
  await page.fill('#memory-cap', '1MiB');
  await page.uncheck('#pause-hidden');
  await page.click('#start');
  return page;
}

describe('pipeline stages in Chromium', () => {
  it('three capped tabs form a 3-stage pipeline, train, and the dashboard draws it', async () => {
    const tabs = [await openStageTab('tab-a'), await openStageTab('tab-b'), await openStageTab('tab-c')];
    await waitFor(`${STEPS} steps`, async () => (await status()).step >= STEPS, 240_000).catch(async (e) => {
      const now = await status();
      throw new Error(`${(e as Error).message}; workers: ${JSON.stringify(now.workers.map((w) => [w.name, w.role, w.state, w.rejectedByCode]))}; banned: ${JSON.stringify(now.security?.banned)}; pipelines: ${JSON.stringify(now.pipelines)}; tab logs: ${JSON.stringify(await Promise.all(tabs.map((t) => t.textContent('#log').then((x) => x?.slice(-1500)))))}`);
    });
    const s = await status();
    expect(s.workers.filter((w) => w.state !== 'left').map((w) => w.role)).toEqual(['stage', 'stage', 'stage']);
    expect(s.workers.filter((w) => w.state !== 'left').map((w) => w.backend)).toEqual(['webgpu', 'webgpu', 'webgpu']);
    expect(s.pipelines).toHaveLength(1);
    expect(s.pipelines![0].stages.map((x) => x.layers)).toEqual([[0, 1], [1, 2], [2, 3]]);

    // Counted from the tabs: each acknowledged share's rows (its first stage's hops).
    const rows = new Map<string, number[]>();
    const acked = new Map<string, number>();
    for (const t of tabs) {
      for (const e of traces.get(t)!) {
        if (e.ev === 'hop') rows.set(`${e.taskId}#${e.micro}`, e.heads!.map((h) => decodeSampleId(h)!));
        if (e.ev === 'ack') acked.set(e.taskId!, e.step!);
      }
    }
    const perStep = new Map<number, number[]>();
    for (const [id, step] of acked) {
      const ids = [...rows].filter(([k]) => k.startsWith(`${id}#`)).flatMap(([, v]) => v);
      perStep.set(step, [...(perStep.get(step) ?? []), ...ids]);
    }
    for (let step = 0; step < STEPS; step++) {
      const ids = perStep.get(step) ?? [];
      expect(ids, `step ${step}`).toHaveLength(G);
      expect(ids.every((x) => Number.isInteger(x))).toBe(true);
    }
    const all = [...perStep.values()].flat();
    expect(new Set(all).size).toBe(all.length);
    expect(s.samplesTrained).toBe(all.length);
    expect(s.accounting.doubled).toBe(0);

    // The dashboard draws the pipeline: one pipeline, three stage segments, the ends marked.
    const dash = await browser.newPage();
    await dash.goto(`${coord.url}/`);
    await dash.waitForSelector('[data-testid=pipeline]', { timeout: 30_000 });
    expect(await dash.locator('[data-testid=pipeline]').count()).toBe(1);
    expect(await dash.locator('[data-testid=pipe-stage]').count()).toBe(3);
    expect(await dash.locator('[data-testid=pipe-stage].ends-e').count()).toBe(1);
    expect(await dash.locator('[data-testid=pipe-stage].ends-h').count()).toBe(1);
    expect(browser.problems).toEqual([]);
  }, 330_000);
});
