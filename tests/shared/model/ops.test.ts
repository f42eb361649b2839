// Each op's backward against central differences of its own forward (float64), so a kernel
// author can trust every reference op on its own, not only the composed model.
import { describe, expect, it } from 'vitest';
import {
  attentionBackward, attentionForward, crossEntropyBackward, crossEntropyForward, encoderBackward, encoderForward,
  geluBackward, geluForward, layernormBackward, layernormForward, lmHeadBackward, lmHeadForward, matmulBackward,
  matmulForward, softmaxForward,
} from '../../../shared/model/cpu/ops.ts';
import { Rng } from '../../../shared/rng.ts';

const rng = new Rng(2024);
const rand = (n: number, s = 1) => Float64Array.from({ length: n }, () => s * rng.normal());

/**
 * Checks d(sum(out * R))/d(x) for every input x against central differences. `fwd` fills out
 * from the inputs; `bwd(dout, grads)` accumulates the analytic gradients into grads[k].
 */
function check(inputs: Float64Array[], outSize: number, fwd: (out: Float64Array) => void,
  bwd: (dout: Float64Array, grads: Float64Array[]) => void): void {
  const R = rand(outSize);
  const out = new Float64Array(outSize);
  const f = () => {
    fwd(out);
    let s = 0;
    for (let i = 0; i < outSize; i++) s += out[i] * R[i];
    return s;
  };
  f();
  const grads = inputs.map((x) => new Float64Array(x.length).fill(0.25)); // accumulate onto 0.25
  bwd(R, grads);
  const h = 1e-6;
  inputs.forEach((x, k) => {
    for (let i = 0; i < x.length; i++) {
      const old = x[i];
      x[i] = old + h;
      const up = f();
      x[i] = old - h;
      const down = f();
      x[i] = old;
      const fd = (up - down) / (2 * h);
      expect(Math.abs(grads[k][i] - 0.25 - fd), `input ${k} [${i}]`).toBeLessThan(1e-7 + 1e-6 * Math.abs(fd));
    }
  });
}

describe('ops: backward = finite differences of forward', () => {
  const B = 2, T = 3, C = 4, NH = 2, V = 5, OC = 6, BT = B * T;

  it('encoder', () => {
    const inp = Int32Array.from([0, 2, 4, 2, 1, 0]);
    const wte = rand(V * C), wpe = rand(T * C);
    check([wte, wpe], BT * C, (out) => encoderForward(out, inp, wte, wpe, B, T, C),
      (d, [gw, gp]) => encoderBackward(gw, gp, d, inp, B, T, C));
  });

  it('layernorm (and its mean/rstd)', () => {
    const x = rand(BT * C), w = rand(C), b = rand(C);
    const mean = new Float64Array(BT), rstd = new Float64Array(BT);
    check([x, w, b], BT * C, (out) => layernormForward(out, mean, rstd, x, w, b, BT, C),
      (d, [gx, gw, gb]) => layernormBackward(gx, gw, gb, d, x, w, mean, rstd, BT, C));
    let m = 0;
    for (let i = 0; i < C; i++) m += x[i];
    expect(mean[0]).toBeCloseTo(m / C, 12);
  });

  it('matmul with and without bias', () => {
    const x = rand(BT * C), w = rand(C * OC), b = rand(OC);
    check([x, w, b], BT * OC, (out) => matmulForward(out, x, w, b, BT, C, OC),
      (d, [gx, gw, gb]) => matmulBackward(gx, gw, gb, d, x, w, BT, C, OC));
    check([x, w], BT * OC, (out) => matmulForward(out, x, w, null, BT, C, OC),
      (d, [gx, gw]) => matmulBackward(gx, gw, null, d, x, w, BT, C, OC));
    const out = new Float64Array(BT * OC);
    matmulForward(out, x, w, b, BT, C, OC);
    let ref = b[5];
    for (let k = 0; k < C; k++) ref += x[1 * C + k] * w[k * OC + 5]; // Conv1D [in,out]
    expect(out[1 * OC + 5]).toBeCloseTo(ref, 12);
  });

  it('causal attention: backward, causality and preatt', () => {
    const qkv = rand(BT * 3 * C);
    const att = new Float64Array(B * NH * T * T);
    const pre = new Float64Array(B * NH * T * T);
    check([qkv], BT * C, (out) => attentionForward(out, pre, att, qkv, B, T, C, NH),
      (d, [g]) => attentionBackward(g, d, qkv, att, B, T, C, NH));
    // rows sum to 1, zeros above the diagonal; changing a later position leaves earlier outputs alone
    for (let r = 0; r < B * NH * T; r++) {
      const t = r % T;
      let s = 0;
      for (let t2 = 0; t2 < T; t2++) {
        s += att[r * T + t2];
        if (t2 > t) expect(att[r * T + t2]).toBe(0);
      }
      expect(s).toBeCloseTo(1, 12);
    }
    const a = new Float64Array(BT * C), b = new Float64Array(BT * C);
    attentionForward(a, null, att, qkv, B, T, C, NH);
    qkv[(T - 1) * 3 * C + C] += 1; // key of b=0's last position
    attentionForward(b, null, att, qkv, B, T, C, NH);
    expect(Array.from(a.subarray(0, (T - 1) * C))).toEqual(Array.from(b.subarray(0, (T - 1) * C)));
    expect(pre[1] === 0 && pre[T] !== 0).toBe(true);
  });

  it('gelu (tanh approximation)', () => {
    const x = rand(20, 2);
    check([x], 20, (out) => geluForward(out, x, 20), (d, [g]) => geluBackward(g, x, d, 20));
    const y = new Float64Array(1);
    geluForward(y, Float64Array.of(1), 1);
    expect(y[0]).toBeCloseTo(0.8411919906082768, 12); // torch gelu(1.0, approximate='tanh')
  });

  it('tied LM head', () => {
    const x = rand(BT * C), wte = rand(V * C);
    check([x, wte], BT * V, (out) => lmHeadForward(out, x, wte, BT, C, V),
      (d, [gx, gw]) => lmHeadBackward(gx, gw, d, x, wte, BT, C, V));
  });

  it('masked mean cross-entropy', () => {
    const logits = rand(BT * V, 3);
    const targets = Int32Array.from([1, 0, 4, 2, 3, 3]);
    const mask = Uint8Array.from([1, 0, 1, 1, 0, 1]);
    const probs = new Float64Array(BT * V), losses = new Float64Array(BT);
    const loss = () => crossEntropyForward(losses, logits, targets, mask, BT, V).loss;
    const l0 = loss();
    softmaxForward(probs, logits, BT, V);
    let manual = 0;
    for (const i of [0, 2, 3, 5]) manual -= Math.log(probs[i * V + targets[i]]);
    expect(l0).toBeCloseTo(manual / 4, 12);
    const g = new Float64Array(BT * V);
    crossEntropyBackward(g, probs, targets, mask, BT, V, 4);
    const h = 1e-6;
    for (let i = 0; i < BT * V; i++) {
      const o = logits[i];
      logits[i] = o + h;
      const up = loss();
      logits[i] = o - h;
      const down = loss();
      logits[i] = o;
      expect(Math.abs(g[i] - (up - down) / (2 * h))).toBeLessThan(1e-8);
    }
  });
});
