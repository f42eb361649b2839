// Browser side of the Chromium conformance run (bundled by bundle.ts, loaded by index.html).
// Builds the SAME ConformanceEnv the Node run builds, but from navigator.gpu, with the fixture
// fetched from the static server, and exposes the cases to the driver (playwright) by name.
// Browser-only: nothing here may import Node modules or the `webgpu` package.

import { conformanceCases, type ConformanceCase } from '../conformance.case.ts';
import { stageCases } from '../stage.case.ts';
import { createKernelHarness, createWebGpuBackend, createWebGpuStageBackend, requestEngineDevice } from '../../../worker-web/engine/index.ts';
import type { ModelConfig } from '../../../shared/model/config.ts';
import type { TrainingBackend } from '../../../shared/backend.ts';
import type { PageApi, PageInfo, CaseResult } from './page-api.ts';

/** Errors the device reports outside any case's promise (validation, OOM, loss), by kernel label. */
const deviceErrors: string[] = [];

async function setup(): Promise<{ info: PageInfo; cases: Map<string, ConformanceCase> }> {
  const gpu = navigator.gpu;
  if (!gpu) throw new Error(`navigator.gpu is missing (secure context: ${String(isSecureContext)}): Chromium needs --enable-unsafe-webgpu`);
  const ed = await requestEngineDevice(gpu);
  ed.device.addEventListener('uncapturederror', (e) => {
    deviceErrors.push(`uncaptured WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`);
  });
  void ed.device.lost.then((l) => deviceErrors.push(`device lost (${l.reason}): ${l.message}`));
  const harness = createKernelHarness(ed.device);
  // As in the Node run: every backend on the page's one device (the suite disposes each; the
  // device's uncaptured errors are already collected above).
  const createBackend = (config: ModelConfig): Promise<TrainingBackend> =>
    createWebGpuBackend(config, { device: ed.device, adapterInfo: ed.info });
  const env = {
    label: 'webgpu-chromium',
    harness,
    createBackend,
    // The ragged whole-model case checks engine logic the Node run checks with the same code; in the
    // page it would be one more full compile (conformance.case.ts, raggedModelCase).
    raggedModelCase: false,
    loadFixture: async () => {
      const r = await fetch('/fixture/gpt2_tiny.bin');
      if (!r.ok) throw new Error(`fixture: GET /fixture/gpt2_tiny.bin gave HTTP ${r.status} (run npm run fixture)`);
      return r.arrayBuffer();
    },
    loadDpoFixture: async () => {
      const r = await fetch('/fixture/dpo_tiny.bin');
      if (!r.ok) throw new Error(`dpo fixture: GET /fixture/dpo_tiny.bin gave HTTP ${r.status} (run npm run fixture:dpo)`);
      return r.arrayBuffer();
    },
  };
  // The stage cases: three stage backends on the same device, chained (tests/engine/stage.case.ts).
  const list = [...conformanceCases(env), ...stageCases({ ...env, createStageBackend: (c, spec) => createWebGpuStageBackend(c, spec, { device: ed.device, adapterInfo: ed.info }) })];
  const cases = new Map<string, ConformanceCase>();
  for (const c of list) {
    if (cases.has(c.name)) throw new Error(`conformance suite: two cases named "${c.name}" (names must be unique)`);
    cases.set(c.name, c);
  }
  const i = ed.info;
  return {
    info: {
      adapter: [i.vendor, i.architecture, i.description].filter((s) => s).join(' / '),
      software: i.isSoftware,
      userAgent: navigator.userAgent,
      names: [...cases.keys()],
    },
    cases,
  };
}

const ready = setup();

const api: PageApi = {
  async info() {
    return (await ready).info;
  },
  async run(name: string): Promise<CaseResult> {
    const { cases } = await ready;
    const c = cases.get(name);
    if (!c) return { ok: false, ms: 0, error: `no case named "${name}" in the page` };
    const before = deviceErrors.length;
    const t0 = performance.now();
    try {
      await c.run();
      const late = deviceErrors.slice(before);
      // A case whose kernels raised device errors did not pass, whatever it compared.
      if (late.length) return { ok: false, ms: performance.now() - t0, error: late.join('\n') };
      return { ok: true, ms: performance.now() - t0 };
    } catch (e) {
      const err = e as Error;
      const extra = deviceErrors.slice(before);
      return { ok: false, ms: performance.now() - t0, error: [err.message, ...extra].join('\n'), stack: err.stack };
    }
  },
};

(globalThis as unknown as { __conformance: PageApi }).__conformance = api;
