// Node side of the Chromium conformance run: bundle the page, serve it on 127.0.0.1:0, open it in
// one headless Chromium (one page, one device for the whole suite: SwiftShader start-up is the
// slow part), then run cases one at a time by name. Console errors and uncaught page errors are
// kept and attached to the next failure, so a failing case says what the page saw.

import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { bundleConformancePage } from './bundle.ts';
import { serveStatic, type StaticServer } from './serve.ts';
import { launchBrowser, type Browser } from '../../e2e/chromium.ts';
import type { CaseResult, PageApi, PageInfo } from './page-api.ts';

const REFERENCE_DIR = fileURLToPath(new URL('../../reference/', import.meta.url));

export interface ConformancePage {
  info: PageInfo;
  run(name: string): Promise<CaseResult>;
  /** Page console errors and uncaught exceptions since the last call. */
  takePageErrors(): string[];
  close(): Promise<void>;
}

export async function openConformancePage(): Promise<ConformancePage> {
  const buildDir = await bundleConformancePage();
  let server: StaticServer | null = null;
  let browser: Browser | null = null;
  try {
    server = await serveStatic({ '/': buildDir, '/fixture/': REFERENCE_DIR });
    browser = await launchBrowser();
    const page: Page = await browser.context.newPage();
    const pageErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`console.error: ${m.text()}`);
    });
    page.on('pageerror', (e) => pageErrors.push(`uncaught in page: ${e.message}`));
    page.on('crash', () => pageErrors.push('the page crashed (renderer/GPU process died)'));
    await page.goto(`${server.origin}/index.html`);
    await page.waitForFunction(() => 'globalThis' in window && '__conformance' in globalThis, undefined, { timeout: 60_000 })
      .catch(() => {
        throw new Error(`conformance page did not start: ${pageErrors.join('; ') || 'no __conformance global (bundle failed to load?)'}`);
      });
    const info = await page.evaluate(() => (globalThis as unknown as { __conformance: PageApi }).__conformance.info());
    const srv = server;
    const br = browser;
    return {
      info,
      run: (name) => page.evaluate((n) => (globalThis as unknown as { __conformance: PageApi }).__conformance.run(n), name),
      takePageErrors: () => pageErrors.splice(0),
      async close() {
        await br.close();
        await srv.close();
      },
    };
  } catch (e) {
    await browser?.close();
    await server?.close();
    throw e;
  }
}

