// Device-level behaviour of the engine in Node (Dawn/SwiftShader): adapter info, the memory
// probe (the cap wins), plan errors that name the tensor, the memory cap, and recovery from a
// lost device (destroy it, see the report, rebuild, continue with identical results), and on the
// rebuilt device the conformance suite's ragged checks (vs the CPU backend, all-masked, bad token).
// The GPU kernel policy (split-K, two-pass column sums, matmul attention, its dispatch count) is
// pinned by the long-fixture case of conformance.node.test.ts (gpu-policy.case.ts), against PyTorch.

import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../worker-web/engine/node-gpu.ts';
import { requestEngineDevice } from '../../worker-web/engine/device.ts';
import { probeMemory } from '../../worker-web/engine/memory.ts';
import { createWebGpuBackend, type DeviceLossReport } from '../../worker-web/engine/backend.ts';
import { planEngine } from '../../worker-web/engine/plan.ts';
import { PRESETS, parameterCount, type ModelConfig } from '../../shared/model/config.ts';
import { Rng } from '../../shared/rng.ts';
import type { MicroBatch } from '../../shared/backend.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { adamwStep, createAdamWState, decayMask } from '../../shared/optim/adamw.ts';
import { assertClose, assertSameBits } from './conformance.case.ts';

const config: ModelConfig = { vocabSize: 29, contextLength: 8, nLayer: 1, nHead: 2, nEmbd: 8 };

function params(): Float32Array {
  const rng = new Rng(7);
  return Float32Array.from({ length: parameterCount(config) }, () => rng.normal() * 0.1);
}
// Token at position i is (3i+2) mod V: self-describing.
const batch: MicroBatch = {
  B: 1, T: 5,
  inputs: Int32Array.from({ length: 5 }, (_, i) => (3 * i + 2) % 29),
  targets: Int32Array.from({ length: 5 }, (_, i) => (3 * i + 5) % 29),
  mask: Uint8Array.from([1, 1, 0, 1, 1]),
};

describe('adapter and memory probe', () => {
  it('reports the adapter and detects SwiftShader as software', async () => {
    const d = await requestEngineDevice(nodeGpu());
    try {
      expect(d.info.architecture.length + d.info.vendor.length).toBeGreaterThan(0);
      const sw = /swiftshader/i.test(`${d.info.architecture} ${d.info.description}`);
      expect(d.info.isSoftware).toBe(sw || d.info.isSoftware);
      if (sw) expect(d.info.isSoftware).toBe(true);
      // We asked for the adapter's own limits: the device must have them.
      if (d.adapterLimits) expect(d.device.limits.maxStorageBufferBindingSize).toBe(d.adapter.limits.maxStorageBufferBindingSize);
    } finally {
      d.device.destroy();
    }
  });

  it('probes up to the cap and never past it (the cap wins)', async () => {
    const d = await requestEngineDevice(nodeGpu());
    try {
      const cap = 24 * 1024 * 1024 + 4096;
      const p = await probeMemory(d.device, cap, { chunkBytes: 8 * 1024 * 1024 });
      expect(p.usableBytes).toBeLessThanOrEqual(cap);
      expect(p.hitLimit || p.usableBytes === cap).toBe(true);
      await expect(probeMemory(d.device, 0)).rejects.toThrow(/capBytes/);
    } finally {
      d.device.destroy();
    }
  });
});

describe('memory plan', () => {
  const defaults = { maxBufferSize: 256 * 2 ** 20, maxStorageBufferBindingSize: 128 * 2 ** 20, minStorageBufferOffsetAlignment: 256 };
  it('names the parameter that exceeds the binding limit', () => {
    // gpt2's wte is 50257*768*4 = 154 MB > 128 MiB default binding.
    expect(() => planEngine(PRESETS.gpt2, 1, 64, defaults)).toThrow(/transformer\.wte\.weight.*154389504 bytes/);
  });
  it('names the activation that exceeds the binding limit and hints at the micro-batch', () => {
    const big = { ...defaults, maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 31 };
    expect(() => planEngine(PRESETS.gpt2, 16, 1024, big)).toThrow(/activation logits.*smaller micro-batch/);
  });
  it('refuses sequences whose attention row does not fit workgroup memory', () => {
    expect(() => planEngine({ ...PRESETS.tiny, contextLength: 8192 }, 1, 4096, { ...defaults, maxComputeWorkgroupStorageSize: 16384 }))
      .toThrow(/attention's score row.*at most 4032 tokens/);
  });
  it('sums the buffers the engine allocates', () => {
    const p = planEngine(PRESETS.tiny, 2, 16, defaults);
    expect(p.totalBytes).toBe(p.paramBytes + p.gradBytes + p.activationBytes + p.scratchBytes);
    expect(p.paramBytes).toBeGreaterThanOrEqual(parameterCount(PRESETS.tiny) * 4);
  });
});

describe('webgpu backend failures', () => {
  it('rejects bad calls with named errors before touching the GPU', async () => {
    const d = await requestEngineDevice(nodeGpu());
    try {
      const b = await createWebGpuBackend(config, { device: d.device });
      await expect(b.forwardBackward(batch)).rejects.toMatchObject({ code: 'ERR_NO_PARAMS' });
      await expect(b.setParams(new Float32Array(3))).rejects.toMatchObject({ code: 'ERR_PARAM_SIZE' });
      await b.setParams(params());
      await expect(b.forwardBackward({ ...batch, T: 9, inputs: new Int32Array(9), targets: new Int32Array(9), mask: new Uint8Array(9) }))
        .rejects.toMatchObject({ code: 'ERR_BATCH_SHAPE', message: expect.stringMatching(/webgpu backend.*contextLength/) });
      await expect(b.forwardBackward({ ...batch, mask: new Uint8Array(2) })).rejects.toMatchObject({ code: 'ERR_BATCH_SHAPE' });
      expect(b.plan).toBeUndefined(); // nothing was planned or allocated for the bad batches
      b.dispose();
      await expect(b.setParams(params())).rejects.toMatchObject({ code: 'ERR_BACKEND_DISPOSED' });
    } finally {
      d.device.destroy();
    }
  });

  it('refuses a plan over the memory cap, naming the bytes', async () => {
    const d = await requestEngineDevice(nodeGpu());
    try {
      await expect(createWebGpuBackend(config, { device: d.device, memoryCapBytes: 1000, maxMicroBatch: { B: 1, T: 5 } }))
        .rejects.toMatchObject({ code: 'ERR_ENGINE_MEMORY' });
    } finally {
      d.device.destroy();
    }
  });

  it('reports a lost device with the last kernel, refuses work, and a rebuilt backend continues identically (and runs local AdamW like shared/optim)', async () => {
    const gpu = nodeGpu();
    const b1 = await createWebGpuBackend(config, { gpu });
    await b1.setParams(params());
    const r1 = await b1.forwardBackward(batch);
    expect(r1.tokens).toBe(4);
    expect(b1.dispatchesPerStep).toBe(25 * config.nLayer + 13); // docs/engine.md: row attention, one norm chunk
    const reports: DeviceLossReport[] = [];
    b1.onLost((r) => reports.push(r));
    b1.device.destroy(); // what a driver reset looks like to the page
    await b1.device.lost;
    await new Promise((r) => setTimeout(r, 0));
    expect(reports).toHaveLength(1);
    expect(reports[0].reason).toBe('destroyed');
    expect(reports[0].lastKernel).toMatch(/^grad_norm_final_/);
    expect(b1.lost).toBe(true);
    await expect(b1.forwardBackward(batch)).rejects.toMatchObject({ code: 'ERR_WEBGPU_DEVICE_LOST' });
    b1.dispose();

    const b2 = await createWebGpuBackend(config, { gpu });
    try {
      await b2.setParams(params());
      const r2 = await b2.forwardBackward(batch);
      expect(r2.loss).toBe(r1.loss);
      expect(Buffer.from(r2.grads.buffer).equals(Buffer.from(r1.grads.buffer))).toBe(true);

      // A ragged micro-batch (B*T = 5: no tile or 4-multiple, T < contextLength) vs the CPU backend,
      // an all-masked batch, a bad token refused without changing anything: the conformance suite's
      // ragged case, here on a shape this device has compiled already (conformance.node.test.ts
      // leaves that case out for webgpu-node; the cpu environment still runs it).
      const cpu = createCpuBackend(config);
      await cpu.setParams(params());
      const want = await cpu.forwardBackward(batch);
      assertClose('ragged loss', [r2.loss], [want.loss], 1e-4, 0);
      assertClose('ragged grads', r2.grads, want.grads, 1e-3, 1e-6);
      assertClose('ragged grad norm', [r2.gradNorm], [want.gradNorm], 1e-4, 0);
      const none = await b2.forwardBackward({ ...batch, mask: new Uint8Array(batch.B * batch.T) });
      expect([none.loss, none.tokens, none.gradNorm], 'all-masked batch: loss, tokens, norm').toEqual([0, 0, 0]);
      const bad = { ...batch, inputs: Int32Array.from(batch.inputs) };
      bad.inputs[4] = config.vocabSize; // out of range
      await expect(b2.forwardBackward(bad)).rejects.toMatchObject({ code: 'ERR_TOKEN_RANGE' });
      const again = await b2.forwardBackward(batch);
      assertSameBits('after rejected input, grads', again.grads, r2.grads);

      // Local-step AdamW on the device matches shared/optim over two steps (moments persist).
      const table = buildParameterTable(config);
      const hyper = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
      const decay = (name: string) => table.byName.get(name)!.kind === 'weight';
      const ref = params();
      const state = createAdamWState(table.total);
      let g = r2.grads;
      for (let step = 0; step < 2; step++) {
        adamwStep(ref, g, state, 1e-2, hyper, decayMask(table));
        await b2.adamwStep({ lr: 1e-2, ...hyper, decay });
        const got = await b2.getParams();
        let worst = 0;
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / (1e-6 + Math.abs(ref[i])));
        expect(worst, `adamw step ${step + 1}: worst relative error`).toBeLessThan(1e-4);
        g = (await b2.forwardBackward(batch)).grads;
      }

      // Per-kernel GPU times (timestamp queries): one entry per dispatch of the step, labelled.
      if (b2.device.features.has('timestamp-query')) {
        const prof = await b2.profileStep(batch);
        expect(prof.map((p) => p.label)).toHaveLength(b2.dispatchesPerStep);
        expect(prof.every((p) => p.ms >= 0 && Number.isFinite(p.ms))).toBe(true);
        expect(prof[0].label).toMatch(/^encoder_forward_/);
      }
    } finally {
      b2.dispose();
    }
  }, 600_000); // two devices = two full pipeline compiles (~35 each; slow on a loaded SwiftShader)
});
