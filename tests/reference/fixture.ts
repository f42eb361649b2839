// The PyTorch golden fixture (llm.c test_gpt2.c style) and the init stream it is made from.
//
// `npm run fixture`: write-init.ts writes an init stream (magic GPTINIT1) to stdout: the header
// below, the inputs/targets/mask and the initial parameters from initParameters(tiny, seed);
// make_fixture.py reads it on stdin, runs its own PyTorch GPT-2 in float64 and writes
// gpt2_tiny.bin (magic GPTFIX01): the same header and inputs, then what PyTorch computed.
//
// Layout (little-endian), both files:
//   magic        8 bytes ("GPTINIT1" | "GPTFIX01")
//   int32[16]    version, V, maxT, L, NH, C, B, T, nParams, nSteps, seed, warmupSteps, totalSteps, 0, 0, 0
//   float64[8]   lr, minLr, beta1, beta2, eps, weightDecay, maxGradNorm, 0
//   int32[B*T]   inputs;  int32[B*T] targets;  int32[B*T] mask
//   float32[nParams] initial parameters (parameter-table order)
// GPTFIX01 only, then:
//   float32[B*T*V] logits at the initial parameters
//   float64      loss (masked mean CE)
//   float32[nParams] gradients at the initial parameters
//   float64[nSteps] loss before each AdamW update (same batch every step)
//   float64[nSteps] pre-clip global gradient norm of each step
//   float32[nParams] parameters after nSteps updates

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';

export const FIXTURE_PATH = fileURLToPath(new URL('./gpt2_tiny.bin', import.meta.url));
export const INIT_MAGIC = 'GPTINIT1';
export const FIXTURE_MAGIC = 'GPTFIX01';
export const FIXTURE_VERSION = 1;
const HEADER_BYTES = 8 + 16 * 4 + 8 * 8;

export interface FixtureHyper {
  lr: number;
  minLr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
  warmupSteps: number;
  totalSteps: number;
}

export interface FixtureSetup {
  config: ModelConfig;
  B: number;
  T: number;
  seed: number;
  nSteps: number;
  hyper: FixtureHyper;
  inputs: Int32Array;
  targets: Int32Array;
  mask: Int32Array;
  params: Float32Array;
}

export interface Fixture extends FixtureSetup {
  logits: Float32Array;
  loss: number;
  grads: Float32Array;
  losses: Float64Array;
  gradNorms: Float64Array;
  finalParams: Float32Array;
}

/**
 * The fixture's setup: tiny preset, B=2, T=16, seed 1337, 10 steps. Self-describing tokens:
 * position n = b*T + t holds (7n + 3) mod 257 (invertible, so a token names its position) and
 * its target is the next one; a few positions at the edges are masked out.
 */
export function fixtureSetup(): FixtureSetup {
  const config: ModelConfig = { ...PRESETS.tiny };
  const B = 2;
  const T = 16;
  const seed = 1337;
  const tok = (n: number) => (7 * n + 3) % config.vocabSize;
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const n = b * T + t;
      inputs[n] = tok(n);
      targets[n] = tok(n + 1);
      mask[n] = (b === 0 && t < 3) || (b === 1 && t >= T - 2) ? 0 : 1;
    }
  }
  return {
    config, B, T, seed, nSteps: 10,
    hyper: { lr: 3e-3, minLr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.0, warmupSteps: 3, totalSteps: 10 },
    inputs, targets, mask, params: initParameters(config, seed),
  };
}

/** The init stream make_fixture.py reads. */
export function encodeInit(s: FixtureSetup): Buffer {
  const n = s.B * s.T;
  const buf = Buffer.alloc(HEADER_BYTES + 3 * n * 4 + s.params.length * 4);
  buf.write(INIT_MAGIC, 0, 'latin1');
  const c = s.config;
  const ints = [FIXTURE_VERSION, c.vocabSize, c.contextLength, c.nLayer, c.nHead, c.nEmbd, s.B, s.T, s.params.length,
    s.nSteps, s.seed, s.hyper.warmupSteps, s.hyper.totalSteps, 0, 0, 0];
  ints.forEach((v, i) => buf.writeInt32LE(v, 8 + 4 * i));
  const h = s.hyper;
  [h.lr, h.minLr, h.beta1, h.beta2, h.eps, h.weightDecay, h.maxGradNorm, 0].forEach((v, i) => buf.writeDoubleLE(v, 72 + 8 * i));
  let off = HEADER_BYTES;
  for (const a of [s.inputs, s.targets, s.mask]) {
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(buf, off);
    off += a.byteLength;
  }
  Buffer.from(s.params.buffer, s.params.byteOffset, s.params.byteLength).copy(buf, off);
  return buf;
}

class Reader {
  off = 0;
  constructor(private readonly buf: Buffer, private readonly path: string) {}
  private take(bytes: number): ArrayBuffer {
    if (this.off + bytes > this.buf.length) {
      throw new Error(`${this.path}: truncated at byte ${this.off} (needs ${bytes} more); regenerate with \`npm run fixture\``);
    }
    // Copy into a fresh (aligned) ArrayBuffer so typed views of any element size work.
    const out = new Uint8Array(bytes);
    out.set(this.buf.subarray(this.off, this.off + bytes));
    this.off += bytes;
    return out.buffer;
  }
  i32(n: number) { return new Int32Array(this.take(4 * n)); }
  f32(n: number) { return new Float32Array(this.take(4 * n)); }
  f64(n: number) { return new Float64Array(this.take(8 * n)); }
}

export function readFixture(path = FIXTURE_PATH): Fixture {
  const buf = readFileSync(path);
  const magic = buf.subarray(0, 8).toString('latin1');
  if (magic !== FIXTURE_MAGIC) throw new Error(`${path}: bad magic "${magic}", expected ${FIXTURE_MAGIC}`);
  const r = new Reader(buf, path);
  r.off = 8;
  const [version, V, maxT, L, NH, C, B, T, nParams, nSteps, seed, warmupSteps, totalSteps] = r.i32(16);
  if (version !== FIXTURE_VERSION) throw new Error(`${path}: version ${version}, this reader knows ${FIXTURE_VERSION}`);
  const [lr, minLr, beta1, beta2, eps, weightDecay, maxGradNorm] = r.f64(8);
  const n = B * T;
  const fx: Fixture = {
    config: { vocabSize: V, contextLength: maxT, nLayer: L, nHead: NH, nEmbd: C }, B, T, seed, nSteps,
    hyper: { lr, minLr, beta1, beta2, eps, weightDecay, maxGradNorm, warmupSteps, totalSteps },
    inputs: r.i32(n), targets: r.i32(n), mask: r.i32(n), params: r.f32(nParams),
    logits: r.f32(n * V), loss: r.f64(1)[0], grads: r.f32(nParams), losses: r.f64(nSteps), gradNorms: r.f64(nSteps),
    finalParams: r.f32(nParams),
  };
  if (r.off !== buf.length) throw new Error(`${path}: ${buf.length - r.off} trailing bytes; regenerate with \`npm run fixture\``);
  return fx;
}
