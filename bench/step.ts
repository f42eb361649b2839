// The full training step: forward + backward of one micro-batch with the whole gradient read
// back (what a worker sends), ours (the engine's TrainingBackend) against the same GPT in tfjs
// ops + tf.grads (tfjs-gpt.ts) and in jax-js (jax-gpt.ts, jit(valueAndGrad)), on the same
// parameters (shared/model/init.ts) and batch. The CPU reference's loss is the sanity anchor:
// every peer's loss must agree with it.

import type { ModelConfig } from '../shared/model/config.ts';
import type { MicroBatch, TrainingBackend } from '../shared/backend.ts';
import { initParameters } from '../shared/model/init.ts';
import { createCpuBackend } from '../shared/model/cpu-backend.ts';
import { Rng } from '../shared/rng.ts';
import { TfjsGpt } from './tfjs-gpt.ts';
import type { Tf } from './tfjs-peer.ts';
import type { JaxPeer } from './jax-peer.ts';
import { JaxGpt } from './jax-gpt.ts';
import { countDispatches, installDispatchCounter } from './dispatch-count.ts';
import { measure, type Subject, type TimingBudget } from './timing.ts';

export interface StepFigures {
  tokens: number;
  oursMs: number | null;
  tfjsMs: number | null;
  ratio: number | null;
  jaxMs: number | null;
  /** jax ms / our ms (> 1: we are faster). */
  ratioJax: number | null;
  jaxLoss: number | null;
  cpuLoss: number;
  oursLoss: number | null;
  tfjsLoss: number | null;
  /** Both present losses within 1e-3 relative of the CPU reference's; null when none ran. */
  lossesAgree: boolean | null;
  /** Our engine's own count (WebGpuBackend.dispatchesPerStep). */
  dispatchesPerStep: number | null;
  /** Compute dispatches counted in each peer's last step, ours included (a cross-check). */
  counted: Record<string, number>;
  notes: string[];
}

/** Random tokens (seeded) with every 7th position masked out, so the mask path is exercised. */
export function benchBatch(config: ModelConfig, B: number, T: number, seed = 1234): MicroBatch {
  const rng = new Rng(seed);
  const n = B * T;
  const inputs = new Int32Array(n);
  const targets = new Int32Array(n);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    inputs[i] = rng.int(config.vocabSize);
    targets[i] = rng.int(config.vocabSize);
    mask[i] = i % 7 === 6 ? 0 : 1;
  }
  return { B, T, inputs, targets, mask };
}

export interface StepArgs {
  config: ModelConfig;
  B: number;
  T: number;
  budget: TimingBudget;
  tf: Tf | null;
  jax: JaxPeer | null;
  /** The engine's backend (on the benchmark's device). */
  ours: () => Promise<{ backend: TrainingBackend; dispatchesPerStep: () => number | null }>;
}

const LOSS_RTOL = 1e-3;

export async function runStep(a: StepArgs): Promise<StepFigures> {
  const notes: string[] = [];
  const params = initParameters(a.config, 42);
  const batch = benchBatch(a.config, a.B, a.T);
  const cpu = createCpuBackend(a.config);
  await cpu.setParams(params);
  const ref = await cpu.forward(batch);
  cpu.dispose();

  const subjects: Record<string, Subject> = {};
  const losses: Record<string, number | null> = { ours: null, tfjs: null, jax: null };
  /** Dispatches counted in each peer's last step (see dispatch-count.ts). */
  const counted: Record<string, number> = {};
  installDispatchCounter();
  const counting = (name: string, step: () => Promise<number>): Subject => ({
    async enqueue() {
      counted[name] = await countDispatches(async () => {
        losses[name] = await step();
      });
    },
    sync: async () => undefined, // every peer's step already read its loss and gradient back
  });
  let dps: () => number | null = () => null;
  let ours: TrainingBackend | null = null;
  let gpt: TfjsGpt | null = null;
  let jgpt: JaxGpt | null = null;
  try {
    try {
      const o = await a.ours();
      ours = o.backend;
      dps = o.dispatchesPerStep;
      await ours.setParams(params);
      const be = ours;
      subjects.ours = counting('ours', async () => (await be.forwardBackward(batch)).loss);
    } catch (e) {
      notes.push(`ours: could not start: ${(e as Error).message}`);
    }
    if (a.tf) {
      gpt = new TfjsGpt(a.tf, a.config, params);
      const g = gpt;
      subjects.tfjs = counting('tfjs', async () => (await g.step(batch)).loss);
    } else {
      notes.push('tfjs: not run');
    }
    if (a.jax) {
      try {
        jgpt = new JaxGpt(a.jax.jax, a.config, params, a.B, a.T);
        const g = jgpt;
        subjects.jax = counting('jax', async () => (await g.step(batch)).loss);
      } catch (e) {
        notes.push(`jax: could not build the GPT: ${(e as Error).message}`);
      }
    }
    const t = await measure(subjects, a.budget);
    const ms = (n: string): number | null => {
      const r = t[n];
      if (!r) return null;
      if ('error' in r) {
        notes.push(`${n} failed: ${r.error}`);
        return null;
      }
      return r.ms;
    };
    const oursMs = ms('ours');
    const tfjsMs = ms('tfjs');
    const jaxMs = ms('jax');
    const close = (x: number | null) => x === null || Math.abs(x - ref.loss) <= LOSS_RTOL * Math.abs(ref.loss);
    const any = losses.ours !== null || losses.tfjs !== null || losses.jax !== null;
    const lossesAgree = any ? close(losses.ours) && close(losses.tfjs) && close(losses.jax) : null;
    if (lossesAgree === false) {
      notes.push(`LOSS MISMATCH: cpu ${ref.loss}, ours ${losses.ours ?? '-'}, tfjs ${losses.tfjs ?? '-'}, jax ${losses.jax ?? '-'} (rtol ${LOSS_RTOL})`);
    }
    return {
      tokens: ref.tokens,
      oursMs,
      tfjsMs,
      ratio: oursMs && tfjsMs ? tfjsMs / oursMs : null,
      jaxMs,
      ratioJax: oursMs && jaxMs ? jaxMs / oursMs : null,
      jaxLoss: losses.jax,
      cpuLoss: ref.loss,
      oursLoss: losses.ours,
      tfjsLoss: losses.tfjs,
      lossesAgree,
      dispatchesPerStep: dps(),
      counted,
      notes,
    };
  } finally {
    ours?.dispose();
    gpt?.dispose();
    jgpt?.dispose();
  }
}
