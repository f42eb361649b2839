// Per-worker plan (issue 4 "Planning", issue 7): how much a worker may use, and what it does with it.
//
// budget = min(user cap, probed memory, what the adapter limits allow). No WebGPU API reports
// total VRAM (gpuweb #5505), so without a probe or a cap the only amount the adapter promises is
// one maxBufferSize allocation; we plan with that and say so.
// trainable params = floor(budget / 20) (TRAIN_BYTES_PER_PARAM). A worker covering the model is a
// data-parallel replica; its micro-batch is what remains for activations after weights, gradients
// and the rule's 8 B/param for Adam moments (16 B/param; a sync replica holds no moments, the
// coordinator runs AdamW: the plan text says so and keeps those bytes free) divided by the explicit per-sequence activation estimate, and also capped
// so the largest single activation buffer fits maxStorageBufferBindingSize. If one sequence of the
// requested length does not fit, the sequence length is halved until it does (the plan says so).
// When the adapter reported its limits, a replica also needs its parameter buffer within
// maxBufferSize and wte within the binding limit (the engine keeps the parameters in one buffer and
// binds each tensor whole), so the plan promises only what the engine can allocate.
// Otherwise it is a pipeline stage (issue 12): the plan says which blocks it could hold by the stage
// model of stage-memory.ts (20 B/param + one micro-batch's activations + inputs for 2 micro-batches
// in flight) as the first stage (wte + wpe + blocks [0, k)), or in the middle; the coordinator's
// formPipelines() decides the actual range. Too small for even one block: the reason gives the bytes.

import { AppError } from '../errors.ts';
import { validateModelConfig, type ModelConfig } from '../model/config.ts';
import { largestActivationBuffer, trainingActivations } from './activations.ts';
import {
  blockParams, modelParams, TRAIN_BYTES_PER_PARAM, TRAIN_STATE_BYTES_PER_PARAM, type Breakdown,
} from './rules.ts';
import { stageBreakdown, stageBytes, stageLimitProblem, stageShape, type StageShape } from './stage-memory.ts';
import { formatBytes, MiB } from './units.ts';

/** WebGPU spec defaults (what an adapter guarantees without requesting higher limits). */
export const WEBGPU_DEFAULT_LIMITS = {
  maxBufferSize: 256 * MiB,
  maxStorageBufferBindingSize: 128 * MiB,
} as const;

export interface WorkerResources {
  /** The user's own cap (e.g. `--memory 2GiB` or the tab's slider), bytes. */
  userCapBytes?: number;
  /** What the out-of-memory probe could allocate (headroom already kept), bytes. */
  probedBytes?: number;
  /** adapter.limits.maxBufferSize; WebGPU default 256 MiB. */
  maxBufferSize?: number;
  /** adapter.limits.maxStorageBufferBindingSize; WebGPU default 128 MiB. */
  maxStorageBufferBindingSize?: number;
}

export interface PlanOptions {
  /** Requested tokens per sequence; default config.contextLength. */
  seqLen?: number;
  /** Upper bound on the micro-batch (sequences); default unbounded. */
  maxMicroBatch?: number;
}

/** 'round': a replica in --mode diloco (H local AdamW steps per round, then a packed delta; round-plan.ts). */
export type WorkerRole = 'replica' | 'stage' | 'too-small' | 'round';

export interface WorkerPlan {
  role: WorkerRole;
  /** Bytes this worker may use. */
  budgetBytes: number;
  /** Which input set the budget: the smallest of them. */
  budgetSource: 'user cap' | 'probe' | 'adapter limits';
  /** floor(budget / 20). */
  trainableParams: number;
  /** Parameters of the whole model. */
  modelParams: number;
  /** Sequences per micro-batch (0 when too small). */
  microBatch: number;
  /** Tokens per sequence the micro-batch was sized for (may be below the requested length). */
  seqLen: number;
  /** Blocks [start, end) it could hold as a pipeline stage (role 'stage'). */
  layerRange?: [number, number];
  /** One human sentence (or two) saying why. */
  reason: string;
  /** Planned bytes: 4 B/param weights, 4 grads, 8 Adam, explicit activations for microBatch x seqLen. */
  breakdown: Breakdown;
  /** What the flat 20-byte rule and the plan would still need from per-buffer splitting etc. */
  warnings: string[];
  unit: 'bytes';
}

function checkBytes(name: string, v: number | undefined): void {
  if (v === undefined) return;
  if (!Number.isFinite(v) || v <= 0) {
    throw new AppError('ERR_MEMORY_PLAN', `planWorker: ${name} must be a positive number of bytes, got ${String(v)}`, 400,
      'pass bytes, e.g. 2 * 2**30 for 2 GiB, or leave it out');
  }
}

export interface Fit { microBatch: number; seqLen: number; limitedBy: string; halved: string[] }

/**
 * The largest micro-batch at the requested sequence length (halved until one sequence fits) for
 * `activationBudget` bytes, `layers` blocks, with or without the embeddings/head (`ends`).
 */
export function fitMicroBatch(
  c: ModelConfig, activationBudget: number, bindCap: number, seq: number, layers: number, ends: boolean, max: number,
): Fit | undefined {
  const halved: string[] = [];
  for (let s = seq; s >= 1; s = Math.floor(s / 2)) {
    const perSeq = trainingActivations(c, 1, s, layers, ends).total;
    const big = largestActivationBuffer(c, 1, s, ends);
    const byMem = Math.floor(activationBudget / perSeq);
    const byBind = Math.floor(bindCap / big.bytes);
    const b = Math.min(byMem, byBind, max);
    if (b >= 1) {
      const limitedBy = b === max ? `the micro-batch cap (${max})`
        : byBind < byMem ? `the binding limit (${big.name} ${formatBytes(big.bytes)} per sequence, limit ${formatBytes(bindCap)})`
        : `memory left for activations (${formatBytes(perSeq)} per sequence)`;
      return { microBatch: b, seqLen: s, limitedBy, halved };
    }
    halved.push(byBind < 1
      ? `seq ${s}: ${big.name} of one sequence is ${formatBytes(big.bytes)} > binding limit ${formatBytes(bindCap)}`
      : `seq ${s}: one sequence needs ${formatBytes(perSeq)} of activations, ${formatBytes(activationBudget)} left`);
  }
  return undefined;
}

export function planWorker(config: ModelConfig, res: WorkerResources, opts: PlanOptions = {}): WorkerPlan {
  validateModelConfig(config);
  checkBytes('userCapBytes', res.userCapBytes);
  checkBytes('probedBytes', res.probedBytes);
  checkBytes('maxBufferSize', res.maxBufferSize);
  checkBytes('maxStorageBufferBindingSize', res.maxStorageBufferBindingSize);
  const seq = opts.seqLen ?? config.contextLength;
  if (!Number.isInteger(seq) || seq < 1 || seq > config.contextLength) {
    throw new AppError('ERR_MEMORY_PLAN', `planWorker: seqLen must be an integer in 1..${config.contextLength}, got ${seq}`);
  }
  const maxMB = opts.maxMicroBatch ?? Infinity;
  if (!(maxMB >= 1)) throw new AppError('ERR_MEMORY_PLAN', `planWorker: maxMicroBatch must be >= 1, got ${maxMB}`);

  const maxBuffer = res.maxBufferSize ?? WEBGPU_DEFAULT_LIMITS.maxBufferSize;
  const maxBind = res.maxStorageBufferBindingSize ?? WEBGPU_DEFAULT_LIMITS.maxStorageBufferBindingSize;
  const bindCap = Math.min(maxBind, maxBuffer);

  // Budget: the smallest of what was given; the adapter limits only bound the total when nothing else is known.
  const candidates: Array<[WorkerPlan['budgetSource'], number]> = [];
  if (res.userCapBytes !== undefined) candidates.push(['user cap', res.userCapBytes]);
  if (res.probedBytes !== undefined) candidates.push(['probe', res.probedBytes]);
  if (candidates.length === 0) candidates.push(['adapter limits', maxBuffer]);
  candidates.sort((a, b) => a[1] - b[1]);
  const [budgetSource, budget0] = candidates[0];
  const budget = Math.floor(budget0);

  const P = modelParams(config);
  const trainable = Math.floor(budget / TRAIN_BYTES_PER_PARAM);
  const bp = blockParams(config);
  const L = config.nLayer;
  const warnings: string[] = [];
  if (budgetSource === 'adapter limits') {
    warnings.push(`no memory probe or user cap: planned with one maxBufferSize (${formatBytes(maxBuffer)}), the only amount the adapter guarantees; run the probe to plan more`);
  }
  const wteBytes = config.vocabSize * config.nEmbd * 4;
  if (wteBytes > bindCap) {
    warnings.push(`wte (${config.vocabSize}x${config.nEmbd} fp32 = ${formatBytes(wteBytes)}) exceeds the binding limit ${formatBytes(bindCap)}: the WebGPU engine binds it whole (it would need ${Math.ceil(wteBytes / bindCap)} row blocks), so on such an adapter only middle stages, without the embeddings or the head, fit`);
  }
  const src = `budget ${formatBytes(budget)} (from the ${budgetSource})`;
  const base = { budgetBytes: budget, budgetSource, trainableParams: trainable, modelParams: P, warnings, unit: 'bytes' as const };

  const reported = res.maxBufferSize !== undefined || res.maxStorageBufferBindingSize !== undefined;
  const whole = stageShape(config, 0, L);
  const limitProblem = reported ? stageLimitProblem(config, whole, 1, 1, res, WEBGPU_DEFAULT_LIMITS) : undefined;
  if (trainable >= P && limitProblem) {
    warnings.push(`covers the model by the 20-byte rule, but the adapter cannot hold it whole: ${limitProblem}`);
  }
  if (trainable >= P && !limitProblem) {
    const left = budget - TRAIN_STATE_BYTES_PER_PARAM * P;
    const fit = fitMicroBatch(config, left, bindCap, seq, L, true, maxMB);
    if (fit) {
      const act = trainingActivations(config, fit.microBatch, fit.seqLen).total;
      const shortened = fit.seqLen < seq ? ` Sequence length reduced from ${seq} to ${fit.seqLen} (${fit.halved[0]}).` : '';
      return {
        ...base, role: 'replica', microBatch: fit.microBatch, seqLen: fit.seqLen,
        reason: `Replica: ${src} holds ${trainable.toLocaleString('en-US')} params at 20 B/param, covering the model's ${P.toLocaleString('en-US')}; after weights and gradients (8 B/param) and the 8 B/param the 20-byte rule counts for AdamW moments, kept free here (a sync replica holds no moments: the coordinator runs AdamW) (16 B/param = ${formatBytes(16 * P)}), ${formatBytes(left)} is left for activations: micro-batch ${fit.microBatch} x ${fit.seqLen} tokens, limited by ${fit.limitedBy}.${shortened}`,
        breakdown: { weights: 4 * P, gradients: 4 * P, optimizer: 8 * P, activations: act },
      };
    }
    warnings.push(`covers the model by the 20-byte rule but not even one token of activations fits`);
  }

  // A stage: the most blocks it could hold as the first stage (with the embeddings) and in the middle,
  // by the stage model (one sequence of `seq` tokens, 2 micro-batches in flight), within its limits.
  const fitsStage = (s: StageShape) => stageBytes(config, s, 1, seq, 2) <= budget
    && stageLimitProblem(config, s, 1, seq, res, WEBGPU_DEFAULT_LIMITS) === undefined;
  const most = (from: number, max: number) => {
    let k = 0;
    while (k < max && fitsStage(stageShape(config, from, from + k + 1))) k++;
    return k;
  };
  const kFirst = L > 1 ? most(0, L - 1) : 0;
  const kMid = L > 2 ? most(1, L - 2) : 0;
  const kLast = (() => { let k = 0; while (k < L - 1 && fitsStage(stageShape(config, L - k - 1, L))) k++; return k; })();
  if (kFirst + kMid + kLast > 0) {
    const range: [number, number] = kFirst > 0 ? [0, kFirst] : kMid > 0 ? [1, 1 + kMid] : [L - kLast, L];
    const s = stageShape(config, range[0], range[1]);
    // Largest micro-batch for that range (memory and buffers grow with it): doubling, then bisection.
    const fitsMb = (b: number) => b <= maxMB && stageBytes(config, s, b, seq, 2) <= budget
      && stageLimitProblem(config, s, b, seq, res, WEBGPU_DEFAULT_LIMITS) === undefined;
    let mb = 1;
    let hi = 2;
    while (fitsMb(hi)) { mb = hi; hi *= 2; }
    while (hi - mb > 1) { const mid = Math.floor((mb + hi) / 2); if (fitsMb(mid)) mb = mid; else hi = mid; }
    const as = (k: number, what: string) => k > 0 ? `${k} block(s) ${what}` : '';
    const could = [as(kFirst, 'as the first stage (with wte + wpe)'), as(kMid, 'in the middle'), as(kLast, 'as the last stage (with ln_f + its copy of the tied wte)')].filter(Boolean).join(', ');
    return {
      ...base, role: 'stage', microBatch: mb, seqLen: seq, layerRange: range,
      reason: `Pipeline stage: ${src} holds ${trainable.toLocaleString('en-US')} params at 20 B/param, ${trainable < P
        ? `less than the model's ${P.toLocaleString('en-US')} (needs ${formatBytes(TRAIN_BYTES_PER_PARAM * P)})`
        : `but cannot train the whole model: ${limitProblem ?? 'not even one token of activations fits beside it'}`}; with one micro-batch of ${seq} tokens it could hold ${could}, e.g. [${range[0]}, ${range[1]}). The coordinator joins it to a pipeline of such workers.`,
      breakdown: stageBreakdown(config, s, mb, seq, 2),
    };
  }

  const need = TRAIN_BYTES_PER_PARAM * bp;
  const withAct = stageBytes(config, stageShape(config, Math.min(1, L - 1), Math.min(1, L - 1) + 1), 1, seq, 2);
  return {
    ...base, role: 'too-small', microBatch: 0, seqLen: seq,
    reason: `Too small: ${src} holds ${trainable.toLocaleString('en-US')} params at 20 B/param, but one block has ${bp.toLocaleString('en-US')} params and needs ${formatBytes(need)} (${need} bytes) to train, ${formatBytes(withAct)} with the activations of one sequence of ${seq} tokens as a stage; the whole model needs ${formatBytes(TRAIN_BYTES_PER_PARAM * P)}.`,
    breakdown: { weights: 4 * bp, gradients: 4 * bp, optimizer: 8 * bp, activations: 4 * bp },
  };
}
