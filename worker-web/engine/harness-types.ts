// The KernelHarness contract: run ONE named kernel of the engine on host arrays and get host
// arrays back. Used by the conformance suite (tests/engine/conformance.case.ts) to compare each
// WGSL kernel with the CPU reference op. Browser-safe: no Node imports here.
//
// Shapes follow llm.c: N = B*T rows, C channels, OC output channels, NH heads, V vocab.
// Linear weights are in GPT-2 Conv1D layout [in, out] (y = x @ W + b).

export interface MatmulArgs {
  /** C[M,N] = op(A)[M,K] * op(B)[K,N] (+ bias[N]) (+ C if accumulate). */
  M: number;
  N: number;
  K: number;
  /** A is stored [K,M] (op(A) = A^T), e.g. dW = X^T * dY. */
  transA?: boolean;
  /** B is stored [N,K] (op(B) = B^T), e.g. dX = dY * W^T, logits = X * wte^T. */
  transB?: boolean;
  a: Float32Array;
  b: Float32Array;
  bias?: Float32Array;
  /** Initial C; with accumulate the product is added to it. */
  c?: Float32Array;
  accumulate?: boolean;
  /** Force the 64x64 or 128x128 tile config (default: chosen by output size, as in training). */
  tile?: 64 | 128;
  /** K-step of the 128x128 config (8 default, or 16). */
  kStep128?: 8 | 16;
  /** Force deterministic split-K into this many slices (default: the device policy). No bias with it. */
  splitK?: number;
}

/** Matmul with the fused epilogues the training step uses (see kernels/matmul.ts). */
export interface MatmulFusedArgs extends MatmulArgs {
  /** Residual added in the epilogue (C = A B + bias + r). */
  r?: Float32Array;
  /** 'gelu': also return g = gelu(C); 'geluGrad': C = (A B) * gelu'(x). */
  epilogue?: 'none' | 'gelu' | 'geluGrad';
  /** Pre-activation for 'geluGrad', [M,N]. */
  x?: Float32Array;
}

export type AttentionImpl = 'rows' | 'matmul';

export interface AdamWArgs {
  params: Float32Array;
  grads: Float32Array;
  m: Float32Array;
  v: Float32Array;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step number (bias correction). */
  step: number;
  /** Gradient multiplier applied first (global-norm clipping); default 1. */
  gradScale?: number;
}

export interface KernelHarness {
  /** Kernel names this harness can run (one per WGSL kernel family). */
  readonly kernels: readonly string[];
  matmul(args: MatmulArgs): Promise<Float32Array>;
  matmulFused(args: MatmulFusedArgs): Promise<{ c: Float32Array; g?: Float32Array }>;
  encoderForward(a: { B: number; T: number; C: number; inp: Int32Array; wte: Float32Array; wpe: Float32Array }): Promise<Float32Array>;
  /** dwte starts from `dwteIn` (the LM head's contribution) and gets the embedding gradient added. */
  encoderBackward(a: { B: number; T: number; C: number; V: number; inp: Int32Array; dout: Float32Array; dwteIn?: Float32Array }): Promise<{ dwte: Float32Array; dwpe: Float32Array }>;
  layernormForward(a: { N: number; C: number; inp: Float32Array; weight: Float32Array; bias: Float32Array }): Promise<{ out: Float32Array; mean: Float32Array; rstd: Float32Array }>;
  /** dinp = dinpIn (residual gradient, zeros if absent) + d(layernorm)/d(inp). */
  /** twoPass: force the two-pass column reduction (row blocks, then blocks) for dweight/dbias. */
  layernormBackward(a: { N: number; C: number; dout: Float32Array; inp: Float32Array; weight: Float32Array; mean: Float32Array; rstd: Float32Array; dinpIn?: Float32Array; twoPass?: boolean }): Promise<{ dinp: Float32Array; dweight: Float32Array; dbias: Float32Array }>;
  /** dbias[c] = sum_n dout[n,c]; twoPass as above. */
  biasBackward(a: { N: number; OC: number; dout: Float32Array; twoPass?: boolean }): Promise<Float32Array>;
  /** impl 'rows' (default): one workgroup per score row; 'matmul': batched strided matmuls (long T). */
  attentionForward(a: { B: number; T: number; C: number; NH: number; qkv: Float32Array; impl?: AttentionImpl }): Promise<{ out: Float32Array; att: Float32Array }>;
  attentionBackward(a: { B: number; T: number; C: number; NH: number; dout: Float32Array; qkv: Float32Array; att: Float32Array; impl?: AttentionImpl }): Promise<Float32Array>;
  geluForward(a: { inp: Float32Array }): Promise<Float32Array>;
  geluBackward(a: { inp: Float32Array; dout: Float32Array }): Promise<Float32Array>;
  residualForward(a: { x: Float32Array; y: Float32Array }): Promise<Float32Array>;
  /** Fused softmax + masked cross-entropy: losses[n] (0 where mask=0) and dlogits = (p - onehot) * mask / tokens. */
  crossEntropy(a: { N: number; V: number; logits: Float32Array; targets: Int32Array; mask: Uint8Array }): Promise<{ losses: Float32Array; loss: number; dlogits: Float32Array }>;
  /** Sum of squares and count of non-finite values (bit-pattern test). */
  gradNorm(a: { data: Float32Array }): Promise<{ sumSq: number; nonFinite: number }>;
  adamw(a: AdamWArgs): Promise<{ params: Float32Array; m: Float32Array; v: Float32Array }>;
  dispose(): void;
}
