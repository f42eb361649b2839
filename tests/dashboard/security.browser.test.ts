// The dashboard's Security panel in Chromium against the real coordinator (tiny preset, every
// result re-computed: --verify-rate 1) with two product worker clients on the CPU engine: an
// honest one and one that flips the sign of its gradients. The liar's results fail re-computation
// and it is banned; the panel shows the checks and mismatches, the ban with the coordinator's
// reason (as text), and the workers table's trust column says "banned" for it and a percentage for
// the honest worker. Everything shown is compared with GET /api/status. The panel is saved as
// test-artifacts/dashboard-security.png.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import type { CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { parseFault } from '../../worker-web/client/faults.ts';
import { createNodeHost } from '../../worker-web/node/host.ts';
import { join } from 'node:path';
import type { Browser } from '../e2e/chromium.ts';
import { ROOT, startBrowserRig, type BrowserRig } from '../e2e/browser-rig.ts';

let rig: BrowserRig;
let coord: CoordinatorHandle;
let dash: Page;
let browser: Browser;
const clients: WorkerClient[] = [];
const status = () => rig.status();

async function worker(name: string, fault: string): Promise<WorkerClient> {
  const w = new WorkerClient({ url: coord.url, host: await createNodeHost('cpu'), name, fault: parseFault(fault), seed: name.length, agent: 'dashboard-security-test', log: () => {} });
  clients.push(w);
  await w.start();
  return w;
}

beforeAll(async () => {
  rig = await startBrowserRig('dash-security', {
    evalEvery: 0, adminToken: 'dash-security-admin', globalBatch: 8, maxMicroBatch: 4, verifyRate: 1,
  });
  ({ coord, dash, browser } = rig);
});

afterAll(async () => {
  for (const c of clients) await c.stop('test over').catch(() => undefined);
  await rig?.close();
});

const text = async (sel: string) => ((await dash.textContent(sel)) ?? '').trim();

describe('dashboard Security panel', () => {
  it('shows the defences, then a sign-flipping worker banned with its reason and trust per worker', async () => {
    await dash.goto(`${coord.url}/`);
    await dash.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
    await dash.waitForSelector('#security[data-state="on"]', { timeout: 10_000 });
    expect(await dash.isVisible('#sec-absent')).toBe(false);
    expect(await text('#sec-aggregate')).toBe('mean');
    expect(await text('#sec-verify-rate')).toBe('100% (tolerance 5%)');
    expect(await text('#sec-ban-count')).toBe('0');
    expect(await dash.isVisible('#sec-bans [data-testid="bans-empty"]')).toBe(true);

    const honest = await worker('honest', 'none');
    const liar = await worker('liar', 'sign-flip');
    // The client leaves by itself on BANNED (its second failed re-computation, a few seconds in).
    await Promise.race([
      liar.stoppedPromise(),
      new Promise((_, rej) => setTimeout(() => rej(new Error(`liar not banned within 60 s: ${JSON.stringify(liar.stats.rejectedByCode)}, ${liar.stats.tasksDone} tasks`)), 60_000)),
    ]);
    const liarId = liar.stats.workerId!;
    const honestId = honest.stats.workerId!;

    const ban = `#sec-bans li[data-testid="ban"][data-worker-id="${liarId}"]`;
    await dash.waitForSelector(ban, { timeout: 20_000 });
    const s = await status();
    const banned = s.security!.banned.find((b) => b.id === liarId)!;
    expect(banned.reason).toMatch(/failed re-computation/);
    expect(await text(`${ban} [data-testid="ban-id"]`)).toBe(liarId);
    expect(await text(`${ban} [data-testid="ban-reason"]`)).toBe(banned.reason);
    expect(await dash.$$eval('#sec-bans li[data-testid="ban"]', (l) => l.length)).toBe(1);
    expect(await text('#sec-ban-count')).toBe('1');
    expect(Number(await text('#sec-mismatches'))).toBeGreaterThanOrEqual(2);
    expect(Number((await text('#sec-verified')).replace(/,/g, ''))).toBeGreaterThanOrEqual(2);
    expect(await text('#sec-rejects')).toMatch(/VERIFY_FAILED \d+/);

    // Trust column: the liar is banned; the honest worker has a percentage (reported by the coordinator).
    const cell = (id: string) => `tr[data-testid="worker-row"][data-worker-id="${id}"] td[data-col="trust"]`;
    await dash.waitForSelector(`${cell(liarId)}:text("banned")`, { timeout: 10_000 });
    expect(await dash.getAttribute(`tr[data-worker-id="${liarId}"]`, 'class')).toMatch(/banned/);
    expect(await text(cell(honestId))).toMatch(/^\d{1,3}%$/);
    expect(s.security!.trust[honestId].banned).toBe(false);
    expect(await dash.getAttribute(cell(honestId), 'title')).toMatch(/^verified ok \d+, mismatches 0, penalty \d+/);
    await dash.locator('#security').scrollIntoViewIfNeeded();
    await dash.locator('#security').screenshot({ path: join(ROOT, 'test-artifacts/dashboard-security.png') });
    expect(browser.problems).toEqual([]);
  }, 120_000);
});
