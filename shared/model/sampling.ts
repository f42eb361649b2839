// Next-token distribution and sampling: temperature, top-k, top-p (nucleus), greedy. Random
// draws come from a shared/rng.ts Rng, so a seed reproduces a generation exactly.

import { AppError } from '../errors.ts';
import type { Rng } from '../rng.ts';

export interface SamplingOptions {
  /** 0 = greedy (argmax, deterministic); otherwise logits are divided by it. Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 or undefined = off. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability sums to >= topP; 1 = off. */
  topP?: number;
}

export function checkSampling(o: SamplingOptions): Required<SamplingOptions> {
  const temperature = o.temperature ?? 1;
  const topK = o.topK ?? 0;
  const topP = o.topP ?? 1;
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new AppError('ERR_SAMPLING', `sampling: temperature = ${temperature}, expected a finite number >= 0`, 400, '0 means greedy');
  }
  if (!(Number.isInteger(topK) && topK >= 0)) {
    throw new AppError('ERR_SAMPLING', `sampling: topK = ${topK}, expected an integer >= 0`, 400, '0 disables top-k');
  }
  if (!(topP > 0 && topP <= 1)) {
    throw new AppError('ERR_SAMPLING', `sampling: topP = ${topP}, expected a number in (0, 1]`, 400, '1 disables top-p');
  }
  return { temperature, topK, topP };
}

/** Index of the largest logit (the lowest index among equals). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * The distribution sampleToken draws from: softmax(logits / temperature), restricted to top-k
 * then top-p and renormalised. temperature 0 gives a one-hot at the argmax.
 */
export function nextTokenDistribution(logits: ArrayLike<number>, options: SamplingOptions = {}): Float64Array {
  const { temperature, topK, topP } = checkSampling(options);
  const V = logits.length;
  const probs = new Float64Array(V);
  if (temperature === 0) {
    probs[argmax(logits)] = 1;
    return probs;
  }
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < V; i++) {
    const e = Math.exp((logits[i] - max) / temperature);
    probs[i] = e;
    sum += e;
  }
  for (let i = 0; i < V; i++) probs[i] /= sum;
  const useK = topK > 0 && topK < V;
  if (!useK && topP >= 1) return probs;
  // Most likely first; ties by lower index, so the kept set is deterministic.
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  let keep = useK ? topK : V;
  if (topP < 1) {
    let cum = 0;
    for (let r = 0; r < keep; r++) {
      cum += probs[order[r]];
      if (cum >= topP) {
        keep = r + 1;
        break;
      }
    }
  }
  let kept = 0;
  for (let r = 0; r < keep; r++) kept += probs[order[r]];
  for (let r = keep; r < V; r++) probs[order[r]] = 0;
  for (let r = 0; r < keep; r++) probs[order[r]] /= kept;
  return probs;
}

/** Draws one token id. Greedy (temperature 0) uses no randomness. */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, rng: Rng): number {
  if ((options.temperature ?? 1) === 0) {
    checkSampling(options);
    return argmax(logits);
  }
  const probs = nextTokenDistribution(logits, options);
  const u = rng.next();
  let cum = 0;
  let lastNonZero = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cum += probs[i];
    lastNonZero = i;
    if (u < cum) return i;
  }
  return lastNonZero; // u landed in the rounding gap above the final cumulative sum
}
