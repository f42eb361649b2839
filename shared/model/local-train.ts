// A single-process training loop over the CPU reference with exactly the coordinator's step
// semantics (coordinator/train/trainer.ts): an epoch-permuted global batch of rows, the masked mean
// loss over the whole batch, global-norm clipping, AdamW at lrAt(step) with decay on the linear
// weights only; and the coordinator's evaluation (greedy KV-cache decoding, exact match on the
// held-out split, per task). For tests that pin how fast the built-in task is learned and for
// bench/arith/train-cpu.ts; a real cluster distributes the same computation over workers.

import { buildMicroBatch, EpochSampler, type Dataset, type EvalResult } from '../data/index.ts';
import { AppError } from '../errors.ts';
import { AdamW, clipGradNorm, lrAt, runSchedule, type LrSchedule } from '../optim/index.ts';
import { decode, encode, EOS_ID } from '../tokenizer.ts';
import type { ModelConfig } from './config.ts';
import { CpuGpt } from './cpu/gpt.ts';
import { generate } from './generate.ts';
import { initParameters } from './init.ts';

export interface LocalTrainOptions {
  model: ModelConfig;
  dataset: Dataset;
  seed: number;
  steps: number;
  /** Sequences per optimizer step (--global-batch). */
  globalBatch: number;
  lr: number;
  minLr: number;
  warmupSteps: number;
  /** Cosine length; 0 = steps (the coordinator: --decay-steps || --max-steps || 10000). */
  decaySteps: number;
  /** WSD: fraction of the decay length held at the peak (--stable-fraction); 0 / unset = cosine. */
  stableFraction?: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** 0 = off. */
  gradClip: number;
  /** Evaluate every N steps and after the last; 0 = only after the last. */
  evalEvery?: number;
  /** Held-out pairs per evaluation (default all). */
  evalLimit?: number;
  /** Stop after the first evaluation at or above this exact match. */
  stopAtAccuracy?: number;
  onEval?: (e: LocalEval) => void;
}

export interface LocalEval {
  /** Optimizer steps done. */
  steps: number;
  /** Mean training loss over the steps since the previous evaluation. */
  trainLoss: number;
  result: EvalResult;
}

/** Greedy answer of `prompt` (the coordinator's evaluation decoder), ended at EOS or the row length. */
export function greedyAnswer(model: ModelConfig, params: Float32Array, prompt: string, T: number): string {
  const ids = encode(prompt);
  const maxTokens = Math.max(0, Math.min(T, model.contextLength) - ids.length);
  return decode(generate(model, params, ids, { maxTokens, eosId: EOS_ID, temperature: 0 }).tokens);
}

export async function trainLocal(o: LocalTrainOptions): Promise<{ params: Float32Array; evals: LocalEval[] }> {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new AppError('ERR_TRAIN_OPTIONS', `trainLocal: steps must be an integer >= 1, got ${o.steps}`);
  if (!o.dataset.evaluate) throw new AppError('ERR_TRAIN_OPTIONS', `trainLocal: dataset ${o.dataset.name} has no exact-match evaluation`);
  const params = initParameters(o.model, o.seed);
  const gpt = new CpuGpt(o.model, Float32Array);
  const grads = new Float32Array(params.length);
  const opt = new AdamW(gpt.table, { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay });
  const total = o.decaySteps || o.steps;
  const schedule: LrSchedule = runSchedule(o, total);
  const sampler = new EpochSampler({ seed: o.seed, size: o.dataset.size });
  const evals: LocalEval[] = [];
  let lossSum = 0;
  let lossSteps = 0;
  for (let step = 0; step < o.steps; step++) {
    // As the coordinator: a shard never spans epochs, so an epoch's last step may be shorter.
    const r = gpt.forward(params, buildMicroBatch(o.dataset, sampler.next(o.globalBatch).ids));
    gpt.backward(grads);
    if (o.gradClip > 0) clipGradNorm(grads, o.gradClip);
    opt.step(params, grads, lrAt(step, schedule));
    lossSum += r.loss;
    lossSteps++;
    const done = step + 1;
    if ((o.evalEvery && done % o.evalEvery === 0) || done === o.steps) {
      const frozen = new Float32Array(params);
      const result = await o.dataset.evaluate((p) => greedyAnswer(o.model, frozen, p, o.dataset.T), { limit: o.evalLimit });
      const e: LocalEval = { steps: done, trainLoss: lossSum / lossSteps, result };
      lossSum = 0;
      lossSteps = 0;
      evals.push(e);
      o.onEval?.(e);
      if (o.stopAtAccuracy !== undefined && result.accuracy >= o.stopAtAccuracy) break;
    }
  }
  return { params, evals };
}
