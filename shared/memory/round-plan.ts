// The memory plan of a round worker (--mode diloco). Here the 20 B/param rule is exact, with no
// activation share hidden in it: weights 4 + gradients 4 + AdamW moments m, v 8 (kept on the
// worker between rounds) + the round-start copy 4 (delta = theta_start - theta_end; our workers
// keep it in host memory) = 20 B/param; activations come on top, sized by the explicit estimate in
// what is left. (A sync-mode replica holds no AdamW moments at all: the coordinator runs AdamW.)

import { fitMicroBatch, planWorker, WEBGPU_DEFAULT_LIMITS, type PlanOptions, type WorkerPlan, type WorkerResources } from './plan.ts';
import type { ModelConfig } from '../model/config.ts';
import { formatBytes } from './units.ts';
import { trainingActivations } from './activations.ts';

export const ROUND_BYTES = { weights: 4, gradients: 4, moments: 8, roundStart: 4 } as const;
export const ROUND_BYTES_PER_PARAM = 20;

/** planWorker for --mode diloco: role 'round' when the model at 20 B/param and one micro-batch fit. */
export function planRoundWorker(config: ModelConfig, res: WorkerResources, opts: PlanOptions = {}): WorkerPlan {
  const base = planWorker(config, res, opts); // validates; a replica covers >= 20 B/param
  if (base.role !== 'replica') return base; // stage / too-small: no round work for it (its reason says why)
  const P = base.modelParams;
  const left = base.budgetBytes - ROUND_BYTES_PER_PARAM * P;
  const bindCap = Math.min(res.maxStorageBufferBindingSize ?? WEBGPU_DEFAULT_LIMITS.maxStorageBufferBindingSize, res.maxBufferSize ?? WEBGPU_DEFAULT_LIMITS.maxBufferSize);
  const fit = fitMicroBatch(config, left, bindCap, opts.seqLen ?? config.contextLength, config.nLayer, true, opts.maxMicroBatch ?? Infinity);
  const state = `weights 4 + gradients 4 + AdamW moments 8, kept between rounds + round-start copy 4 = ${formatBytes(ROUND_BYTES_PER_PARAM * P)}`;
  if (!fit) {
    return { ...base, role: 'too-small', microBatch: 0,
      reason: `Too small for rounds: ${formatBytes(base.budgetBytes)} holds the model's ${P.toLocaleString('en-US')} params at exactly ${ROUND_BYTES_PER_PARAM} B/param (${state}) but leaves ${formatBytes(left)}, not enough for one sequence's activations.` };
  }
  const act = trainingActivations(config, fit.microBatch, fit.seqLen).total;
  return {
    ...base,
    role: 'round',
    microBatch: fit.microBatch,
    seqLen: fit.seqLen,
    breakdown: { weights: (ROUND_BYTES.weights + ROUND_BYTES.roundStart) * P, gradients: ROUND_BYTES.gradients * P, optimizer: ROUND_BYTES.moments * P, activations: act },
    reason: `Round worker (--mode diloco): ${formatBytes(base.budgetBytes)} holds the model's ${P.toLocaleString('en-US')} params at exactly ${ROUND_BYTES_PER_PARAM} B/param (${state}); ${formatBytes(left)} is left for activations: micro-batch ${fit.microBatch} x ${fit.seqLen} tokens per inner step, limited by ${fit.limitedBy}.`,
  };
}
