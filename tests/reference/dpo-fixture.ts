// The PyTorch DPO fixture (issue 16): the DPO loss, the sequence log-probs and every gradient for
// the tiny model and a few preference pairs, computed by make_dpo_fixture.py in float64.
//
// Browser-safe (no Node imports): the conformance suite parses the bytes in Chromium too.
// `npm run fixture:dpo`: write-dpo-init.ts writes the init stream (magic DPOINIT1) to stdout;
// make_dpo_fixture.py reads it and writes dpo_tiny.bin (magic DPOFIX01).
//
// Layout (little-endian):
//   magic       8 bytes ("DPOINIT1" | "DPOFIX01")
//   int32[12]   version, V, maxT, L, NH, C, pairs, T, nParams, policySeed, refSeed, 0
//   float64     beta
//   int32[R*T]  inputs; int32[R*T] targets; int32[R*T] mask     (R = 2 * pairs rows: chosen, rejected, ...)
// DPOINIT1 then: float32[nParams] policy parameters; float32[nParams] reference parameters.
// DPOFIX01 then: float64[R] policy sequence log-probs; float64[R] reference sequence log-probs;
//                float64 loss (mean DPO loss); float32[nParams] d(loss)/d(policy parameters).

import type { MicroBatch } from '../../shared/backend.ts';
import { buildMicroBatch, pairRow } from '../../shared/data/sequences.ts';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';

const VERSION = 1;
const HEADER_BYTES = 8 + 12 * 4 + 8;

export interface DpoFixtureSetup {
  config: ModelConfig;
  pairs: number;
  T: number;
  beta: number;
  policySeed: number;
  refSeed: number;
  batch: MicroBatch;
  policy: Float32Array;
  reference: Float32Array;
}

export interface DpoFixture {
  setup: DpoFixtureSetup;
  policyLogProbs: Float64Array;
  refLogProbs: Float64Array;
  loss: number;
  grads: Float32Array;
}

/** Three pairs of real text rows (prompt, response + EOS masked in), of different lengths, T = 12. */
export function dpoFixtureSetup(): DpoFixtureSetup {
  const config: ModelConfig = { ...PRESETS.tiny };
  const T = 12;
  const rows = [
    ['12+34=', '46'], ['12+34=', '47'],
    ['rev cat=', 'tac'], ['rev cat=', 'cat'],
    ['9+9=', '18'], ['9+9=', '1'],
  ].map(([p, r]) => pairRow(p, r, T));
  const batch = buildMicroBatch({ size: rows.length, sample: (id: number) => rows[id] }, rows.map((_, i) => i));
  const policySeed = 1337;
  const refSeed = 7;
  return {
    config, pairs: 3, T, beta: 0.5, policySeed, refSeed, batch,
    policy: initParameters(config, policySeed), reference: initParameters(config, refSeed),
  };
}

function header(magic: string, s: DpoFixtureSetup, extra: number): Uint8Array {
  const R = 2 * s.pairs;
  const out = new Uint8Array(HEADER_BYTES + 3 * R * s.T * 4 + extra);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) out[i] = magic.charCodeAt(i);
  const c = s.config;
  [VERSION, c.vocabSize, c.contextLength, c.nLayer, c.nHead, c.nEmbd, s.pairs, s.T, s.policy.length, s.policySeed, s.refSeed, 0]
    .forEach((v, i) => dv.setInt32(8 + 4 * i, v, true));
  dv.setFloat64(8 + 48, s.beta, true);
  let off = HEADER_BYTES;
  for (const a of [s.batch.inputs, s.batch.targets, Int32Array.from(s.batch.mask)]) {
    for (let i = 0; i < a.length; i++, off += 4) dv.setInt32(off, a[i], true);
  }
  return out;
}

/** The init stream make_dpo_fixture.py reads. */
export function encodeDpoInit(s: DpoFixtureSetup): Uint8Array {
  const n = s.policy.length;
  const out = header('DPOINIT1', s, 8 * n);
  const dv = new DataView(out.buffer);
  let off = out.length - 8 * n;
  for (const p of [s.policy, s.reference]) for (let i = 0; i < n; i++, off += 4) dv.setFloat32(off, p[i], true);
  return out;
}

/** Parses dpo_tiny.bin and checks it was made from dpoFixtureSetup() (header and rows byte for byte). */
export function parseDpoFixture(raw: ArrayBuffer | Uint8Array): DpoFixture {
  const buf = raw instanceof Uint8Array ? raw : new Uint8Array(raw);
  const setup = dpoFixtureSetup();
  const want = header('DPOFIX01', setup, 0);
  for (let i = 0; i < want.length; i++) {
    if (buf[i] !== want[i]) throw new Error(`dpo fixture: byte ${i} of the header/rows differs from dpoFixtureSetup(); regenerate with \`npm run fixture:dpo\``);
  }
  const R = 2 * setup.pairs;
  const n = setup.policy.length;
  const expected = want.length + 8 * R * 2 + 8 + 4 * n;
  if (buf.length !== expected) throw new Error(`dpo fixture: ${buf.length} bytes, expected ${expected}; regenerate with \`npm run fixture:dpo\``);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = want.length;
  const f64 = (k: number) => Float64Array.from({ length: k }, () => { const v = dv.getFloat64(off, true); off += 8; return v; });
  const policyLogProbs = f64(R);
  const refLogProbs = f64(R);
  const loss = f64(1)[0];
  const grads = new Float32Array(n);
  for (let i = 0; i < n; i++, off += 4) grads[i] = dv.getFloat32(off, true);
  return { setup, policyLogProbs, refLogProbs, loss, grads };
}
