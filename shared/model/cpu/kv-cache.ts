// Incremental GPT-2 forward with a KV cache, for generation (one sequence). Each call to
// append() runs the new tokens through the blocks, attending to every cached position, and
// stores their keys/values; a prompt is one append (prefill), then one token per call.
// Built from the same ops as gpt.ts so its logits equal the full forward's (tested).

import { AppError } from '../../errors.ts';
import { validateModelConfig, type ModelConfig } from '../config.ts';
import { buildParameterTable } from '../parameters.ts';
import { paramViews, type ParamViews } from './gpt.ts';
import {
  geluForward, layernormForward, lmHeadForward, matmulForward, residualForward,
} from './ops.ts';

export class KvCacheDecoder {
  private readonly w: ParamViews;
  /** Per layer [contextLength, C] keys and values, filled up to `length` rows. */
  private readonly kCache: Float32Array[];
  private readonly vCache: Float32Array[];
  private len = 0;
  // Row buffers sized for `cap` new rows at once; grown when a longer prefill comes.
  private cap = 0;
  private buf!: {
    x: Float32Array; ln: Float32Array; mean: Float32Array; rstd: Float32Array; qkv: Float32Array;
    atty: Float32Array; proj: Float32Array; fch: Float32Array; fchg: Float32Array;
  };
  private readonly scores: Float64Array;
  private readonly headAcc: Float64Array;

  constructor(readonly config: ModelConfig, params: Float32Array) {
    validateModelConfig(config);
    const table = buildParameterTable(config);
    // Own copy: generation must not see a concurrent optimizer update half-way through.
    this.w = paramViews(table, new Float32Array(params));
    const { nLayer: L, contextLength: T, nEmbd: C } = config;
    this.kCache = Array.from({ length: L }, () => new Float32Array(T * C));
    this.vCache = Array.from({ length: L }, () => new Float32Array(T * C));
    this.scores = new Float64Array(T);
    this.headAcc = new Float64Array(C / config.nHead);
  }

  /** Number of positions in the cache. */
  get length(): number {
    return this.len;
  }

  reset(): void {
    this.len = 0;
  }

  private ensure(n: number): void {
    if (n <= this.cap) return;
    const C = this.config.nEmbd;
    this.cap = n;
    this.buf = {
      x: new Float32Array(n * C), ln: new Float32Array(n * C), mean: new Float32Array(n), rstd: new Float32Array(n),
      qkv: new Float32Array(n * 3 * C), atty: new Float32Array(n * C), proj: new Float32Array(n * C),
      fch: new Float32Array(n * 4 * C), fchg: new Float32Array(n * 4 * C),
    };
  }

  /**
   * Feeds tokens at positions length .. length+n-1. Returns the logits of the last new position
   * ([V]), or of every new position ([n, V]) when allLogits. Throws (cache unchanged) on tokens
   * out of range or when the context would overflow.
   */
  append(tokens: ArrayLike<number>, allLogits = false): Float32Array {
    const { nLayer: L, nEmbd: C, nHead: NH, vocabSize: V, contextLength: maxT } = this.config;
    const n = tokens.length;
    if (n === 0) throw new AppError('ERR_EMPTY_INPUT', 'kv-cache decoder: append() needs at least one token');
    if (this.len + n > maxT) {
      throw new AppError('ERR_CONTEXT_FULL', `kv-cache decoder: ${this.len} cached + ${n} new positions exceed contextLength ${maxT}`,
        400, 'shorten the prompt or maxTokens');
    }
    for (let i = 0; i < n; i++) {
      const t = tokens[i];
      if (!(Number.isInteger(t) && t >= 0 && t < V)) {
        throw new AppError('ERR_TOKEN_RANGE', `kv-cache decoder: token[${i}] = ${t} is outside the vocabulary 0..${V - 1}`);
      }
    }
    this.ensure(n);
    const b = this.buf;
    const w = this.w;
    const pos0 = this.len;
    const x = b.x.subarray(0, n * C);
    for (let i = 0; i < n; i++) {
      const to = tokens[i] * C;
      const po = (pos0 + i) * C;
      for (let c = 0; c < C; c++) x[i * C + c] = w.wte[to + c] + w.wpe[po + c];
    }
    const ln = b.ln.subarray(0, n * C);
    const qkv = b.qkv.subarray(0, n * 3 * C);
    const atty = b.atty.subarray(0, n * C);
    const proj = b.proj.subarray(0, n * C);
    const fch = b.fch.subarray(0, n * 4 * C);
    const fchg = b.fchg.subarray(0, n * 4 * C);
    for (let l = 0; l < L; l++) {
      const p = w.blocks[l];
      layernormForward(ln, b.mean, b.rstd, x, p.ln1w, p.ln1b, n, C);
      matmulForward(qkv, ln, p.qkvw, p.qkvb, n, C, 3 * C);
      const kc = this.kCache[l];
      const vc = this.vCache[l];
      for (let i = 0; i < n; i++) {
        kc.set(qkv.subarray(i * 3 * C + C, i * 3 * C + 2 * C), (pos0 + i) * C);
        vc.set(qkv.subarray(i * 3 * C + 2 * C, i * 3 * C + 3 * C), (pos0 + i) * C);
      }
      this.attend(atty, qkv, kc, vc, pos0, n, C, NH);
      matmulForward(proj, atty, p.projw, p.projb, n, C, C);
      residualForward(x, x, proj, n * C);
      layernormForward(ln, b.mean, b.rstd, x, p.ln2w, p.ln2b, n, C);
      matmulForward(fch, ln, p.fcw, p.fcb, n, C, 4 * C);
      geluForward(fchg, fch, n * 4 * C);
      matmulForward(proj, fchg, p.fcprojw, p.fcprojb, n, 4 * C, C);
      residualForward(x, x, proj, n * C);
    }
    this.len = pos0 + n;
    const first = allLogits ? 0 : n - 1;
    const rows = n - first;
    const lnf = ln.subarray(0, rows * C);
    layernormForward(lnf, b.mean, b.rstd, x.subarray(first * C, n * C), w.lnfw, w.lnfb, rows, C);
    const logits = new Float32Array(rows * V);
    lmHeadForward(logits, lnf, w.wte, rows, C, V);
    return logits;
  }

  /** Causal attention of n new query rows (positions pos0..) over cached positions 0..pos0+i. */
  private attend(
    out: Float32Array, qkv: Float32Array, kc: Float32Array, vc: Float32Array, pos0: number, n: number, C: number, NH: number,
  ): void {
    const hs = C / NH;
    const scale = 1 / Math.sqrt(hs);
    const s = this.scores;
    const acc = this.headAcc;
    for (let i = 0; i < n; i++) {
      const last = pos0 + i;
      for (let h = 0; h < NH; h++) {
        const qo = i * 3 * C + h * hs;
        let max = -Infinity;
        for (let t2 = 0; t2 <= last; t2++) {
          const ko = t2 * C + h * hs;
          let d = 0;
          for (let k = 0; k < hs; k++) d += qkv[qo + k] * kc[ko + k];
          d *= scale;
          s[t2] = d;
          if (d > max) max = d;
        }
        let sum = 0;
        for (let t2 = 0; t2 <= last; t2++) {
          const e = Math.exp(s[t2] - max);
          s[t2] = e;
          sum += e;
        }
        const inv = 1 / sum;
        // out = softmax @ v over contiguous cached v rows, summed in float64 (same order as gpt.ts)
        acc.fill(0);
        for (let t2 = 0; t2 <= last; t2++) {
          const pr = s[t2] * inv;
          const vo = t2 * C + h * hs;
          for (let k = 0; k < hs; k++) acc[k] += pr * vc[vo + k];
        }
        const oo = i * C + h * hs;
        for (let k = 0; k < hs; k++) out[oo + k] = acc[k];
      }
    }
  }
}
