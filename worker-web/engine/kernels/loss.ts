// Fused softmax + masked cross-entropy (+ its gradient written over the logits in place, as
// llm.c does; scaled by 1/tokens, or per sequence for DPO), the deterministic loss reduction and
// the per-sequence log-prob sums. The batch uniform carries 1/tokens, which
// changes per micro-batch (the mask), so the shaders stay shape-specialised but batch-agnostic.

import { grid1d, ROW_INDEX, ROW_MAIN_ARGS, treeReduce, type KernelSpec } from './wgsl-util.ts';

const WG = 256;

/** Uniform block written once per step: invTokens = 1/tokens (0 if no tokens). */
export const BATCH_UNIFORM = `struct Batch { invTokens: f32, pad0: f32, pad1: f32, pad2: f32 };`;

/**
 * Per row n: losses[n] = mask ? logsumexp(logits) - logits[target] : 0. With `backward`,
 * logits[n,:] becomes dlogits = (softmax - onehot(target)) * mask * scale, where scale is
 * batch.invTokens (the LM loss: binding 3 is the Batch uniform), or with `weighted` (preference
 * tuning, DPO: shared/model/dpo.ts) the weight of the row's SEQUENCE, rowWeights[n / T] (binding 3
 * is a storage array of B weights). losses stay unweighted either way, so seq_logprob can sum them.
 * Reference: crossEntropyBackward (ops.ts), weightedCrossEntropyBackward (cpu/sequence-ops.ts).
 */
export function crossEntropySpec(N: number, V: number, backward: boolean, weighted?: { T: number }): KernelSpec {
  if (weighted && !backward) throw new Error('crossEntropySpec: the weighted variant is a backward (bug)');
  const scaleDecl = weighted
    ? '@group(0) @binding(3) var<storage, read> rowWeights: array<f32>;'
    : `${BATCH_UNIFORM}
@group(0) @binding(3) var<uniform> batch: Batch;`;
  const scale = weighted ? `rowWeights[row / ${weighted.T}u]` : 'batch.invTokens';
  return {
    label: weighted ? `cross_entropy_weighted_${N}x${V}_t${weighted.T}` : `cross_entropy_${backward ? 'fwd_bwd' : 'fwd'}_${N}x${V}`,
    bindings: [backward ? 'rw' : 'read', 'read', 'read', weighted ? 'read' : 'uniform', 'rw'],
    grid: grid1d(N),
    code: `@group(0) @binding(0) var<storage, ${backward ? 'read_write' : 'read'}> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
${scaleDecl}
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;
const V = ${V}u;
${treeReduce(WG)}
@compute @workgroup_size(${WG})
fn main(${ROW_MAIN_ARGS}) {
  ${ROW_INDEX}
  if (row >= ${N}u) { return; }
  let base = row * V;
  let t = min(u32(targets[row]), V - 1u);
  let on = mask[row] != 0u;
  let tl = logits[base + t];
  var mx = -3.0e38;
  for (var i = li; i < V; i += ${WG}u) { mx = max(mx, logits[base + i]); }
  mx = red_max(mx, li);
  var s = 0.0;
  for (var i = li; i < V; i += ${WG}u) { s += exp(logits[base + i] - mx); }
  s = red_sum(s, li);
  if (li == 0u) { losses[row] = select(0.0, log(s) + mx - tl, on); }
${
  backward
    ? `  // Every thread has read the target logit before anyone overwrites the row.
  storageBarrier();
  let scale = select(0.0, ${scale}, on);
  let inv = 1.0 / s;
  for (var i = li; i < V; i += ${WG}u) {
    let p = exp(logits[base + i] - mx) * inv;
    logits[base + i] = (p - select(0.0, 1.0, i == t)) * scale;
  }`
    : '  _ = batch.invTokens; // keep the binding in the auto layout (same bind group shape as backward)'
}
}`,
  };
}

/** One workgroup: results[0] = bitcast(sum_n losses[n] * invTokens), fixed order. */
export function lossReduceSpec(N: number): KernelSpec {
  return {
    label: `loss_reduce_${N}`,
    bindings: ['read', 'uniform', 'rw'],
    grid: [1, 1, 1],
    code: `@group(0) @binding(0) var<storage, read> losses: array<f32>;
${BATCH_UNIFORM}
@group(0) @binding(1) var<uniform> batch: Batch;
@group(0) @binding(2) var<storage, read_write> results: array<u32>;
${treeReduce(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < ${N}u; i += ${WG}u) { s += losses[i]; }
  s = red_sum(s, li);
  if (li == 0u) { results[0] = bitcast<u32>(s * batch.invTokens); }
}`,
  };
}

/**
 * seqLogProbs[b] = -sum_t losses[b*T + t] (losses are 0 where mask is 0): the sequence
 * log-probability of row b. One thread per sequence, summing its T positions in order
 * (deterministic). Reference: sequenceLogProbs (shared/model/cpu/sequence-ops.ts).
 */
export function seqLogProbSpec(B: number, T: number): KernelSpec {
  const wg = 64;
  return {
    label: `seq_logprob_${B}x${T}`,
    bindings: ['read', 'rw'],
    grid: grid1d(Math.ceil(B / wg)),
    code: `@group(0) @binding(0) var<storage, read> losses: array<f32>;
@group(0) @binding(1) var<storage, read_write> seqLogProbs: array<f32>;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  if (b >= ${B}u) { return; }
  var s = 0.0;
  for (var t = 0u; t < ${T}u; t++) { s += losses[b * ${T}u + t]; }
  seqLogProbs[b] = -s;
}`,
  };
}
