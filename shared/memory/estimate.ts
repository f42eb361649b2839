// One model's memory: the flat rule (bytes/param by mode and precision, with its breakdown) and,
// when the config is known, the explicit estimate for a (micro-batch, seq) shape, with a sentence
// saying where the rule over- or under-estimates, and the WebGPU per-buffer flags.

import { AppError } from '../errors.ts';
import { kvCacheBytes, layerActivationBytes, trainingActivations } from './activations.ts';
import { checkBufferLimits, type BufferLimits, type LimitFlag } from './limits.ts';
import type { ModelShape } from './model-shape.ts';
import {
  breakdownTotal, BYTES_PER_VALUE, bytesPerParam, ruleBreakdown, TRAIN_STATE_BYTES_PER_PARAM,
  type Breakdown, type Mode, type Precision,
} from './rules.ts';
import { bytes, formatBytes, type Bytes } from './units.ts';

export interface ExplicitEstimate {
  batch: number;
  seq: number;
  formula: string;
  /** One block's stored activations (Korthikanti et al. x2 for fp32), bytes. */
  perLayerActivations: number;
  /** All blocks' activations (train) or one block's working set (infer), bytes. */
  layerActivations: number;
  /** Logits and probs (train: b*s*V*2; infer: last position b*V), bytes. */
  logits: number;
  /** Embedding and ln_f outputs, bytes. */
  embeddings: number;
  /** Inference only: keys and values of every layer, bytes. */
  kvCache: number;
  /** Weights (+ gradients + Adam when training) + the above, bytes. */
  totalBytes: number;
  total: Bytes;
  /** explicit / rule. */
  ratioToRule: number;
  /** Where the flat rule over- or under-estimates for this shape. */
  comparison: string;
}

export interface Estimate {
  model: string;
  params: number;
  mode: Mode;
  precision: Precision;
  bytesPerParam: number;
  /** params x bytesPerParam, bytes. */
  totalBytes: number;
  total: Bytes;
  /** The rule's parts, bytes (inference: weights only). */
  breakdown: Breakdown;
  unit: 'bytes';
  /** The arithmetic in one line. */
  rule: string;
  explicit?: ExplicitEstimate;
  bufferFlags: LimitFlag[];
  notes: string[];
}

export interface EstimateOptions {
  mode: Mode;
  precision: Precision;
  batch?: number;
  seq?: number;
  limits?: Partial<BufferLimits>;
}

export function estimateModel(shape: ModelShape, o: EstimateOptions): Estimate {
  if (o.mode === 'train' && o.precision !== 'fp32') {
    throw new AppError('ERR_MEMORY_PRECISION', `training runs in fp32 (20 B/param); precision "${o.precision}" applies to --mode infer only`, 400,
      'drop --precision, or use --mode infer');
  }
  const P = shape.params;
  const bpp = bytesPerParam(o.mode, o.precision);
  const breakdown = ruleBreakdown(P, o.mode, o.precision);
  const totalBytes = breakdownTotal(breakdown);
  const notes: string[] = [];
  if (shape.note) notes.push(shape.note);
  const rule = o.mode === 'train'
    ? `${P.toLocaleString('en-US')} params x 20 B (weights 4 + gradients 4 + Adam m,v 8 + activations/workspace 4) = ${formatBytes(totalBytes)}`
    : `${P.toLocaleString('en-US')} params x ${bpp} B (${o.precision} weights) = ${formatBytes(totalBytes)}`;
  const est: Estimate = {
    model: shape.name, params: P, mode: o.mode, precision: o.precision, bytesPerParam: bpp, totalBytes,
    total: bytes(totalBytes), breakdown, unit: 'bytes', rule, bufferFlags: [], notes,
  };
  const c = shape.config;
  if (!c) {
    notes.push('no config: the explicit activation/KV-cache estimate and buffer-limit checks need --model or --config');
    return est;
  }
  const b = o.batch ?? 1;
  const s = o.seq ?? c.contextLength;
  if (!Number.isInteger(b) || b < 1) throw new AppError('ERR_MEMORY_SHAPE', `batch must be a positive integer, got ${b}`);
  if (!Number.isInteger(s) || s < 1 || s > c.contextLength) {
    throw new AppError('ERR_MEMORY_SHAPE', `seq must be an integer in 1..${c.contextLength} (the model's context length), got ${s}`);
  }
  const perLayer = layerActivationBytes(c, b, s);
  if (o.mode === 'train') {
    const a = trainingActivations(c, b, s);
    const state = TRAIN_STATE_BYTES_PER_PARAM * P;
    const total = state + a.total;
    const reserved = breakdown.activations;
    const perSeq = trainingActivations(c, 1, s).total;
    const breakEven = Math.floor(reserved / perSeq);
    const verdict = a.total > reserved
      ? `the 20-byte rule UNDER-estimates: its 4 B/param (${formatBytes(reserved)}) covers ${breakEven} sequence(s) of ${s} tokens, this shape's activations need ${formatBytes(a.total)} (${(a.total / reserved).toFixed(2)}x)`
      : `the 20-byte rule OVER-estimates: its 4 B/param (${formatBytes(reserved)}) exceeds this shape's ${formatBytes(a.total)} of activations; it would cover ${breakEven} sequence(s) of ${s} tokens`;
    est.explicit = {
      batch: b, seq: s,
      formula: 'per layer s*b*h*(34 + 5*a*s/h) bytes x2 for fp32 (Korthikanti et al.), + logits/probs 2*b*s*V*4 + embeddings 2*b*s*h*4, + 16 B/param for weights, gradients, Adam',
      perLayerActivations: perLayer, layerActivations: a.layers, logits: a.logits, embeddings: a.embeddings, kvCache: 0,
      totalBytes: total, total: bytes(total), ratioToRule: total / totalBytes, comparison: verdict,
    };
  } else {
    const bv = BYTES_PER_VALUE[o.precision];
    const kv = kvCacheBytes(c, b, s, bv);
    // Working set of one block at a time for the prompt pass (qkv + mlp hidden), and the last position's logits.
    const work = b * s * 7 * c.nEmbd * 4;
    const logits = b * c.vocabSize * 4;
    const emb = 2 * b * s * c.nEmbd * 4;
    const total = totalBytes + kv + work + logits + emb;
    const ratio = total / totalBytes;
    est.explicit = {
      batch: b, seq: s,
      formula: `weights ${bv} B/param + KV cache 2*L*b*s*h*${bv} + one block's working set b*s*7h*4 + last logits b*V*4 + embeddings 2*b*s*h*4`,
      perLayerActivations: work, layerActivations: work, logits, embeddings: emb, kvCache: kv,
      totalBytes: total, total: bytes(total), ratioToRule: ratio,
      comparison: `weights alone (${bpp} B/param) UNDER-estimate by ${((ratio - 1) * 100).toFixed(0)}%: the KV cache for ${b}x${s} tokens is ${formatBytes(kv)}; EleutherAI's rule of thumb is ~1.2x weights`,
    };
  }
  est.bufferFlags = checkBufferLimits(c, b, s, o.limits, true, o.mode === 'train' ? 4 : BYTES_PER_VALUE[o.precision]);
  return est;
}
