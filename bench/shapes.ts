// The matmul shapes benchmarked: squares, and the GPT's own products at a preset and micro-batch
// (forward and the two backward variants, transposed operands read in place).

import type { ModelConfig } from '../shared/model/config.ts';

export interface MatmulShape {
  label: string;
  m: number;
  n: number;
  k: number;
  /** C = op(A) op(B) with A stored [k,m] when transA, B stored [n,k] when transB. */
  transA: boolean;
  transB: boolean;
}

export function squareShapes(sizes: number[]): MatmulShape[] {
  return sizes.map((n) => ({ label: `square ${n}`, m: n, n, k: n, transA: false, transB: false }));
}

/** BT = B*T rows. Names follow the GPT-2 modules whose products they are. */
export function gptShapes(c: ModelConfig, B: number, T: number): MatmulShape[] {
  const BT = B * T;
  const C = c.nEmbd;
  const V = c.vocabSize;
  const s = (label: string, m: number, n: number, k: number, transA = false, transB = false): MatmulShape =>
    ({ label, m, n, k, transA, transB });
  return [
    s('c_attn  BTxC x Cx3C', BT, 3 * C, C),
    s('attn.c_proj BTxC x CxC', BT, C, C),
    s('c_fc    BTxC x Cx4C', BT, 4 * C, C),
    s('mlp.c_proj BTx4C x 4CxC', BT, C, 4 * C),
    s('lm_head BTxC x (VxC)^T', BT, V, C, false, true),
    s('dX c_fc dY*W^T', BT, C, 4 * C, false, true),
    s('dW c_fc X^T*dY', C, 4 * C, BT, true, false),
    s('dwte dlogits^T*X', V, C, BT, true, false),
  ];
}

export function matmulFlops(s: MatmulShape): number {
  return 2 * s.m * s.n * s.k;
}
