// Pipeline stages with fp16 activations on the wire (issue 12, the default --activations): the
// loss curve of a 3-stage pipeline stays within 1% of the same run with fp32 activations over 50
// steps (same seed and data; real sockets, the product worker loop on the CPU backends).
import { describe, expect, it } from 'vitest';
import { run } from './pipeline-run.ts';

describe('fp16 activations', () => {
  it('fp16 activations keep the loss curve within 1% of fp32 over 50 steps', async () => {
    // Four micro-batches of 2 rows per step (fp16 error relative to the loss shrinks with the batch).
    // A moderate learning rate: at 3e-3 the loss of 8-row steps spikes after ~20 steps, and any
    // perturbation (fp16, or another LR schedule) is amplified there; the curve compared is training's.
    const f32 = await run({ stages: true, steps: 50, activations: 'fp32', batch: 8, lr: 1e-3 });
    const f16 = await run({ stages: true, steps: 50, activations: 'fp16', batch: 8, lr: 1e-3 });
    expect(f16.losses).toHaveLength(50);
    let worst = 0;
    for (let s = 0; s < 50; s++) worst = Math.max(worst, Math.abs(f16.losses[s] - f32.losses[s]) / f32.losses[s]);
    console.log(`fp16 vs fp32 loss over 50 steps: worst relative difference ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(0.01);
    // fp16 is not fp32 under another name: the curves differ somewhere.
    expect(worst).toBeGreaterThan(0);
    expect(f16.losses[49]).toBeLessThan(f16.losses[0]);
  }, 60_000);
});
