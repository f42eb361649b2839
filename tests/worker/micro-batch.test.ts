// computeTask splits a task into the plan's micro-batches and recombines them token-weighted; the
// result must equal one forward+backward over the whole task (real CPU reference backend).
import { describe, it, expect } from 'vitest';
import { computeTask } from '../../worker-web/client/compute-step.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { Rng } from '../../shared/rng.ts';
import type { TaskMsg } from '../../shared/protocol/messages.ts';

function makeTask(B: number, T: number, V: number, seed: number): TaskMsg {
  const rng = new Rng(seed);
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const mask = new Uint8Array(B * T);
  for (let i = 0; i < B * T; i++) {
    inputs[i] = rng.int(V);
    targets[i] = rng.int(V);
    // Uneven masks so micro-batches carry different token counts (one row entirely masked out).
    mask[i] = Math.floor(i / T) === 1 ? 0 : rng.next() < 0.6 ? 1 : 0;
  }
  let tokens = 0;
  for (const m of mask) tokens += m;
  return { taskId: 't', step: 0, version: 0, B, T, inputs, targets, mask, tokens, sampleIds: new Uint32Array(B), leaseMs: 1e6 };
}

describe('computeTask micro-batching', () => {
  it('3 micro-batches of a 5-row task equal the whole task', async () => {
    const config = presetConfig('tiny');
    const backend = createCpuBackend(config);
    await backend.setParams(initParameters(config, 3));
    const task = makeTask(5, 8, config.vocabSize, 11);
    const whole = await computeTask(backend, task, 5);
    const split = await computeTask(backend, task, 2);
    expect(split.tokens).toBe(task.tokens);
    expect(whole.tokens).toBe(task.tokens);
    expect(split.loss).toBeCloseTo(whole.loss, 5);
    let maxDiff = 0;
    let maxAbs = 0;
    for (let i = 0; i < whole.grads.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(split.grads[i] - whole.grads[i]));
      maxAbs = Math.max(maxAbs, Math.abs(whole.grads[i]));
    }
    expect(maxAbs).toBeGreaterThan(0);
    expect(maxDiff / maxAbs).toBeLessThan(1e-5);
    expect(split.gradNorm).toBeCloseTo(whole.gradNorm, 4);
    expect(split.nonFinite).toBe(0);
    backend.dispose();
  });

  it('fixed-shape padding (rows masked out) changes nothing', async () => {
    const config = presetConfig('tiny');
    const backend = createCpuBackend(config);
    await backend.setParams(initParameters(config, 4));
    const task = makeTask(5, 8, config.vocabSize, 12);
    const whole = await computeTask(backend, task, 5);
    for (const [mb, label] of [[3, 'chunks of 3, last padded'], [8, 'one batch padded to 8']] as const) {
      const padded = await computeTask(backend, task, mb, true);
      expect(padded.tokens, label).toBe(task.tokens);
      expect(padded.loss, label).toBeCloseTo(whole.loss, 5);
      let maxDiff = 0;
      let maxAbs = 0;
      for (let i = 0; i < whole.grads.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(padded.grads[i] - whole.grads[i]));
        maxAbs = Math.max(maxAbs, Math.abs(whole.grads[i]));
      }
      expect(maxDiff / maxAbs, label).toBeLessThan(1e-5);
    }
    backend.dispose();
  });
});
