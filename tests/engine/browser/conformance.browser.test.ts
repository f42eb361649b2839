// The engine conformance suite (tests/engine/conformance.case.ts), unchanged, in headless
// Chromium on WebGPU (SwiftShader here): each browser case is its own vitest test. The page is
// opened while the file is collected, because the case names come from the page (they depend on
// what the engine in the page offers); a page that cannot start fails the file with the reason.

import { afterAll, describe, expect, it } from 'vitest';
import { openConformancePage } from './runner.ts';

// Whole-model cases compile dozens of pipelines on SwiftShader (40 s each under load here). A case
// cut off by vitest would keep running in the page and overlap the next one, so be generous.
const CASE_TIMEOUT_MS = 300_000;

const page = await openConformancePage();

describe(`engine conformance in Chromium (webgpu-chromium on ${page.info.adapter})`, () => {
  afterAll(async () => {
    await page.close();
  });

  it('the page runs WebGPU in Chromium and offers the suite', () => {
    expect(page.info.userAgent).toMatch(/Chrome\//);
    expect(page.info.names.length).toBeGreaterThan(0);
  });

  it('the driver reports a case the page does not have as a failure (a run cannot pass by default)', async () => {
    const r = await page.run('no such case');
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/no case named "no such case"/);
  });

  for (const name of page.info.names) {
    it(name, async () => {
      const r = await page.run(name);
      const seen = page.takePageErrors();
      if (!r.ok) {
        throw new Error(`[webgpu-chromium] ${name}: ${r.error ?? 'failed'}${seen.length ? `\npage said:\n${seen.join('\n')}` : ''}`);
      }
    }, CASE_TIMEOUT_MS);
  }
});
