// One Chromium worker tab (SwiftShader) against a running coordinator, for --seconds: polls
// /api/status every 15 s and prints step, time and load average, then s/step after the first step.
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json npx tsx bench/arith/tab-rate.ts --url http://127.0.0.1:8080 [--seconds 300]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { launchBrowser } from '../../tests/e2e/chromium.ts';

const { values } = parseArgs({ options: { url: { type: 'string' }, seconds: { type: 'string', default: '300' } } });
if (!values.url) throw new Error('tab-rate: --url of a running coordinator is required');
const url = values.url;
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  await page.goto(`${url}/worker/?coordinator=${encodeURIComponent(url)}`);
  await page.waitForSelector('#start:not([disabled])', { timeout: 120_000 });
  await page.fill('#worker-name', 'tab-rate');
  await page.uncheck('#pause-hidden');
  await page.click('#start');
  const t0 = Date.now();
  const points: Array<{ t: number; step: number }> = [];
  while (Date.now() - t0 < 1000 * Number(values.seconds)) {
    const st = await (await fetch(`${url}/api/status`)).json() as { step: number };
    points.push({ t: (Date.now() - t0) / 1000, step: st.step });
    console.log(`${points.at(-1)!.t.toFixed(0)} s: step ${st.step}, load ${loadavg()[0].toFixed(2)}`);
    await new Promise((r) => setTimeout(r, 15_000));
  }
  const first = points.find((p) => p.step >= 1), last = points.at(-1)!;
  if (first && last.step > first.step) console.log(`s/step after the first step: ${((last.t - first.t) / (last.step - first.step)).toFixed(2)} (steps ${first.step} -> ${last.step})`);
} finally {
  await browser.close();
}
