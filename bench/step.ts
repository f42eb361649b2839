// The full training step: forward + backward of one micro-batch with the whole gradient read
// back (what a worker sends), ours (the engine's TrainingBackend) against the same GPT in tfjs
// ops + tf.grads (tfjs-gpt.ts), on the same parameters (shared/model/init.ts) and batch. The CPU
// reference's loss is the sanity anchor: both losses must agree with it.

import type { ModelConfig } from '../shared/model/config.ts';
import type { MicroBatch, TrainingBackend } from '../shared/backend.ts';
import { initParameters } from '../shared/model/init.ts';
import { createCpuBackend } from '../shared/model/cpu-backend.ts';
import { Rng } from '../shared/rng.ts';
import { TfjsGpt } from './tfjs-gpt.ts';
import type { Tf } from './tfjs-peer.ts';
import { timeIt, type TimingBudget } from './timing.ts';

export interface StepFigures {
  tokens: number;
  oursMs: number | null;
  tfjsMs: number | null;
  ratio: number | null;
  cpuLoss: number;
  oursLoss: number | null;
  tfjsLoss: number | null;
  /** Both present losses within 1e-3 relative of the CPU reference's; null when none ran. */
  lossesAgree: boolean | null;
  dispatchesPerStep: number | null;
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
  device: GPUDevice;
  tf: Tf | null;
  /** The engine's backend on `device`, or a reason it is not available. */
  ours: (() => Promise<{ backend: TrainingBackend; dispatchesPerStep: () => number | null }>) | string;
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

  let oursMs: number | null = null;
  let oursLoss: number | null = null;
  let dispatchesPerStep: number | null = null;
  if (typeof a.ours === 'string') {
    notes.push(`ours: ${a.ours}`);
  } else {
    const { backend, dispatchesPerStep: dps } = await a.ours();
    try {
      await backend.setParams(params);
      let last = 0;
      const t = await timeIt(
        async () => {
          last = (await backend.forwardBackward(batch)).loss;
        },
        async () => undefined, // forwardBackward already read its gradient back
        a.budget,
      );
      oursMs = t.ms;
      oursLoss = last;
      dispatchesPerStep = dps();
    } finally {
      backend.dispose();
    }
  }

  let tfjsMs: number | null = null;
  let tfjsLoss: number | null = null;
  if (a.tf) {
    const gpt = new TfjsGpt(a.tf, a.config, params);
    try {
      let last = 0;
      const t = await timeIt(
        async () => {
          last = (await gpt.step(batch)).loss;
        },
        async () => undefined, // step() read loss and the flat gradient back
        a.budget,
      );
      tfjsMs = t.ms;
      tfjsLoss = last;
    } finally {
      gpt.dispose();
    }
  } else {
    notes.push('tfjs: not run');
  }

  const close = (x: number | null) => x === null || Math.abs(x - ref.loss) <= LOSS_RTOL * Math.abs(ref.loss);
  const any = oursLoss !== null || tfjsLoss !== null;
  const lossesAgree = any ? close(oursLoss) && close(tfjsLoss) : null;
  if (lossesAgree === false) {
    notes.push(`LOSS MISMATCH: cpu ${ref.loss}, ours ${oursLoss ?? '-'}, tfjs ${tfjsLoss ?? '-'} (rtol ${LOSS_RTOL})`);
  }
  return {
    tokens: ref.tokens,
    oursMs,
    tfjsMs,
    ratio: oursMs && tfjsMs ? tfjsMs / oursMs : null,
    cpuLoss: ref.loss,
    oursLoss,
    tfjsLoss,
    lossesAgree,
    dispatchesPerStep,
    notes,
  };
}
