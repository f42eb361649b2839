// The WebGPU engine's memory plan of a pipeline stage (planEngine with a spec; pure, no device):
// only the stage's tensors and blocks, the LM head's buffers only on the last stage, and a middle
// stage of gpt2 plans without the 154 MB wte that the default binding limit refuses.
import { describe, expect, it } from 'vitest';
import { PRESETS } from '../../shared/model/config.ts';
import { buildStageTable } from '../../shared/model/stage.ts';
import { paddedLayout, planEngine } from '../../worker-web/engine/plan.ts';

const limits = { maxBufferSize: 256 * 2 ** 20, maxStorageBufferBindingSize: 128 * 2 ** 20, minStorageBufferOffsetAlignment: 256 };
const names = (p: ReturnType<typeof planEngine>) => p.buffers.map((b) => b.name);
const count = (p: ReturnType<typeof planEngine>, n: string) => p.buffers.find((b) => b.name === n)!.count;

describe('stage memory plan', () => {
  const c = PRESETS.small;
  it('holds the stage table padded, its blocks\' activations, and the head buffers only on the last stage', () => {
    const full = planEngine(c, 2, 32, limits);
    const first = planEngine(c, 2, 32, limits, undefined, { from: 0, to: 2 });
    const mid = planEngine(c, 2, 32, limits, undefined, { from: 2, to: 3 });
    const last = planEngine(c, 2, 32, limits, undefined, { from: 3, to: 5 });
    for (const [p, spec] of [[first, { from: 0, to: 2 }], [mid, { from: 2, to: 3 }], [last, { from: 3, to: 5 }]] as const) {
      expect(p.paramBytes).toBe(paddedLayout(buildStageTable(c, spec), 256).floats * 4);
      expect(count(p, 'qkv')).toBe(spec.to - spec.from);
    }
    expect(names(first)).toContain('encoded');
    expect(names(mid)).toContain('stage_input');
    for (const p of [first, mid]) expect(names(p)).not.toContain('logits');
    expect(names(last)).toContain('logits');
    expect(mid.totalBytes).toBeLessThan(first.totalBytes);
    expect(first.totalBytes).toBeLessThan(full.totalBytes);
    expect(last.totalBytes).toBeLessThan(full.totalBytes);
    // the whole model as a stage plans exactly like the whole model
    expect(planEngine(c, 2, 32, limits, undefined, { from: 0, to: 5 }).totalBytes).toBe(full.totalBytes);
  });

  it('a middle stage of gpt2 needs no wte binding; the ends still do', () => {
    expect(() => planEngine(PRESETS.gpt2, 1, 64, limits, undefined, { from: 4, to: 8 })).not.toThrow();
    expect(() => planEngine(PRESETS.gpt2, 1, 64, limits, undefined, { from: 8, to: 12 })).toThrow(/transformer\.wte\.weight/);
  });

  it('refuses a spec that is not a block range', () => {
    expect(() => planEngine(c, 1, 8, limits, undefined, { from: 3, to: 3 })).toThrow(expect.objectContaining({ code: 'ERR_STAGE_SPEC' }));
  });
});
