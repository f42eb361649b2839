// Explicit activation estimates for a (micro-batch b, sequence s) shape, beside the flat
// 4 bytes/param the 20-byte rule reserves for activations and workspace.
//
// Per transformer layer we use Korthikanti et al. 2022 ("Reducing Activation Recomputation in
// Large Transformer Models", eq. 2): s*b*h*(34 + 5*a*s/h) bytes for 16-bit activations with
// dropout masks. We keep everything in fp32, so the formula is scaled by 4/2 = 2. It is an
// estimate, not a bound: against what PyTorch autograd saves for an fp32 GPT-2 (golden test
// tests/memory/activations-golden.test.ts) it is ~15-20% low at short sequences (the tanh-GELU
// intermediates) and ~20% high at long ones (it counts dropout masks on the attention maps, which
// our GPT-2 does not have).
// Outside the layers: the logits and their softmax/gradient (2 * b*s*V fp32 values, as llm.c
// keeps logits and probs) and the embedding output + final LayerNorm (2 * b*s*h values).

import type { ModelConfig } from '../model/config.ts';

/** Stored activations of one block for the backward pass, bytes (fp32 by default). */
export function layerActivationBytes(c: ModelConfig, b: number, s: number, bytesPerValue = 4): number {
  const h = c.nEmbd;
  const a = c.nHead;
  return s * b * h * (34 + (5 * a * s) / h) * (bytesPerValue / 2);
}

/** Logits + probs (or dlogits) for the LM head, fp32. */
export function logitsBytes(c: ModelConfig, b: number, s: number): number {
  return 2 * b * s * c.vocabSize * 4;
}

/** Embedding output and final LayerNorm output, fp32. */
export function embeddingActivationBytes(c: ModelConfig, b: number, s: number): number {
  return 2 * b * s * c.nEmbd * 4;
}

export interface ActivationEstimate {
  /** Bytes for `layers` blocks. */
  layers: number;
  /** Bytes for logits and probs (0 when the head is not held). */
  logits: number;
  /** Bytes for embedding/ln_f outputs (0 when neither end is held). */
  embeddings: number;
  total: number;
}

/**
 * Training activations for a micro-batch: `layers` blocks (default all), plus the head's logits and
 * the embedding outputs when `ends` is true (a replica, or the first/last pipeline stage).
 */
export function trainingActivations(
  c: ModelConfig, b: number, s: number, layers = c.nLayer, ends = true,
): ActivationEstimate {
  const l = layers * layerActivationBytes(c, b, s);
  const lg = ends ? logitsBytes(c, b, s) : 0;
  const e = ends ? embeddingActivationBytes(c, b, s) : 0;
  return { layers: l, logits: lg, embeddings: e, total: l + lg + e };
}

/** Inference KV cache: keys and values of every layer for b sequences of s positions. */
export function kvCacheBytes(c: ModelConfig, b: number, s: number, bytesPerValue: number): number {
  return 2 * c.nLayer * b * s * c.nEmbd * bytesPerValue;
}

export interface BufferSize {
  name: string;
  shape: number[];
  bytes: number;
}

/** The single activation buffers of a micro-batch (fp32), largest first. A kernel binds each whole. */
export function activationBuffers(c: ModelConfig, b: number, s: number, withHead = true): BufferSize[] {
  const h = c.nEmbd;
  const list: BufferSize[] = [
    { name: 'attention scores (preatt/att)', shape: [b, c.nHead, s, s], bytes: b * c.nHead * s * s * 4 },
    { name: 'mlp hidden (fch/fch_gelu)', shape: [b, s, 4 * h], bytes: b * s * 4 * h * 4 },
    { name: 'qkv', shape: [b, s, 3 * h], bytes: b * s * 3 * h * 4 },
    { name: 'residual stream', shape: [b, s, h], bytes: b * s * h * 4 },
  ];
  if (withHead) list.push({ name: 'logits', shape: [b, s, c.vocabSize], bytes: b * s * c.vocabSize * 4 });
  return list.sort((x, y) => y.bytes - x.bytes);
}

export function largestActivationBuffer(c: ModelConfig, b: number, s: number, withHead = true): BufferSize {
  return activationBuffers(c, b, s, withHead)[0];
}
