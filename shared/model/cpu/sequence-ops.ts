// CPU reference ops for sequence-level objectives (preference tuning, DPO: shared/model/dpo.ts),
// beside ops.ts and in its conventions (flat row-major arrays, float64 sums, backward ACCUMULATES).
// They generalise the masked cross-entropy: the LM loss weights every masked-in position by
// 1/tokens; here every position of sequence b is weighted by rowWeights[b], so one backward gives
// the gradient of sum_b rowWeights[b] * (-log p(sequence b)). The WGSL kernels
// (worker-web/engine/kernels/loss.ts: cross_entropy_weighted, seq_logprob) are tested against these.

import type { FloatArray } from './ops.ts';

/**
 * out[b] = sum over t with mask = 1 of log p(target | prefix) = -sum of losses[b*T + t], where
 * losses [B*T] is crossEntropyForward's per-position output (0 at masked-out positions).
 * Summed in float64, in position order.
 */
export function sequenceLogProbs(out: Float64Array | FloatArray, losses: ArrayLike<number>, B: number, T: number): void {
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let t = 0; t < T; t++) s += losses[b * T + t];
    out[b] = -s;
  }
}

/**
 * dlogits [BT,V] += (probs - onehot(target)) * mask * rowWeights[row / T]: the gradient of
 * sum_b rowWeights[b] * sum_t mask * CE(b, t). Rows with mask 0 or weight 0 are left untouched.
 */
export function weightedCrossEntropyBackward(
  dlogits: FloatArray, probs: FloatArray, targets: ArrayLike<number>, mask: ArrayLike<number>,
  B: number, T: number, V: number, rowWeights: ArrayLike<number>,
): void {
  for (let i = 0; i < B * T; i++) {
    const w = rowWeights[Math.floor(i / T)];
    if (!mask[i] || w === 0) continue;
    const o = i * V;
    for (let v = 0; v < V; v++) dlogits[o + v] += probs[o + v] * w;
    dlogits[o + targets[i]] -= w;
  }
}
