// Finite-difference check of the analytic backward, in float64 on a micro config: for every
// tensor of the parameter table, several random coordinates, central differences.
import { describe, expect, it } from 'vitest';
import type { MicroBatch } from '../../../shared/backend.ts';
import type { ModelConfig } from '../../../shared/model/config.ts';
import { CpuGpt } from '../../../shared/model/cpu/gpt.ts';
import { initParameters } from '../../../shared/model/init.ts';
import { Rng } from '../../../shared/rng.ts';

const config: ModelConfig = { vocabSize: 13, contextLength: 7, nLayer: 2, nHead: 2, nEmbd: 8 };
const B = 2;
const T = 6; // < contextLength: the last wpe row must get exactly zero gradient

function batch(): MicroBatch {
  const n = B * T;
  const inputs = new Int32Array(n).map((_, i) => (5 * i + 1) % config.vocabSize);
  const targets = new Int32Array(n).map((_, i) => (5 * (i + 1) + 1) % config.vocabSize);
  const mask = new Uint8Array(n).map((_, i) => (i === 0 || i === n - 1 ? 0 : 1));
  return { B, T, inputs, targets, mask };
}

/** GPT-2 init plus noise everywhere, so LayerNorm gains, biases and embeddings are not special values. */
function params64(seed: number): Float64Array {
  const p32 = initParameters(config, seed);
  const rng = new Rng(seed + 1);
  const p = new Float64Array(p32.length);
  for (let i = 0; i < p.length; i++) p[i] = p32[i] + 0.1 * rng.normal();
  return p;
}

describe('float64 finite-difference gradient check', () => {
  it('matches central differences at 4 random coordinates of every tensor', () => {
    const model = new CpuGpt(config, Float64Array);
    const p = params64(7);
    const b = batch();
    model.forward(p, b);
    const g = new Float64Array(p.length);
    model.backward(g);
    const rng = new Rng(99);
    const h = 1e-5;
    let checked = 0;
    for (const t of model.table.tensors) {
      // wpe rows >= T take no part in the loss; sample only the rows that do.
      const span = t.name === 'transformer.wpe.weight' ? T * config.nEmbd : t.size;
      for (let r = 0; r < 4; r++) {
        const i = t.offset + rng.int(span);
        const old = p[i];
        p[i] = old + h;
        const up = model.forward(p, b).loss;
        p[i] = old - h;
        const down = model.forward(p, b).loss;
        p[i] = old;
        const fd = (up - down) / (2 * h);
        expect(Math.abs(fd - g[i]), `${t.name}[${i - t.offset}] fd ${fd} analytic ${g[i]}`)
          .toBeLessThan(1e-8 + 1e-6 * Math.abs(fd));
        checked++;
      }
    }
    expect(checked).toBe(4 * model.table.tensors.length);
    // Unused positions get exactly zero gradient.
    const wpe = model.table.byName.get('transformer.wpe.weight')!;
    const tail = g.subarray(wpe.offset + T * config.nEmbd, wpe.offset + wpe.size);
    expect(tail.every((x) => x === 0)).toBe(true);
  });

  it('no masked-in position: loss 0, tokens 0 and all-zero gradient', () => {
    const model = new CpuGpt(config, Float64Array);
    const b = { ...batch(), mask: new Uint8Array(B * T) };
    const r = model.forward(params64(3), b);
    expect(r).toEqual({ loss: 0, tokens: 0 });
    const g = new Float64Array(model.table.total).fill(5);
    model.backward(g);
    expect(g.every((x) => x === 0)).toBe(true);
  });

  it('float32 and float64 paths agree', () => {
    const p = params64(11);
    const m64 = new CpuGpt(config, Float64Array);
    const m32 = new CpuGpt(config, Float32Array);
    const l64 = m64.forward(p, batch()).loss;
    const l32 = m32.forward(Float32Array.from(p), batch()).loss;
    expect(Math.abs(l64 - l32)).toBeLessThan(1e-5);
  });
});
