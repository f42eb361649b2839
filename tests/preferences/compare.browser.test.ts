// The playground's Compare mode in a real browser (Chromium via playwright-core) against the real
// coordinator (tiny preset, in-process on port 0, no workers, the built pages under its CSP):
//  - two samples side by side, each exactly what POST /api/generate returns for its seed;
//  - "A is better" stores {prompt, chosen: A, rejected: B} (read back with GET /api/preferences),
//    the page's count and the live dashboard's count (pushed over socket.io) go up;
//  - "Neither" stores nothing; "B is better" stores B as chosen;
//  - a request the server refuses shows its error on the page; no CSP violation or page error.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { launchBrowser, type Browser } from '../e2e/chromium.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const PROMPT = '12+34=';
const MAX = 6;
const TEMP = 1;

let coord: CoordinatorHandle;
let browser: Browser;
let runDir: string;
let dash: Page;
let play: Page;

async function generate(seed: number): Promise<string> {
  const r = await fetch(`${coord.url}/api/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: PROMPT, maxTokens: MAX, temperature: TEMP, seed }) });
  return ((await r.json()) as { text: string }).text;
}

async function stored(): Promise<{ count: number; rows: Array<{ prompt: string; chosen: string; rejected: string; step: number }> }> {
  return (await (await fetch(`${coord.url}/api/preferences?limit=500`)).json()) as never;
}

/** The first seeds N >= from whose samples N and N+1 are non-empty and different (a storable pair). */
async function storableSeed(from: number): Promise<{ seed: number; a: string; b: string }> {
  for (let seed = from; seed < from + 50; seed++) {
    const [a, b] = [await generate(seed), await generate(seed + 1)];
    if (a && b && a !== b) return { seed, a, b };
  }
  throw new Error('no storable pair in 50 seeds');
}

/** Samples a pair on the page with this base seed and waits until it is shown. */
async function sample(seed: number): Promise<{ a: string; b: string }> {
  await play.fill('#cmp-prompt', PROMPT);
  await play.fill('#cmp-max', String(MAX));
  await play.fill('#cmp-temp', String(TEMP));
  await play.fill('#cmp-seed', String(seed));
  await play.click('#cmp-submit');
  await play.waitForSelector(`#cmp-pair[data-state="ready"] #cmp-b[data-seed="${seed + 1}"]`, { timeout: 30_000 });
  return { a: (await play.textContent('[data-testid="cmp-a-text"]'))!, b: (await play.textContent('[data-testid="cmp-b-text"]'))! };
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/dashboard/playground.html'))) {
    execFileSync('npx', ['vite', 'build', '--config', 'dashboard/vite.config.ts', '--logLevel', 'warn'], { cwd: ROOT, stdio: 'inherit' });
  }
  runDir = mkdtempSync(join(tmpdir(), 'prefs-compare-'));
  coord = await startCoordinator({ preset: 'tiny', port: 0, host: '127.0.0.1', runDir, resume: false, checkpointEvery: 0, evalEvery: 0, logLevel: 'silent' });
  browser = await launchBrowser();
  dash = await browser.newPage();
  play = await browser.newPage();
});

afterAll(async () => {
  await browser?.close();
  await coord?.close();
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

describe('playground Compare mode against the real coordinator', () => {
  it('shows two samples, records the choice, and the dashboard count goes up', async () => {
    await dash.goto(`${coord.url}/`);
    await dash.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
    await dash.waitForSelector('#stat-preferences:text-is("0")', { timeout: 10_000 });

    await play.goto(`${coord.url}/playground.html#compare`);
    expect(await play.isVisible('#compare-mode')).toBe(true);
    expect(await play.isVisible('#generate-mode')).toBe(false);
    await play.waitForSelector('#cmp-count[data-count="0"]', { timeout: 10_000 });
    expect(await play.textContent('#cmp-count')).toBe('0 pairs');

    const first = await storableSeed(1);
    const shown = await sample(first.seed);
    // Both samples are the server's own for their seeds, side by side.
    expect(shown).toEqual({ a: first.a, b: first.b });
    expect(await play.textContent('#cmp-a .prompt')).toBe(PROMPT);
    expect(await play.isEnabled('#cmp-pick-a')).toBe(true);

    await play.click('#cmp-pick-a');
    await play.waitForSelector('#cmp-msg[data-choice="A"]', { timeout: 10_000 });
    expect(await play.textContent('#cmp-msg')).toBe('Recorded: A is better (1 stored).');
    expect(await play.textContent('#cmp-count')).toBe('1 pair');
    expect(await play.isEnabled('#cmp-pick-a')).toBe(false); // one choice per pair
    let s = await stored();
    expect(s.count).toBe(1);
    expect(s.rows[0]).toMatchObject({ prompt: PROMPT, chosen: first.a, rejected: first.b, step: 0 });
    // The live dashboard's count follows (status pushed over socket.io, no reload).
    await dash.waitForSelector('#stat-preferences:text-is("1")', { timeout: 10_000 });

    // Neither: nothing stored.
    const second = await storableSeed(first.seed + 2);
    await sample(second.seed);
    await play.click('#cmp-neither');
    await play.waitForSelector('#cmp-msg[data-choice="neither"]', { timeout: 10_000 });
    expect(await play.textContent('#cmp-msg')).toBe('Skipped: nothing recorded.');
    expect((await stored()).count).toBe(1);

    // B is better: B stored as chosen.
    await sample(second.seed);
    await play.click('#cmp-pick-b');
    await play.waitForSelector('#cmp-msg[data-choice="B"]', { timeout: 10_000 });
    s = await stored();
    expect(s.count).toBe(2);
    expect(s.rows[1]).toMatchObject({ prompt: PROMPT, chosen: second.b, rejected: second.a });
    await dash.waitForSelector('#stat-preferences:text-is("2")', { timeout: 10_000 });
    expect(await play.textContent('#cmp-count')).toBe('2 pairs');
  });

  it('shows errors: the page refuses temperature 0, the server refuses a prompt longer than the context', async () => {
    await play.fill('#cmp-seed', '');
    await play.fill('#cmp-temp', '0');
    await play.click('#cmp-submit');
    await play.waitForSelector('#cmp-error:has-text("Temperature 0 is greedy")', { timeout: 10_000 });
    await play.fill('#cmp-temp', '1');
    await play.fill('#cmp-prompt', 'x'.repeat(200));
    await play.click('#cmp-submit');
    await play.waitForSelector('#cmp-pair[data-state="error"]', { timeout: 10_000 });
    expect(await play.textContent('#cmp-error')).toMatch(/^ERR_PROMPT_TOO_LONG: .*context/);
    expect(await play.isEnabled('#cmp-pick-a')).toBe(false);
    expect((await stored()).count).toBe(2);
  });

  it("the task's example prompts fill the prompt and sample a pair", async () => {
    await play.fill('#cmp-seed', '5');
    await play.click('#cmp-suggestions button[data-prompt="rev cat="]');
    await play.waitForSelector('#cmp-pair[data-state="ready"] #cmp-a .prompt:text-is("rev cat=")', { timeout: 30_000 });
    expect(await play.inputValue('#cmp-prompt')).toBe('rev cat=');
    expect(await play.getAttribute('#cmp-b', 'data-seed')).toBe('6');
  });

  it('switches back to Generate mode with the tab', async () => {
    await play.click('#mode-generate');
    expect(await play.isVisible('#generate-mode')).toBe(true);
    expect(await play.isVisible('#compare-mode')).toBe(false);
    expect(await play.getAttribute('#mode-generate', 'aria-selected')).toBe('true');
  });

  it('had no CSP violation or page error', () => {
    expect(browser.problems).toEqual([]);
  });
});
