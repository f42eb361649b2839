// The activation wire codec: round-trip error bounds per dtype and named errors for bad packets.
import { describe, expect, it } from 'vitest';
import { checkPackedActivations, packActivations, packedBytes, unpackActivations, type ActivationDtype } from '../../shared/pipeline/activation-codec.ts';
import { Rng } from '../../shared/rng.ts';

const rows = 12;
const cols = 48;

function acts(seed: number): Float32Array {
  const rng = new Rng(seed);
  // rows of very different magnitudes, so a single global scale would fail the int8 bound
  return Float32Array.from({ length: rows * cols }, (_, i) => rng.normal() * 10 ** ((Math.floor(i / cols) % 6) - 3));
}

describe('activation codec', () => {
  it('fp32 is exact, fp16 within 2^-11 relative, int8 within half a step of each row\'s absmax/127', () => {
    const x = acts(1);
    const f32 = unpackActivations(packActivations(x, rows, cols, 'fp32'));
    expect(f32).toEqual(x);
    const f16 = unpackActivations(packActivations(x, rows, cols, 'fp16'));
    for (let i = 0; i < x.length; i++) {
      if (Math.abs(x[i]) > 6.2e-5) expect(Math.abs(f16[i] - x[i])).toBeLessThanOrEqual(Math.abs(x[i]) * 2 ** -11);
      else expect(Math.abs(f16[i] - x[i])).toBeLessThanOrEqual(2 ** -25); // subnormal halves: absolute step 2^-24
    }
    const p8 = packActivations(x, rows, cols, 'int8');
    const i8 = unpackActivations(p8);
    for (let r = 0; r < rows; r++) {
      let m = 0;
      for (let c = 0; c < cols; c++) m = Math.max(m, Math.abs(x[r * cols + c]));
      expect(p8.scales![r]).toBe(Math.fround(m / 127)); // float32 on the wire
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        expect(Math.abs(i8[i] - x[i])).toBeLessThanOrEqual((m / 127) * 0.5 * (1 + 1e-6));
      }
    }
  });

  it('wire bytes are 4, 2 and 1 per value (+ one float32 scale per row for int8)', () => {
    const x = acts(2);
    for (const [d, per] of [['fp32', 4], ['fp16', 2], ['int8', 1]] as const) {
      const p = packActivations(x, rows, cols, d);
      expect(p.data.byteLength + (p.scales?.byteLength ?? 0)).toBe(rows * cols * per + (d === 'int8' ? 4 * rows : 0));
      expect(packedBytes(rows, cols, d)).toBe(p.data.byteLength + (p.scales?.byteLength ?? 0));
    }
  });

  it('decodes from an unaligned slice (as msgpack hands out bytes), and a zero row stays zero', () => {
    const x = acts(3);
    x.fill(0, 0, cols);
    for (const d of ['fp32', 'fp16', 'int8'] as ActivationDtype[]) {
      const p = packActivations(x, rows, cols, d);
      const buf = new Uint8Array(p.data.length + 1);
      buf.set(p.data, 1);
      const y = unpackActivations({ ...p, data: buf.subarray(1) });
      expect(y.subarray(0, cols).every((v) => v === 0)).toBe(true);
      expect(y).toEqual(unpackActivations(p));
    }
  });

  it('bad packets are ERR_ACTIVATIONS naming the problem', () => {
    const x = acts(4);
    const p8 = packActivations(x, rows, cols, 'int8');
    const p16 = packActivations(x, rows, cols, 'fp16');
    const bad = (v: unknown, r = rows, c = cols) => expect(() => checkPackedActivations(v, r, c)).toThrow(expect.objectContaining({ code: 'ERR_ACTIVATIONS' }));
    bad(null);
    bad({ ...p16, dtype: 'bf16' });
    bad(p16, rows + 1);
    bad({ ...p16, data: p16.data.subarray(2) });
    bad({ ...p16, data: Array.from(p16.data) });
    bad({ ...p16, scales: new Float32Array(rows) });
    bad({ ...p8, scales: undefined });
    bad({ ...p8, scales: p8.scales!.subarray(1) });
    const nan = new Float32Array(p8.scales!);
    nan[3] = NaN;
    bad({ ...p8, scales: nan });
    const neg = new Float32Array(p8.scales!);
    neg[0] = -1;
    bad({ ...p8, scales: neg });
    expect(() => unpackActivations({ ...p8, scales: nan })).toThrow(/row 3/);
    expect(checkPackedActivations(p8, rows, cols)).toMatchObject({ dtype: 'int8', rows, cols });
    expect(() => packActivations(x, rows, cols + 1, 'fp16')).toThrow(expect.objectContaining({ code: 'ERR_ACTIVATIONS' }));
    expect(() => packActivations(x, rows, cols, 'fp8' as ActivationDtype)).toThrow(expect.objectContaining({ code: 'ERR_ACTIVATIONS' }));
    const inf = new Float32Array(x);
    inf[5] = Infinity;
    expect(() => packActivations(inf, rows, cols, 'int8')).toThrow(expect.objectContaining({ code: 'ERR_ACTIVATIONS_NONFINITE' }));
    expect(unpackActivations(packActivations(inf, rows, cols, 'fp16'))[5]).toBe(Infinity);
  });
});
