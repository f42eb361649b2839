// Direct Preference Optimization (Rafailov et al. 2023) on any TrainingBackend: the math, in one
// place, for the worker's compute step, the coordinator's re-computation and its evaluation.
//
// A preference micro-batch holds pairs as rows 2i (chosen y_w) and 2i+1 (rejected y_l) of the same
// prompt x; the mask covers the response bytes and the EOS, so a row's sequence log-prob
// log pi(y|x) is the sum of its masked-in token log-probs. With the frozen reference's sums
// (`ref`, computed once per pair by the coordinator), per pair
//   d    = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))
//   loss = -log sigmoid(beta d) = softplus(-beta d), averaged over the pairs,
//   dloss/dlog pi(y_w) = -beta sigmoid(-beta d) / P = -dloss/dlog pi(y_l).
// So the gradient is ONE weighted backward: row weights on -log pi (the masked CE) of
// +beta sigmoid(-beta d) / P for the chosen row and the negative for the rejected one; rows past
// the pairs (padding) weigh 0. One forward gives d, one forward+backward applies the weights.

import type { GradientResult, MicroBatch, StageDpo, TrainingBackend } from '../backend.ts';
import { AppError } from '../errors.ts';

export interface PreferenceBatch {
  /** 2 * pairs rows (chosen, rejected, chosen, ...), possibly followed by padding rows (mask 0). */
  batch: MicroBatch;
  /** Pairs in the batch (rows 0 .. 2 * pairs - 1). */
  pairs: number;
  /** Reference sequence log-probs of rows 0 .. 2 * pairs - 1. */
  ref: ArrayLike<number>;
  beta: number;
}

export interface PairFigures {
  /** Mean DPO loss over the pairs. */
  loss: number;
  /** Per pair: d = policy log-ratio of chosen minus that of rejected (implicit reward margin / beta). */
  d: Float64Array;
  /** Per pair: log pi(y_w) - log pi(y_l) (the policy's own preference; > 0: prefers chosen). */
  policyMargin: Float64Array;
  /** Row weights on -log pi for the weighted backward (length = batch rows). */
  rowWeights: Float32Array;
}

/** softplus(x) = log(1 + e^x), without overflow. */
export function softplus(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** Checks a preference batch's shape and numbers; throws ERR_DPO_BATCH naming the field. */
export function checkPreferenceBatch(p: PreferenceBatch): void {
  checkPairs(p.batch.B, p.pairs, p.ref, p.beta, 'dpo');
}

function checkPairs(B: number, pairs: number, ref: ArrayLike<number>, beta: number, where: string): void {
  const bad = (m: string) => new AppError('ERR_DPO_BATCH', `${where}: ${m}`, 400, 'a preference batch is rows (chosen, rejected) per pair with their reference log-probs');
  if (!Number.isInteger(pairs) || pairs < 1 || 2 * pairs > B) throw bad(`pairs = ${pairs} does not fit B = ${B} rows (2 per pair)`);
  if (ref.length !== 2 * pairs) throw bad(`ref has ${ref.length} entries, expected 2 * pairs = ${2 * pairs}`);
  for (let i = 0; i < ref.length; i++) if (!Number.isFinite(ref[i]) || ref[i] > 1e-3) throw bad(`ref[${i}] = ${ref[i]} is not a log-probability`);
  if (!(Number.isFinite(beta) && beta > 0)) throw bad(`beta = ${beta} must be a positive number`);
}

/**
 * Checks a head stage's pairs (StageInput.dpo) against its micro-batch of B rows; throws
 * ERR_DPO_BATCH naming the field (refLogProbs: a Float32Array of 2 x pairs <= B values).
 */
export function checkStageDpo(dpo: StageDpo, B: number, where: string): void {
  const bad = (m: string) => new AppError('ERR_DPO_BATCH', `${where}: ${m}`, 400, 'dpo = { beta, refLogProbs: Float32Array(2 x pairs) }');
  if (dpo === null || typeof dpo !== 'object') throw bad('dpo must be an object { beta, refLogProbs }');
  if (!(dpo.refLogProbs instanceof Float32Array)) throw bad('dpo.refLogProbs must be a Float32Array');
  if (dpo.refLogProbs.length % 2 !== 0) throw bad(`dpo.refLogProbs has ${dpo.refLogProbs.length} values, 2 per pair`);
  checkPairs(B, dpo.refLogProbs.length / 2, dpo.refLogProbs, dpo.beta, where);
}

/** Loss, margins and backward row weights from the policy's sequence log-probs. */
export function pairFigures(policy: ArrayLike<number>, p: PreferenceBatch): PairFigures {
  return pairFiguresOf(policy, p.batch.B, p.pairs, p.ref, p.beta);
}

/**
 * The DPO figures of a head stage's micro-batch (StageInput.dpo) from its policy sequence
 * log-probs (B rows): the same as pairFigures of the whole model's batch, so a pipeline's last
 * stage weights its backward exactly as dpoForwardBackward does.
 */
export function stagePairFigures(policy: ArrayLike<number>, B: number, dpo: StageDpo): PairFigures {
  return pairFiguresOf(policy, B, dpo.refLogProbs.length / 2, dpo.refLogProbs, dpo.beta);
}

function pairFiguresOf(policy: ArrayLike<number>, B: number, P: number, ref: ArrayLike<number>, beta: number): PairFigures {
  const d = new Float64Array(P);
  const policyMargin = new Float64Array(P);
  const rowWeights = new Float32Array(B);
  let loss = 0;
  for (let i = 0; i < P; i++) {
    const w = 2 * i;
    const l = w + 1;
    d[i] = policy[w] - ref[w] - (policy[l] - ref[l]);
    policyMargin[i] = policy[w] - policy[l];
    loss += softplus(-beta * d[i]);
    const g = (beta * sigmoid(-beta * d[i])) / P;
    rowWeights[w] = g;
    rowWeights[l] = -g;
  }
  return { loss: loss / P, d, policyMargin, rowWeights };
}

export interface DpoGradient extends GradientResult {
  figures: PairFigures;
}

/**
 * The DPO loss and gradient of a preference batch at the backend's parameters: one forward for
 * the sequence log-probs, one weighted forward+backward. `tokens` is the number of PAIRS (the
 * coordinator weighs results by it, so K workers equal one worker on the whole batch).
 */
export async function dpoForwardBackward(backend: TrainingBackend, p: PreferenceBatch): Promise<DpoGradient> {
  checkPreferenceBatch(p);
  const t0 = performance.now();
  const policy = await backend.sequenceLogProbs(p.batch);
  const figures = pairFigures(policy, p);
  const r = await backend.forwardBackwardWeighted(p.batch, figures.rowWeights);
  return { ...r, loss: figures.loss, tokens: p.pairs, figures, timings: { ...r.timings, totalMs: performance.now() - t0 } };
}

/** Held-out figures of pairs: share with policy margin > 0, mean implicit reward margin beta*d, mean loss. */
export function preferenceSummary(fig: PairFigures[], beta: number): { loss: number; preferenceAccuracy: number; rewardMargin: number; pairs: number } {
  let n = 0;
  let right = 0;
  let margin = 0;
  let loss = 0;
  for (const f of fig) {
    for (let i = 0; i < f.d.length; i++) {
      n++;
      if (f.policyMargin[i] > 0) right++;
      margin += beta * f.d[i];
    }
    loss += f.loss * f.d.length;
  }
  return n === 0 ? { loss: 0, preferenceAccuracy: 0, rewardMargin: 0, pairs: 0 } : { loss: loss / n, preferenceAccuracy: right / n, rewardMargin: margin / n, pairs: n };
}
