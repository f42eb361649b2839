// Issue 12, memory on real GPUs: the device asks for the adapter's own buffer limits (falling back
// step by step), the probe has no 4 GiB ceiling, and the planner's promise (shared/memory/plan.ts)
// is what the engine's plan (worker-web/engine/plan.ts) accepts, for fake limits and for the real
// SwiftShader device.
import { describe, expect, it } from 'vitest';
import { deviceRequests, requestEngineDevice } from '../../worker-web/engine/device.ts';
import { nodeGpu } from '../../worker-web/engine/node-gpu.ts';
import { planEngine } from '../../worker-web/engine/plan.ts';
import { probeCeiling, PROBE_CEILING_SW } from '../../worker-web/client/webgpu-host.ts';
import { planWorker } from '../../shared/memory/plan.ts';
import { formPipelines } from '../../shared/memory/pipeline-plan.ts';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
// A desktop GPU's adapter (Chrome on an RTX-class card reports about these).
const desktop = { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 2 * GiB, maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024 };

/** An adapter that rejects any request asking for more than `accepts` lists (what some drivers do with their own maxima). */
function fakeGpu(accepts: string[]): { gpu: GPU; asked: GPUDeviceDescriptor[] } {
  const asked: GPUDeviceDescriptor[] = [];
  const adapter = {
    limits: desktop,
    features: new Set(['shader-f16', 'timestamp-query', 'texture-compression-bc']),
    info: { vendor: 'nvidia', architecture: 'ampere', device: '', description: '' },
    async requestDevice(d: GPUDeviceDescriptor = {}) {
      asked.push(d);
      const keys = [...Object.keys(d.requiredLimits ?? {}), ...(d.requiredFeatures ?? [])];
      if (keys.some((k) => !accepts.includes(k))) throw new Error(`OperationError: ${keys.find((k) => !accepts.includes(k))} rejected`);
      return { limits: { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB, ...d.requiredLimits } };
    },
  };
  return { gpu: { requestAdapter: async () => adapter } as unknown as GPU, asked };
}

describe('device limits request', () => {
  it('asks for every wanted limit at the adapter\'s value, then the two buffer limits alone, then defaults', () => {
    const r = deviceRequests(desktop, new Set(['shader-f16', 'texture-compression-bc']));
    expect(r.map((x) => x.granted)).toEqual(['adapter', 'buffers', 'defaults']);
    expect(r[0].descriptor.requiredLimits).toEqual(desktop);
    expect(r[0].descriptor.requiredFeatures).toEqual(['shader-f16']);
    expect(r[1].descriptor.requiredLimits).toEqual({ maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 2 * GiB });
    expect(r[2].descriptor.requiredLimits).toBeUndefined();
  });

  it('keeps the adapter\'s buffer limits when the driver rejects its other maxima', async () => {
    const { gpu, asked } = fakeGpu(['maxBufferSize', 'maxStorageBufferBindingSize']);
    const d = await requestEngineDevice(gpu);
    expect(asked).toHaveLength(2);
    expect(d.limitsGranted).toBe('buffers');
    expect(d.adapterLimits).toBe(true);
    expect(d.device.limits.maxStorageBufferBindingSize).toBe(2 * GiB);
    expect(d.features).toEqual([]);
    const none = await requestEngineDevice(fakeGpu([]).gpu);
    expect(none.limitsGranted).toBe('defaults');
    expect(none.device.limits.maxStorageBufferBindingSize).toBe(128 * MiB);
  });
});

describe('probe ceiling', () => {
  it('hardware: the user\'s cap, or no ceiling short of the runaway guard (was 4 GiB); software: at most 512 MiB', () => {
    expect(probeCeiling(false, 16 * GiB)).toBe(16 * GiB);
    expect(probeCeiling(false)).toBeGreaterThanOrEqual(256 * GiB);
    expect(probeCeiling(true)).toBe(PROBE_CEILING_SW);
    expect(probeCeiling(true, 9 * MiB)).toBe(9 * MiB);
    expect(probeCeiling(true, 4 * GiB)).toBe(PROBE_CEILING_SW);
  });
});

/** What the planner promises for this worker, checked against the engine's own plan. */
function agree(c: ModelConfig, limits: { maxBufferSize: number; maxStorageBufferBindingSize: number }, seqLen: number): 'replica' | 'refused' {
  const p = planWorker(c, { probedBytes: 64 * GiB, ...limits }, { seqLen, maxMicroBatch: 8 });
  const engine = () => planEngine(c, p.role === 'replica' ? p.microBatch : 1, seqLen, { ...limits, minStorageBufferOffsetAlignment: 256 });
  if (p.role === 'replica') {
    expect(p.seqLen).toBe(seqLen);
    expect(engine).not.toThrow();
    return 'replica';
  }
  // The planner refused the whole model: the engine refuses its parameters too.
  expect(engine).toThrow(/parameter/);
  return 'refused';
}

describe('the planner promises what the engine can allocate', () => {
  it('fake adapter limits: GPT-2 whole needs a 498 MB parameter buffer and wte (154 MB) within the binding limit', () => {
    const gpt2 = PRESETS.gpt2;
    expect(agree(gpt2, { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB }, 256)).toBe('refused');
    expect(agree(gpt2, { maxBufferSize: 400 * MiB, maxStorageBufferBindingSize: 400 * MiB }, 256)).toBe('refused');
    expect(agree(gpt2, { maxBufferSize: 600 * MiB, maxStorageBufferBindingSize: 128 * MiB }, 256)).toBe('refused');
    expect(agree(gpt2, { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 2 * GiB }, 256)).toBe('replica');
    expect(agree(PRESETS.small, { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB }, 128)).toBe('replica');
  });

  it('pipeline stages: every stage formPipelines assigns, the stage engine can plan, within the bytes promised', () => {
    const align = { minStorageBufferOffsetAlignment: 256 };
    const cases = [
      { c: PRESETS.small, budget: 9 * MiB, n: 3, seq: 16, limits: { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB } },
      { c: PRESETS.small, budget: 9 * MiB, n: 5, seq: 128, limits: { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB } },
      { c: PRESETS.gpt2, budget: 1.5 * GiB, n: 3, seq: 256, limits: { maxBufferSize: GiB, maxStorageBufferBindingSize: GiB } },
    ];
    for (const k of cases) {
      const r = formPipelines(k.c, Array.from({ length: k.n }, (_, i) => ({ id: `w${i}`, budgetBytes: k.budget, ...k.limits })), { seqLen: k.seq, maxMicroBatch: 64 });
      expect(r.pipelines.length).toBeGreaterThanOrEqual(1);
      for (const p of r.pipelines) {
        for (const s of p.stages) {
          const e = planEngine(k.c, p.microBatch, k.seq, { ...k.limits, ...align }, undefined, { from: s.layers[0], to: s.layers[1] });
          expect(e.totalBytes).toBeLessThanOrEqual(s.paramBytes + s.activationBytes);
        }
      }
    }
    // GPT-2 on an adapter at the 128 MiB default binding: no worker may hold an end (wte, 154 MB), and the engine agrees.
    const tight = { maxBufferSize: 512 * MiB, maxStorageBufferBindingSize: 128 * MiB };
    const none = formPipelines(PRESETS.gpt2, ['a', 'b', 'c'].map((id) => ({ id, budgetBytes: 2 * GiB, ...tight })), { seqLen: 128 });
    expect(none.pipelines).toEqual([]);
    expect(none.leftOver[0].reason).toMatch(/wte .* exceeds the binding limit/);
    expect(() => planEngine(PRESETS.gpt2, 1, 128, { ...tight, ...align }, undefined, { from: 0, to: 1 })).toThrow(/wte/);
    expect(() => planEngine(PRESETS.gpt2, 1, 128, { ...tight, ...align }, undefined, { from: 1, to: 4 })).not.toThrow();
  });

  it('the real SwiftShader device: granted the adapter\'s limits, and planner and engine agree on them', async () => {
    const d = await requestEngineDevice(nodeGpu());
    try {
      expect(d.limitsGranted).toBe('adapter');
      expect(d.device.limits.maxBufferSize).toBe(d.adapter.limits.maxBufferSize);
      expect(d.device.limits.maxStorageBufferBindingSize).toBe(d.adapter.limits.maxStorageBufferBindingSize);
      const limits = { maxBufferSize: d.device.limits.maxBufferSize, maxStorageBufferBindingSize: d.device.limits.maxStorageBufferBindingSize };
      expect(agree(PRESETS.small, limits, 128)).toBe('replica');
      // GPT-2 on this device: whichever way it goes, both sides say the same.
      agree(PRESETS.gpt2, limits, 256);
    } finally {
      d.device.destroy();
    }
  });
});
