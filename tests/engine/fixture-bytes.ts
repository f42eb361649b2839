// Browser-safe parser of tests/reference/gpt2_tiny.bin (GPTFIX01; the layout is documented in
// tests/reference/fixture.ts, whose reader needs node:fs). The conformance suite gets the bytes
// from its environment (fs in Node, fetch in the page) and parses them here; the Node test checks
// this parser against readFixture so the two cannot drift apart.

import type { ModelConfig } from '../../shared/model/config.ts';

export interface FixtureData {
  config: ModelConfig;
  B: number;
  T: number;
  inputs: Int32Array;
  targets: Int32Array;
  mask: Int32Array;
  params: Float32Array;
  logits: Float32Array;
  loss: number;
  grads: Float32Array;
  /** Pre-clip global gradient norm of each of the fixture's steps ([0] is the norm of `grads`). */
  gradNorms: Float64Array;
}

export function parseFixtureBytes(input: ArrayBuffer | Uint8Array): FixtureData {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  if (magic !== 'GPTFIX01') throw new Error(`fixture: bad magic "${magic}", expected GPTFIX01 (regenerate with npm run fixture)`);
  let off = 8;
  const take = (n: number) => {
    if (off + n > bytes.length) throw new Error(`fixture: truncated at byte ${off} (needs ${n} more)`);
    // Copy (aligned, and a Node Buffer's slice() would alias its pool).
    const b = new Uint8Array(bytes.subarray(off, off + n)).buffer;
    off += n;
    return b;
  };
  const ints = new Int32Array(take(64));
  const [version, V, maxT, L, NH, C, B, T, nParams, nSteps] = ints;
  if (version !== 1) throw new Error(`fixture: version ${version}, this parser knows 1`);
  take(64); // hyper-parameters (not needed by the engine suite)
  const n = B * T;
  const inputs = new Int32Array(take(4 * n));
  const targets = new Int32Array(take(4 * n));
  const mask = new Int32Array(take(4 * n));
  const params = new Float32Array(take(4 * nParams));
  const logits = new Float32Array(take(4 * n * V));
  const loss = new Float64Array(take(8))[0];
  const grads = new Float32Array(take(4 * nParams));
  take(8 * nSteps); // losses
  const gradNorms = new Float64Array(take(8 * nSteps));
  return { config: { vocabSize: V, contextLength: maxT, nLayer: L, nHead: NH, nEmbd: C }, B, T, inputs, targets, mask, params, logits, loss, grads, gradNorms };
}
