// The CPU reference against PyTorch (tests/reference/gpt2_tiny.bin, made by make_fixture.py in
// float64 from our own initial parameters): logits, loss, every gradient tensor, and 10 AdamW
// steps with clipping and the LR schedule.
import { describe, expect, it } from 'vitest';
import { CpuGpt } from '../../../shared/model/cpu/gpt.ts';
import { initParameters } from '../../../shared/model/init.ts';
import { AdamW } from '../../../shared/optim/adamw.ts';
import { clipGradNorm } from '../../../shared/optim/clip.ts';
import { lrAt } from '../../../shared/optim/schedule.ts';
import { fixtureSetup, readFixture, type Fixture } from '../../reference/fixture.ts';

/** max |a-b| / max |ref|: error relative to the tensor's scale (meaningful where ref has zeros). */
function maxRel(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(a[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return m === 0 ? d : d / m;
}

function batchOf(fx: Fixture) {
  return { B: fx.B, T: fx.T, inputs: fx.inputs, targets: fx.targets, mask: Uint8Array.from(fx.mask) };
}

describe('CPU reference vs PyTorch fixture (tiny, B=2, T=16)', () => {
  const fx = readFixture();

  it('fixture was made from our setup and our seeded init', () => {
    const s = fixtureSetup();
    expect(fx.config).toEqual(s.config);
    expect([fx.B, fx.T, fx.nSteps, fx.seed]).toEqual([s.B, s.T, s.nSteps, s.seed]);
    expect(Array.from(fx.inputs)).toEqual(Array.from(s.inputs));
    expect(Array.from(fx.mask)).toContain(0);
    // Pins initParameters: same seed, bit-identical vector (regenerate the fixture if init changes on purpose).
    expect(Buffer.from(initParameters(fx.config, fx.seed).buffer).equals(Buffer.from(fx.params.buffer))).toBe(true);
  });

  it('logits, loss and every gradient tensor match within 1e-4 relative', () => {
    const model = new CpuGpt(fx.config);
    const { loss, tokens } = model.forward(fx.params, batchOf(fx));
    expect(tokens).toBe(fx.mask.reduce((a, b) => a + b, 0));
    expect(Math.abs(loss - fx.loss)).toBeLessThan(1e-5 * fx.loss);
    expect(maxRel(model.logits(), fx.logits)).toBeLessThan(1e-4);
    const grads = new Float32Array(fx.params.length);
    model.backward(grads);
    for (const t of model.table.tensors) {
      const a = grads.subarray(t.offset, t.offset + t.size);
      const r = fx.grads.subarray(t.offset, t.offset + t.size);
      expect(maxRel(a, r), t.name).toBeLessThan(1e-4);
    }
  });

  it('10 AdamW steps (clip 1.0, warmup+cosine) give the same losses, norms and parameters', () => {
    const model = new CpuGpt(fx.config);
    const params = new Float32Array(fx.params);
    const grads = new Float32Array(params.length);
    const h = fx.hyper;
    const opt = new AdamW(model.table, { beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: h.weightDecay });
    const batch = batchOf(fx);
    for (let step = 0; step < fx.nSteps; step++) {
      const { loss } = model.forward(params, batch);
      model.backward(grads);
      const norm = clipGradNorm(grads, h.maxGradNorm);
      expect(Math.abs(loss - fx.losses[step]), `loss at step ${step}`).toBeLessThan(1e-5 * fx.losses[step]);
      expect(Math.abs(norm - fx.gradNorms[step]), `grad norm at step ${step}`).toBeLessThan(1e-4 * fx.gradNorms[step]);
      opt.step(params, grads, lrAt(step, h));
    }
    expect(fx.losses[fx.nSteps - 1]).toBeLessThan(fx.losses[0] - 0.5); // the fixture really trains
    // Parameters moved by ~lr per step; compare the change against PyTorch's change.
    const moved = new Float32Array(params.length).map((_, i) => params[i] - fx.params[i]);
    const refMoved = new Float32Array(params.length).map((_, i) => fx.finalParams[i] - fx.params[i]);
    expect(maxRel(moved, refMoved)).toBeLessThan(1e-3);
    expect(maxRel(params, fx.finalParams)).toBeLessThan(1e-5);
  });
});
