// The dashboard's Pipelines panel in Chromium against the real coordinator (`small` preset, 20.8 MB
// to train whole) with three product worker clients on the CPU engine, each capped at 9 MiB: too
// small for the model, so the coordinator forms one 3-stage pipeline. The page must draw what
// GET /api/status reports: one segment per stage at its blocks with the ends marked and the
// micro-batches in flight, the bubble and tokens/s once a share has finished, a memory bar per
// stage, and the stage workers' bars in the cluster memory plan. Saved as
// test-artifacts/dashboard-pipelines.png.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { createNodeHost } from '../../worker-web/node/host.ts';
import type { Browser } from '../e2e/chromium.ts';
import { ROOT, startBrowserRig, type BrowserRig } from '../e2e/browser-rig.ts';

const CAP = 9 * 2 ** 20;
let rig: BrowserRig;
let coord: CoordinatorHandle;
let browser: Browser;
let dash: Page;
const clients: WorkerClient[] = [];
const status = () => rig.status();

beforeAll(async () => {
  rig = await startBrowserRig('dash-pipelines', { preset: 'small', evalEvery: 0, globalBatch: 8, maxMicroBatch: 4 });
  ({ coord, dash, browser } = rig);
});

afterAll(async () => {
  for (const c of clients) await c.stop('test over').catch(() => undefined);
  await rig?.close();
});

describe('dashboard Pipelines panel', () => {
  it('draws the pipeline /api/status reports: stages over the blocks, ends, in-flight, bubble, stage memory bars', async () => {
    await dash.goto(`${coord.url}/`);
    await dash.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
    expect(await dash.$('#pipelines')).toBeNull(); // no pipeline yet: no panel
    for (const name of ['s1', 's2', 's3']) {
      const w = new WorkerClient({ url: coord.url, host: await createNodeHost('cpu', CAP), userCapBytes: CAP, name, seed: name.charCodeAt(1), agent: 'dashboard-pipelines-test', log: () => {} });
      clients.push(w);
      await w.start();
    }
    await dash.waitForFunction(() => document.querySelectorAll('[data-testid="pipe-stage"]').length === 3, undefined, { timeout: 30_000 });
    // Until a share has finished the rate reads "—"; then the measured figures.
    await dash.waitForFunction(() => /tokens\/s$/.test(document.querySelector('[data-testid="pipe-tps"]')?.textContent ?? ''), undefined, { timeout: 90_000 });

    const s = await status();
    expect(s.pipelines).toHaveLength(1);
    const p = s.pipelines![0];
    expect(p.stages.map((x) => [x.embeddings, x.head])).toEqual([[true, false], [false, false], [false, true]]);
    const drawn = await dash.$$eval('[data-testid="pipe-stage"]', (xs) => xs.map((x) => ({
      workerId: x.getAttribute('data-worker-id'), layers: [Number(x.getAttribute('data-from')), Number(x.getAttribute('data-to'))],
      embeddings: x.getAttribute('data-embeddings') === 'true', head: x.getAttribute('data-head') === 'true', inFlight: Number(x.getAttribute('data-in-flight')),
      left: (x as HTMLElement).style.left, width: (x as HTMLElement).style.width, text: x.textContent,
    })));
    expect(drawn.map(({ workerId, layers, embeddings, head, inFlight }) => ({ workerId, layers, embeddings, head, inFlight }))).toEqual(p.stages);
    const L = s.model.config.nLayer;
    drawn.forEach((d, i) => {
      expect(parseFloat(d.left)).toBeCloseTo((100 * p.stages[i].layers[0]) / L, 2);
      expect(parseFloat(d.width)).toBeCloseTo((100 * (p.stages[i].layers[1] - p.stages[i].layers[0])) / L, 2);
      expect(d.text).toContain(`${p.inFlight} in flight`);
    });
    expect(drawn[0].text).toContain('E + ');
    expect(drawn[2].text).toContain(' + H');
    expect(await dash.getAttribute('[data-testid="pipeline"]', 'data-pipeline-id')).toBe(p.id);
    expect(await dash.textContent('[data-testid="pipe-bubble"]')).toMatch(/^\d+%$/);

    // One memory bar per stage, each within its worker's 9 MiB; the cluster plan shows the same stage bars.
    const stageBars = await dash.$$eval('#pipelines [data-testid="mem-bar"]', (xs) => xs.map((x) => x.getAttribute('data-key')));
    expect(stageBars).toEqual(p.stages.map((x) => `${p.id}:${x.workerId}`));
    const totals = await dash.$$eval('#pipelines [data-testid="mem-bar"] .fig-total', (xs) => xs.map((x) => x.textContent ?? ''));
    for (const t of totals) expect(t).toMatch(/of 9\.00 MiB \((\d+)%\)/);
    for (const t of totals) expect(Number(/\((\d+)%\)/.exec(t)![1])).toBeLessThanOrEqual(100);
    const notes = await dash.$$eval('#memory-plan [data-testid="mem-bar"] .mem-note', (xs) => xs.map((x) => x.textContent ?? ''));
    expect(notes.filter((n) => n.includes(`pipeline ${p.id}`))).toHaveLength(3);

    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
    await (await dash.$('#pipelines'))!.screenshot({ path: join(ROOT, 'test-artifacts/dashboard-pipelines.png') });
    expect(browser.problems).toEqual([]);
  }, 180_000);
});
