// The matmul inputs every peer gets (same values, uploaded by each peer its own way), and the
// float64 values of a random sample of output elements they must all produce: a peer that
// computes the wrong thing fast (or lazily skips work) is flagged, not ranked. A sample, not only
// C[0]: a kernel that gets the first tile right and the edges wrong (bounds, transposes, split-K
// partial sums) must not pass.

import { Rng } from '../shared/rng.ts';
import type { MatmulShape } from './shapes.ts';
import type { Subject } from './timing.ts';

function uniform(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() * 2 - 1;
  return a;
}

/** One checked output element: flat row-major index into C [m,n] and its float64 value. */
export interface Probe {
  index: number;
  want: number;
}

export interface MatmulInputs {
  /** Stored [k,m] when transA, else [m,k]. */
  a: Float32Array;
  /** Stored [n,k] when transB, else [k,n]. */
  b: Float32Array;
  /** C[0], the last element, and random ones (seeded by checkSeed), each in float64. */
  probes: Probe[];
}

/** Output elements checked per matmul (plus C[0] and the last one). */
export const PROBES = 32;

/** op(A)[i,:] . op(B)[:,j] in float64. */
export function referenceElement(s: MatmulShape, a: Float32Array, b: Float32Array, i: number, j: number): number {
  let v = 0;
  for (let k = 0; k < s.k; k++) v += (s.transA ? a[k * s.m + i] : a[i * s.k + k]) * (s.transB ? b[j * s.k + k] : b[k * s.n + j]);
  return v;
}

export function matmulInputs(s: MatmulShape, checkSeed: number): MatmulInputs {
  const a = uniform(s.m * s.k, 1);
  const b = uniform(s.k * s.n, 2);
  const rng = new Rng(checkSeed);
  const total = s.m * s.n;
  const indices = new Set<number>([0, total - 1]);
  while (indices.size < Math.min(total, PROBES + 2)) indices.add(rng.int(total));
  const probes = [...indices].map((index) => ({ index, want: referenceElement(s, a, b, Math.floor(index / s.n), index % s.n) }));
  return { a, b, probes };
}

export function elementAgrees(got: number, want: number): boolean {
  return Math.abs(got - want) <= 1e-3 * (1 + Math.abs(want));
}

/** The probes a peer got wrong, as "C[i,j]=got want W" strings (empty: all agree). */
export function wrongProbes(s: MatmulShape, probes: Probe[], got: number[]): string[] {
  return probes.flatMap((p, q) =>
    elementAgrees(got[q], p.want) ? [] : [`C[${Math.floor(p.index / s.n)},${p.index % s.n}]=${got[q]}, float64 ${p.want}`],
  );
}

/** One peer's matmul on the shared inputs, ready to time; read() reads elements of C back. */
export interface MatmulSubject extends Subject {
  label?: string;
  /** Values of C (row-major [m,n]) at these flat indices, from the last iteration. */
  read(indices: number[]): Promise<number[]>;
  dispose(): void;
}
