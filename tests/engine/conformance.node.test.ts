// The conformance suite (conformance.case.ts) under vitest: once against the CPU reference
// backend, once against the WebGPU engine in Node (Dawn; SwiftShader on machines without a GPU),
// plus the GPU kernel policy forced on, against the long PyTorch fixture (gpu-policy.case.ts),
// and DiLoCo inner rounds on the engine vs the CPU reference (diloco-inner.case.ts).
// One device for the whole webgpu block: pipelines compile once (~0.5 s each on SwiftShader).

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conformanceCases } from './conformance.case.ts';
import { stageCases } from './stage.case.ts';
import { gpuPolicyCases } from './gpu-policy.case.ts';
import { dilocoInnerCase } from './diloco-inner.case.ts';
import { LONG_FIXTURE_PATH } from '../reference/fixture-long.ts';
import { parseFixtureBytes } from './fixture-bytes.ts';
import { FIXTURE_PATH, readFixture } from '../reference/fixture.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { nodeGpu } from '../../worker-web/engine/node-gpu.ts';
import { requestEngineDevice, type EngineDevice } from '../../worker-web/engine/device.ts';
import { createKernelHarness } from '../../worker-web/engine/harness.ts';
import { createWebGpuBackend } from '../../worker-web/engine/backend.ts';
import { createWebGpuStageBackend } from '../../worker-web/engine/stage-backend.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';

const loadFixture = async () => readFileSync(FIXTURE_PATH);
const loadLongFixture = async () => readFileSync(LONG_FIXTURE_PATH);
const loadDpoFixture = async () => readFileSync(new URL('../reference/dpo_tiny.bin', import.meta.url));

describe('fixture parser (browser-safe) agrees with the Node reader', () => {
  it('parses the same values as readFixture', () => {
    const a = parseFixtureBytes(readFileSync(FIXTURE_PATH));
    const b = readFixture();
    expect(a.config).toEqual(b.config);
    expect(a.loss).toBe(b.loss);
    expect(a.grads).toEqual(b.grads);
    expect(a.logits).toEqual(b.logits);
    expect(Array.from(a.gradNorms)).toEqual(Array.from(b.gradNorms));
  });
});

describe('conformance: cpu', () => {
  const cpuEnv = { label: 'cpu', createBackend: async (cfg: ModelConfig) => createCpuBackend(cfg), loadFixture, loadDpoFixture };
  for (const c of [...conformanceCases(cpuEnv), ...stageCases({ ...cpuEnv, createStageBackend: async (cfg, spec) => createCpuStageBackend(cfg, spec) })]) {
    it(c.name, c.run);
  }
  // The long fixture against our CPU reference too: the fixture itself is right.
  for (const c of gpuPolicyCases({ label: 'cpu', createBackend: async (cfg) => createCpuBackend(cfg), loadFixture: loadLongFixture, expectGpuPaths: false })) {
    it(c.name.replace('GPU kernel policy (split-K, two-pass column sums)', 'reference'), c.run);
  }
});

describe('conformance: webgpu (Node, Dawn)', () => {
  let dev: EngineDevice;
  const errors: string[] = [];
  const harness = createLazyHarness(() => dev.device);
  beforeAll(async () => {
    dev = await requestEngineDevice(nodeGpu());
    dev.device.addEventListener('uncapturederror', (e) => errors.push((e as GPUUncapturedErrorEvent).error.message));
  });
  afterAll(() => dev?.device.destroy());

  const env = {
    label: 'webgpu-node',
    createBackend: (cfg: ModelConfig) => createWebGpuBackend(cfg, { device: dev.device, adapterInfo: dev.info }),
    harness,
    loadFixture,
    loadDpoFixture,
    // The ragged whole-model case would be a full compile of its own shapes; device.node.test.ts
    // runs its checks (vs the CPU backend, all-masked, bad token) on a ragged shape it compiles anyway.
    raggedModelCase: false,
  };
  const cases = conformanceCases(env);
  cases.push(...stageCases({ ...env, createStageBackend: (cfg, spec) => createWebGpuStageBackend(cfg, spec, { device: dev.device, adapterInfo: dev.info }) }));
  // DiLoCo inner rounds vs the CPU reference (was tests/engine/diloco-inner.node.test.ts): on the
  // fixture's shapes, after the fixture case, so its step reuses the pipelines compiled above.
  cases.push(dilocoInnerCase('webgpu-node', (cfg, maxMicroBatch) => createWebGpuBackend(cfg, { device: dev.device, adapterInfo: dev.info, maxMicroBatch })));
  cases.push(...gpuPolicyCases({
    label: 'webgpu-node',
    createBackend: (cfg) => createWebGpuBackend(cfg, { device: dev.device, adapterInfo: dev.info, deviceClass: 'gpu' }),
    loadFixture: loadLongFixture,
    expectGpuPaths: true,
    // docs/engine.md: matmul attention (30L + 13), 4L + 1 split-K reductions, 6L + 1 second passes of column sums
    expectDispatches: (cfg) => 30 * cfg.nLayer + 13 + (4 * cfg.nLayer + 1) + (6 * cfg.nLayer + 1),
  }));
  for (const c of cases) {
    it(c.name, async () => {
      await c.run();
      expect(errors, 'uncaptured WebGPU errors').toEqual([]);
    }, 600_000); // whole-model cases compile a plan's ~35 pipelines: minutes on a loaded SwiftShader
  }
});

/** The harness needs the device, which exists only after beforeAll: forward each call. */
function createLazyHarness(getDevice: () => GPUDevice) {
  let h: ReturnType<typeof createKernelHarness> | undefined;
  const get = () => (h ??= createKernelHarness(getDevice()));
  return new Proxy({} as ReturnType<typeof createKernelHarness>, {
    get: (_t, k) => {
      const v = (get() as unknown as Record<string | symbol, unknown>)[k];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(get()) : v;
    },
  });
}
