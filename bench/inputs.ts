// The matmul inputs every peer gets (same values, uploaded by each peer its own way), and the
// float64 value of C[0] they must all produce: a peer that computes the wrong thing fast (or
// lazily skips work) is flagged, not ranked.

import { Rng } from '../shared/rng.ts';
import type { MatmulShape } from './shapes.ts';
import type { Subject } from './timing.ts';

function uniform(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() * 2 - 1;
  return a;
}

export interface MatmulInputs {
  /** Stored [k,m] when transA, else [m,k]. */
  a: Float32Array;
  /** Stored [n,k] when transB, else [k,n]. */
  b: Float32Array;
  /** Row 0 of op(A) . column 0 of op(B), in float64. */
  first: number;
}

export function matmulInputs(s: MatmulShape): MatmulInputs {
  const a = uniform(s.m * s.k, 1);
  const b = uniform(s.k * s.n, 2);
  let first = 0;
  for (let k = 0; k < s.k; k++) first += (s.transA ? a[k * s.m] : a[k]) * (s.transB ? b[k] : b[k * s.n]);
  return { a, b, first };
}

export function firstAgrees(got: number, want: number): boolean {
  return Math.abs(got - want) <= 1e-3 * (1 + Math.abs(want));
}

/** One peer's matmul on the shared inputs, ready to time; first() reads C[0] back. */
export interface MatmulSubject extends Subject {
  label?: string;
  first(): Promise<number>;
  dispose(): void;
}
