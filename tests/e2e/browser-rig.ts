// The setup the browser tests against a real coordinator share: the built pages (built here when a
// test runs on its own; tests/run-all.sh builds first), an in-process coordinator on loopback port 0
// with a temporary run directory, Chromium from chromium.ts and a first page; close() undoes it all.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import type { CoordinatorConfigInput } from '../../coordinator/config.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { launchBrowser, type Browser } from './chromium.ts';

export const ROOT = resolve(import.meta.dirname, '../..');

/** Builds dist/dashboard when it is missing. */
export function ensureDashboardBuilt(): void {
  if (!existsSync(join(ROOT, 'dist/dashboard/index.html'))) {
    execFileSync('npx', ['vite', 'build', '--config', 'dashboard/vite.config.ts', '--logLevel', 'warn'], { cwd: ROOT, stdio: 'inherit' });
  }
}

export interface BrowserRig {
  coord: CoordinatorHandle;
  browser: Browser;
  runDir: string;
  /** The first page (the tests open the dashboard in it). */
  dash: Page;
  /** GET /api/status. */
  status(): Promise<StatusSnapshot>;
  close(): Promise<void>;
}

/** Dashboard pages built, a coordinator (tiny unless `config` says otherwise) and Chromium with one page. */
export async function startBrowserRig(name: string, config: Partial<CoordinatorConfigInput> = {}): Promise<BrowserRig> {
  ensureDashboardBuilt();
  const runDir = mkdtempSync(join(tmpdir(), `${name}-`));
  let coord: CoordinatorHandle | undefined;
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    await coord?.close();
    rmSync(runDir, { recursive: true, force: true });
  };
  try {
    coord = await startCoordinator({
      preset: 'tiny', port: 0, host: '127.0.0.1', runDir, resume: false, checkpointEvery: 0, logLevel: 'silent', ...config,
    });
    browser = await launchBrowser();
    const dash = await browser.newPage();
    const c = coord;
    return { coord: c, browser, runDir, dash, status: async () => (await (await fetch(`${c.url}/api/status`)).json()) as StatusSnapshot, close };
  } catch (e) {
    await close();
    throw e;
  }
}
