// CPU reference ops for GPT-2, llm.c style (train_gpt2.c): one function per layer, each with
// its forward and backward, on flat row-major arrays. These are the ground truth the WebGPU
// kernels are tested against, op by op, so the signatures are stable and documented here.
// Why this file is long: every op's forward and backward sit side by side with the conventions
// below, mirroring the kernel list; splitting them would separate each backward from its forward.
//
// Conventions
// - Shapes in comments are row-major; BT = B*T rows; C channels; OC output channels.
// - Arrays are Float32Array (training, workers) or Float64Array (finite-difference checks);
//   every op is written once for both (`FloatArray`). Sums (dot products, means, softmax
//   denominators) accumulate in JS numbers, i.e. float64, and are rounded once on store.
// - Backward functions ACCUMULATE (+=) into their gradient outputs, as in llm.c, so the caller
//   zeroes them first; this lets residual branches add into one buffer.
// - No per-element allocation: the few row-sized scratch buffers are cached per module.

export type FloatArray = Float32Array | Float64Array;

/** eps of every LayerNorm in GPT-2. */
export const LN_EPS = 1e-5;

// Row-sized float64 scratch, grown on demand. Two slots because matmulBackward needs two
// at once. Ops are synchronous, so sharing them between calls is safe.
const scratchSlots: Float64Array[] = [new Float64Array(0), new Float64Array(0)];
function scratch(slot: 0 | 1, n: number): Float64Array {
  let s = scratchSlots[slot];
  if (s.length < n) {
    s = new Float64Array(Math.max(n, s.length * 2));
    scratchSlots[slot] = s;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Encoder: token + position embedding.

/**
 * out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
 * out [B,T,C]; inp [B,T] token ids; wte [V,C]; wpe [maxT,C].
 */
export function encoderForward(
  out: FloatArray, inp: ArrayLike<number>, wte: FloatArray, wpe: FloatArray, B: number, T: number, C: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C;
      const wo = inp[b * T + t] * C;
      const po = t * C;
      for (let i = 0; i < C; i++) out[o + i] = wte[wo + i] + wpe[po + i];
    }
  }
}

/** dwte[inp[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:]. dout [B,T,C]. */
export function encoderBackward(
  dwte: FloatArray, dwpe: FloatArray, dout: FloatArray, inp: ArrayLike<number>, B: number, T: number, C: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C;
      const wo = inp[b * T + t] * C;
      const po = t * C;
      for (let i = 0; i < C; i++) {
        const d = dout[o + i];
        dwte[wo + i] += d;
        dwpe[po + i] += d;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm over the last dimension (eps 1e-5, biased variance as in PyTorch).

/**
 * out[n,:] = (inp[n,:] - mean[n]) * rstd[n] * weight + bias, for n < N (= B*T).
 * out, inp [N,C]; mean, rstd [N] (saved for backward); weight, bias [C].
 */
export function layernormForward(
  out: FloatArray, mean: FloatArray, rstd: FloatArray, inp: FloatArray, weight: FloatArray, bias: FloatArray,
  N: number, C: number,
): void {
  for (let n = 0; n < N; n++) {
    const o = n * C;
    let s = 0;
    for (let i = 0; i < C; i++) s += inp[o + i];
    const m = s / C;
    let v = 0;
    for (let i = 0; i < C; i++) {
      const d = inp[o + i] - m;
      v += d * d;
    }
    const r = 1 / Math.sqrt(v / C + LN_EPS);
    for (let i = 0; i < C; i++) out[o + i] = (inp[o + i] - m) * r * weight[i] + bias[i];
    mean[n] = m;
    rstd[n] = r;
  }
}

/**
 * dinp += dL/dinp, dweight += sum_n dout*norm, dbias += sum_n dout.
 * dinp, dout, inp [N,C]; weight, dweight, dbias [C]; mean, rstd [N] from the forward.
 */
export function layernormBackward(
  dinp: FloatArray, dweight: FloatArray, dbias: FloatArray, dout: FloatArray, inp: FloatArray,
  weight: FloatArray, mean: FloatArray, rstd: FloatArray, N: number, C: number,
): void {
  for (let n = 0; n < N; n++) {
    const o = n * C;
    const m = mean[n];
    const r = rstd[n];
    // Two reductions first: mean of dnorm and mean of dnorm*norm.
    let dnormMean = 0;
    let dnormNormMean = 0;
    for (let i = 0; i < C; i++) {
      const norm = (inp[o + i] - m) * r;
      const dnorm = weight[i] * dout[o + i];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let i = 0; i < C; i++) {
      const norm = (inp[o + i] - m) * r;
      const d = dout[o + i];
      const dnorm = weight[i] * d;
      dbias[i] += d;
      dweight[i] += norm * d;
      dinp[o + i] += (dnorm - dnormMean - norm * dnormNormMean) * r;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Linear layer, GPT-2 Conv1D layout: out = inp @ weight + bias with weight [C, OC] ([in, out]).

/**
 * out [BT,OC] = inp [BT,C] @ weight [C,OC] + bias [OC] (bias may be null).
 * Loop order i-k-j: the inner loop walks weight rows and the output row contiguously; the output
 * row accumulates in a float64 scratch row. k is unrolled by 4 so each pass over the output row
 * does 4 multiply-adds per load/store of the accumulator (about 2-3x faster in V8).
 */
export function matmulForward(
  out: FloatArray, inp: FloatArray, weight: FloatArray, bias: FloatArray | null, BT: number, C: number, OC: number,
): void {
  const acc = scratch(0, OC);
  for (let i = 0; i < BT; i++) {
    if (bias) for (let j = 0; j < OC; j++) acc[j] = bias[j];
    else acc.fill(0, 0, OC);
    const io = i * C;
    let k = 0;
    for (; k + 4 <= C; k += 4) {
      const a0 = inp[io + k], a1 = inp[io + k + 1], a2 = inp[io + k + 2], a3 = inp[io + k + 3];
      const w0 = k * OC, w1 = w0 + OC, w2 = w1 + OC, w3 = w2 + OC;
      for (let j = 0; j < OC; j++) {
        acc[j] += a0 * weight[w0 + j] + a1 * weight[w1 + j] + a2 * weight[w2 + j] + a3 * weight[w3 + j];
      }
    }
    for (; k < C; k++) {
      const a = inp[io + k];
      const wo = k * OC;
      for (let j = 0; j < OC; j++) acc[j] += a * weight[wo + j];
    }
    const oo = i * OC;
    for (let j = 0; j < OC; j++) out[oo + j] = acc[j];
  }
}

/**
 * Gradients of matmulForward, all accumulated (+=):
 *   dinp [BT,C]    += dout [BT,OC] @ weight^T   (row dot products; 4 weight rows per pass over dout)
 *   dweight [C,OC] += inp^T @ dout              (row k summed in float64 over all BT rows, 4 rows per pass)
 *   dbias [OC]     += sum over rows of dout     (may be null when the layer has no bias)
 */
export function matmulBackward(
  dinp: FloatArray, dweight: FloatArray, dbias: FloatArray | null, dout: FloatArray, inp: FloatArray,
  weight: FloatArray, BT: number, C: number, OC: number,
): void {
  // dinp[i,k] += sum_j dout[i,j] * weight[k,j]
  rowDotsNT(dinp, dout, weight, BT, C, OC, true);
  const acc = scratch(0, OC);
  for (let k = 0; k < C; k++) {
    acc.fill(0, 0, OC);
    let i = 0;
    for (; i + 4 <= BT; i += 4) {
      const a0 = inp[i * C + k], a1 = inp[(i + 1) * C + k], a2 = inp[(i + 2) * C + k], a3 = inp[(i + 3) * C + k];
      const d0 = i * OC, d1 = d0 + OC, d2 = d1 + OC, d3 = d2 + OC;
      for (let j = 0; j < OC; j++) {
        acc[j] += a0 * dout[d0 + j] + a1 * dout[d1 + j] + a2 * dout[d2 + j] + a3 * dout[d3 + j];
      }
    }
    for (; i < BT; i++) {
      const a = inp[i * C + k];
      const doo = i * OC;
      for (let j = 0; j < OC; j++) acc[j] += a * dout[doo + j];
    }
    const wo = k * OC;
    for (let j = 0; j < OC; j++) dweight[wo + j] += acc[j];
  }
  if (dbias) {
    const bacc = scratch(1, OC);
    bacc.fill(0, 0, OC);
    for (let i = 0; i < BT; i++) {
      const doo = i * OC;
      for (let j = 0; j < OC; j++) bacc[j] += dout[doo + j];
    }
    for (let j = 0; j < OC; j++) dbias[j] += bacc[j];
  }
}

// ---------------------------------------------------------------------------------------------
// Causal multi-head self-attention from the fused QKV projection.

/**
 * inp [B,T,3C]: per position the q|k|v blocks of C each (HF GPT-2 `split(C, dim=2)`); inside a
 * block head h owns channels [h*hs, (h+1)*hs), hs = C/NH.
 * out [B,T,C]: heads concatenated (the input of attn.c_proj).
 * att [B,NH,T,T]: softmax probabilities, row t filled for t2 <= t, zeros above (saved for backward).
 * preatt [B,NH,T,T] or null: the scaled scores q.k/sqrt(hs) before the softmax (for kernel tests).
 */
export function attentionForward(
  out: FloatArray, preatt: FloatArray | null, att: FloatArray, inp: FloatArray,
  B: number, T: number, C: number, NH: number,
): void {
  const C3 = 3 * C;
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  const row = scratch(0, T);
  const acc = scratch(1, hs);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const qo = (b * T + t) * C3 + h * hs;
        const ao = ((b * NH + h) * T + t) * T;
        // scores and running max
        let max = -Infinity;
        for (let t2 = 0; t2 <= t; t2++) {
          const ko = (b * T + t2) * C3 + C + h * hs;
          let s = 0;
          for (let i = 0; i < hs; i++) s += inp[qo + i] * inp[ko + i];
          s *= scale;
          row[t2] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          if (preatt) preatt[ao + t2] = row[t2];
          const e = Math.exp(row[t2] - max);
          row[t2] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let t2 = 0; t2 < T; t2++) {
          const p = t2 <= t ? row[t2] * inv : 0;
          att[ao + t2] = p;
          if (preatt && t2 > t) preatt[ao + t2] = 0;
        }
        // out = att @ v, accumulated in float64 over contiguous v rows
        acc.fill(0, 0, hs);
        for (let t2 = 0; t2 <= t; t2++) {
          const p = row[t2] * inv;
          const vo = (b * T + t2) * C3 + 2 * C + h * hs;
          for (let i = 0; i < hs; i++) acc[i] += p * inp[vo + i];
        }
        const oo = (b * T + t) * C + h * hs;
        for (let i = 0; i < hs; i++) out[oo + i] = acc[i];
      }
    }
  }
}

/**
 * Backward of attentionForward. dinp [B,T,3C] += gradients of q, k and v; dout [B,T,C];
 * inp [B,T,3C] and att [B,NH,T,T] from the forward. Uses one T-long float64 scratch row per
 * (b,t,h) for datt, so it needs no [B,NH,T,T] gradient buffers.
 */
export function attentionBackward(
  dinp: FloatArray, dout: FloatArray, inp: FloatArray, att: FloatArray,
  B: number, T: number, C: number, NH: number,
): void {
  const C3 = 3 * C;
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  const datt = scratch(0, T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const ao = ((b * NH + h) * T + t) * T;
        const qo = (b * T + t) * C3 + h * hs;
        const doo = (b * T + t) * C + h * hs;
        // through out = att @ v: datt[t2] = dout . v[t2]; dv[t2] += att[t2] * dout
        for (let t2 = 0; t2 <= t; t2++) {
          const vo = (b * T + t2) * C3 + 2 * C + h * hs;
          const p = att[ao + t2];
          let s = 0;
          for (let i = 0; i < hs; i++) {
            const d = dout[doo + i];
            s += d * inp[vo + i];
            dinp[vo + i] += p * d;
          }
          datt[t2] = s;
        }
        // through the softmax: dpre[t2] = att[t2] * (datt[t2] - sum_j att[j] datt[j])
        let dot = 0;
        for (let t2 = 0; t2 <= t; t2++) dot += att[ao + t2] * datt[t2];
        // through pre = q.k * scale
        for (let t2 = 0; t2 <= t; t2++) {
          const dpre = att[ao + t2] * (datt[t2] - dot) * scale;
          if (dpre === 0) continue;
          const ko = (b * T + t2) * C3 + C + h * hs;
          for (let i = 0; i < hs; i++) {
            dinp[qo + i] += dpre * inp[ko + i];
            dinp[ko + i] += dpre * inp[qo + i];
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GELU, tanh approximation (GPT-2 "gelu_new"):
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))

const GELU_SCALE = Math.sqrt(2 / Math.PI);

/** out [N] = gelu(inp [N]). */
export function geluForward(out: FloatArray, inp: FloatArray, N: number): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    out[i] = 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x)));
  }
}

/** dinp [N] += gelu'(inp) * dout. */
export function geluBackward(dinp: FloatArray, inp: FloatArray, dout: FloatArray, N: number): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    const u = GELU_SCALE * (x + 0.044715 * x * x * x);
    const th = Math.tanh(u);
    const sech2 = 1 - th * th;
    const local = 0.5 * (1 + th) + 0.5 * x * sech2 * GELU_SCALE * (1 + 3 * 0.044715 * x * x);
    dinp[i] += local * dout[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Residual connection.

/** out [N] = inp1 + inp2. */
export function residualForward(out: FloatArray, inp1: FloatArray, inp2: FloatArray, N: number): void {
  for (let i = 0; i < N; i++) out[i] = inp1[i] + inp2[i];
}

/** dinp1 += dout; dinp2 += dout. */
export function residualBackward(dinp1: FloatArray, dinp2: FloatArray, dout: FloatArray, N: number): void {
  for (let i = 0; i < N; i++) {
    dinp1[i] += dout[i];
    dinp2[i] += dout[i];
  }
}

// ---------------------------------------------------------------------------------------------
// LM head tied to the token embedding: logits = inp @ wte^T.

/**
 * logits [BT,V] = inp [BT,C] @ wte[V,C]^T. Each logit is a dot product of two contiguous rows;
 * 4 vocabulary rows share each pass over the input row.
 */
export function lmHeadForward(logits: FloatArray, inp: FloatArray, wte: FloatArray, BT: number, C: number, V: number): void {
  rowDotsNT(logits, inp, wte, BT, V, C, false);
}

/**
 * out [rows,n] (= or +=) a [rows,k] @ b [n,k]^T: every entry is a dot product of two contiguous
 * rows, so 4 rows of b share each pass over a row of a. Sums in float64 (JS numbers), in order.
 * Shared by the tied LM head (logits = x wte^T) and matmul's input gradient (dX = dY W^T).
 */
function rowDotsNT(out: FloatArray, a: FloatArray, b: FloatArray, rows: number, n: number, k: number, accumulate: boolean): void {
  for (let i = 0; i < rows; i++) {
    const ao = i * k;
    const oo = i * n;
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      const b0 = j * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let t = 0; t < k; t++) {
        const x = a[ao + t];
        s0 += x * b[b0 + t];
        s1 += x * b[b1 + t];
        s2 += x * b[b2 + t];
        s3 += x * b[b3 + t];
      }
      if (accumulate) {
        out[oo + j] += s0;
        out[oo + j + 1] += s1;
        out[oo + j + 2] += s2;
        out[oo + j + 3] += s3;
      } else {
        out[oo + j] = s0;
        out[oo + j + 1] = s1;
        out[oo + j + 2] = s2;
        out[oo + j + 3] = s3;
      }
    }
    for (; j < n; j++) {
      const bo = j * k;
      let s = 0;
      for (let t = 0; t < k; t++) s += a[ao + t] * b[bo + t];
      out[oo + j] = accumulate ? out[oo + j] + s : s;
    }
  }
}

/**
 * dinp [BT,C] += dlogits @ wte; dwte [V,C] += dlogits^T @ inp, both summed in float64 rows.
 * Rows whose dlogits are zero (masked-out positions) cost one test per entry.
 */
export function lmHeadBackward(
  dinp: FloatArray, dwte: FloatArray, dlogits: FloatArray, inp: FloatArray, wte: FloatArray,
  BT: number, C: number, V: number,
): void {
  const acc = scratch(0, C);
  // dinp: row i = sum_v dlogits[i,v] * wte[v,:]
  for (let i = 0; i < BT; i++) {
    const lo = i * V;
    acc.fill(0, 0, C);
    let any = false;
    for (let v = 0; v < V; v++) {
      const d = dlogits[lo + v];
      if (d === 0) continue;
      any = true;
      const wo = v * C;
      for (let k = 0; k < C; k++) acc[k] += d * wte[wo + k];
    }
    if (!any) continue;
    const io = i * C;
    for (let k = 0; k < C; k++) dinp[io + k] += acc[k];
  }
  // dwte: row v = sum_i dlogits[i,v] * inp[i,:]
  for (let v = 0; v < V; v++) {
    acc.fill(0, 0, C);
    let any = false;
    for (let i = 0; i < BT; i++) {
      const d = dlogits[i * V + v];
      if (d === 0) continue;
      any = true;
      const io = i * C;
      for (let k = 0; k < C; k++) acc[k] += d * inp[io + k];
    }
    if (!any) continue;
    const wo = v * C;
    for (let k = 0; k < C; k++) dwte[wo + k] += acc[k];
  }
}

// ---------------------------------------------------------------------------------------------
// Softmax + masked mean cross-entropy.

/** probs [BT,V] = softmax(logits [BT,V]) per row (max-subtracted, float64 sum). */
export function softmaxForward(probs: FloatArray, logits: FloatArray, BT: number, V: number): void {
  for (let i = 0; i < BT; i++) {
    const o = i * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (logits[o + v] > max) max = logits[o + v];
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[o + v] - max);
    const inv = 1 / sum;
    for (let v = 0; v < V; v++) probs[o + v] = Math.exp(logits[o + v] - max) * inv;
  }
}

export interface CrossEntropyResult {
  /** Mean of losses over positions with mask 1; 0 when there are none. */
  loss: number;
  /** Number of positions with mask 1. */
  tokens: number;
}

/**
 * Masked mean cross-entropy from logits [BT,V] (computed as logsumexp - logit[target] in float64,
 * so it is accurate even where probs underflow). losses [BT] receives the per-position loss
 * (0 where mask is 0). targets [BT] is only read where mask is 1.
 */
export function crossEntropyForward(
  losses: FloatArray, logits: FloatArray, targets: ArrayLike<number>, mask: ArrayLike<number>, BT: number, V: number,
): CrossEntropyResult {
  let total = 0;
  let tokens = 0;
  for (let i = 0; i < BT; i++) {
    if (!mask[i]) {
      losses[i] = 0;
      continue;
    }
    const o = i * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (logits[o + v] > max) max = logits[o + v];
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[o + v] - max);
    const l = Math.log(sum) + max - logits[o + targets[i]];
    losses[i] = l;
    total += l;
    tokens++;
  }
  return { loss: tokens > 0 ? total / tokens : 0, tokens };
}

/** Convenience: softmax into probs, then crossEntropyForward. Returns the masked mean loss. */
export function crossEntropy(
  probs: FloatArray, losses: FloatArray, logits: FloatArray, targets: ArrayLike<number>, mask: ArrayLike<number>,
  BT: number, V: number,
): CrossEntropyResult {
  softmaxForward(probs, logits, BT, V);
  return crossEntropyForward(losses, logits, targets, mask, BT, V);
}

/**
 * dlogits [BT,V] += (probs - onehot(target)) * mask / tokens: the gradient of the masked MEAN
 * loss. Rows with mask 0 are left untouched; with tokens 0 nothing is written.
 */
export function crossEntropyBackward(
  dlogits: FloatArray, probs: FloatArray, targets: ArrayLike<number>, mask: ArrayLike<number>,
  BT: number, V: number, tokens: number,
): void {
  if (tokens <= 0) return;
  const scale = 1 / tokens;
  for (let i = 0; i < BT; i++) {
    if (!mask[i]) continue;
    const o = i * V;
    for (let v = 0; v < V; v++) dlogits[o + v] += probs[o + v] * scale;
    dlogits[o + targets[i]] -= scale;
  }
}
