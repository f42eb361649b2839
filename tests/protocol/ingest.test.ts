// The zero-copy ingest path: the Encoder aligns an event's largest typed array in its frame, the
// Decoder then returns it as a view into the frame (a copy only when it lies unaligned), the
// finite scan finds the first NaN/Inf wherever it is (validateResult's one pass also yields the
// norm security needs), and the streaming mean that folds several results per pass equals folding
// them one by one.
import { describe, expect, it } from 'vitest';
import { MeanAggregator } from '../../coordinator/train/aggregate.ts';
import { decodeStats, Decoder, Encoder, PacketType, packValue, type Packet } from '../../shared/protocol/parser.ts';
import { firstNonFinite, measuredNorm, sumOfSquares, validateResult } from '../../shared/protocol/validate.ts';
import { l2Norm } from '../../shared/optim/clip.ts';

function roundTrip(frame: Uint8Array): Packet {
  const d = new Decoder();
  let got: Packet | null = null;
  d.on('decoded', (p: Packet) => {
    got = p;
  });
  d.add(frame);
  return got!;
}

describe('zero-copy ingest', () => {
  it('aligns the largest typed array, whatever precedes it, and decodes it as a view', () => {
    const enc = new Encoder();
    for (const taskId of ['a', 'ab', 'abc', 'abcd', 'n0.12.345', 'x'.repeat(17)]) {
      for (const [C, n] of [[Float32Array, 300], [Float32Array, 20_000], [Float64Array, 5_000], [Int32Array, 70_000]] as const) {
        const big = new C(n).map((_, i) => i * 3) as Float32Array;
        const before = { ...decodeStats };
        const [frame] = enc.encode({ type: PacketType.EVENT, nsp: '/', data: ['result', { taskId, loss: 1.5, grads: big, small: new Uint16Array([1, 2, 3]) }] });
        // As ws hands a large message over: a Buffer of its own.
        const p = roundTrip(Buffer.from(frame));
        const r = (p.data as unknown[])[1] as { taskId: string; grads: Float32Array; small: Uint16Array };
        expect(r.taskId).toBe(taskId);
        expect(r.grads).toBeInstanceOf(C);
        expect(Array.from(r.grads)).toEqual(Array.from(big));
        expect(Array.from(r.small)).toEqual([1, 2, 3]);
        expect(r.grads.byteOffset % C.BYTES_PER_ELEMENT).toBe(0);
        expect(decodeStats.views - before.views, `${taskId} ${C.name}`).toBeGreaterThanOrEqual(1);
      }
    }
  });

  it('an unaligned frame still decodes right (a copy), and other msgpack users still get copies', () => {
    const g = new Float32Array(4096).map((_, i) => i / 7);
    const [frame] = new Encoder().encode({ type: PacketType.EVENT, nsp: '/', data: ['result', { grads: g }] });
    const shifted = new Uint8Array(frame.byteLength + 1).subarray(1);
    shifted.set(frame);
    const before = decodeStats.copies;
    const r = (roundTrip(shifted).data as unknown[])[1] as { grads: Float32Array };
    expect(Array.from(r.grads)).toEqual(Array.from(g));
    expect(decodeStats.copies).toBe(before + 1);
    shifted.fill(0); // the copy does not alias the frame
    expect(r.grads[4095]).toBeCloseTo(4095 / 7, 3);
  });

  it('the padding is a packet field that plain msgpack readers see and socket.io ignores', () => {
    const g = new Float32Array(2048).fill(1);
    const [frame] = new Encoder().encode({ type: PacketType.EVENT, nsp: '/', data: ['result', { taskId: 'abc', grads: g }] });
    const p = roundTrip(Buffer.from(frame)) as Packet & { pad?: string };
    expect(p.type).toBe(PacketType.EVENT);
    expect(p.nsp).toBe('/');
    if (p.pad !== undefined) expect(p.pad).toMatch(/^x{0,7}$/);
    // Without a large typed array nothing changes: the bytes are the plain pack.
    const small = { type: PacketType.EVENT, nsp: '/', data: ['heartbeat', { t: 1 }] };
    expect(Buffer.from(new Encoder().encode(small)[0]).equals(Buffer.from(packValue(small)))).toBe(true);
  });

  it('firstNonFinite finds the first NaN or infinity at any position of a long array', () => {
    const n = 10_000;
    for (const pos of [0, 3, 1023, 1024, 1027, 4095, 8191, 9216, n - 1]) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const a = new Float32Array(n).map((_, i) => Math.sin(i) * 1e30);
        a[pos] = bad;
        if (pos + 5 < n) a[pos + 5] = NaN; // a later one does not hide the first
        expect(firstNonFinite(a), `${bad} at ${pos}`).toBe(pos);
      }
    }
    const ok = new Float32Array(n).map((_, i) => (i % 2 ? 3.4e38 : -3.4e38));
    expect(firstNonFinite(ok)).toBe(-1);
    expect(firstNonFinite(new Float32Array(new ArrayBuffer(4 * 1030), 8, 1027).fill(1))).toBe(-1);
  });

  it('the finite check is the sum of squares: the norm security needs comes out of the same pass', () => {
    const n = 1027; // a tail after the 4-wide loop
    const result = (grads: Float32Array) => ({ taskId: 'n0.1.1', step: 1, version: 1, loss: 2, tokens: 8, grads, gradNorm: 1, nonFinite: 0, timings: { totalMs: 1 } });
    // The largest float32 values, squared and summed, stay finite: not refused.
    const big = new Float32Array(n).map((_, i) => (i % 2 ? 3.4028234e38 : -3.4028234e38));
    expect(Number.isFinite(sumOfSquares(big))).toBe(true);
    const v = validateResult(result(big), { paramCount: n });
    expect(v.ok).toBe(true);
    expect(v.ok && Math.abs(measuredNorm(v.value.grads)! - l2Norm(big)) / l2Norm(big)).toBeLessThan(1e-12);
    const g = new Float32Array(n).map((_, i) => Math.sin(i) * 1e-3);
    const ok = validateResult(result(g), { paramCount: n });
    expect(ok.ok && Math.abs(measuredNorm(ok.value.grads)! - l2Norm(g)) / l2Norm(g)).toBeLessThan(1e-12);
    expect(measuredNorm(new Float32Array(g))).toBeUndefined(); // not validated: security computes it
    for (const pos of [0, 1, 2, 3, 1023, 1024, 1026]) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const a = Float32Array.from(g);
        a[pos] = bad;
        const r = validateResult(result(a), { paramCount: n });
        expect(r.ok, `${bad} at ${pos}`).toBe(false);
        if (!r.ok) {
          expect(r.code).toBe('NON_FINITE');
          expect(r.message).toContain(`grads[${pos}]`);
        }
        expect(measuredNorm(a)).toBeUndefined();
      }
    }
  });

  it('the streaming mean folds several results per pass and equals folding them one by one', () => {
    const P = 1001;
    for (let k = 1; k <= 9; k++) {
      const a = new MeanAggregator(P);
      a.begin(0);
      const ref = new Float64Array(P);
      let tok = 0;
      for (let r = 0; r < k; r++) {
        const g = new Float32Array(P).map((_, i) => Math.cos(i * (r + 1)) * (r + 1));
        const t = 3 + r * 5;
        a.add(g, t, `w${r}`);
        for (let i = 0; i < P; i++) ref[i] += t * g[i];
        tok += t;
      }
      expect(a.count).toBe(k);
      expect(a.tokens).toBe(tok);
      const out = new Float32Array(P);
      expect(a.finish(out)).toBe(tok);
      for (let i = 0; i < P; i++) expect(Math.abs(out[i] - ref[i] / tok), `k=${k} i=${i}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(ref[i] / tok)));
    }
  });
});
