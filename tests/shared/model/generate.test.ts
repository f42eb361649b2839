// KV-cache decoding equals the full forward; sampling rules; stopping; streaming.
import { describe, expect, it } from 'vitest';
import { PRESETS, type ModelConfig } from '../../../shared/model/config.ts';
import { CpuGpt } from '../../../shared/model/cpu/gpt.ts';
import { KvCacheDecoder } from '../../../shared/model/cpu/kv-cache.ts';
import { generate, generateStream } from '../../../shared/model/generate.ts';
import { initParameters } from '../../../shared/model/init.ts';
import { nextTokenDistribution, sampleToken } from '../../../shared/model/sampling.ts';
import { Rng } from '../../../shared/rng.ts';

const config: ModelConfig = { ...PRESETS.tiny, contextLength: 16 };
const params = initParameters(config, 5);
// Larger weights than init so the distribution is far from uniform and argmax is well defined.
for (let i = 0; i < params.length; i++) params[i] *= 3;

function fullLogits(tokens: number[]): Float32Array {
  const m = new CpuGpt(config);
  const T = tokens.length;
  m.forward(params, { B: 1, T, inputs: Int32Array.from(tokens), targets: new Int32Array(T), mask: new Uint8Array(T) });
  return new Float32Array(m.logits());
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('KV cache', () => {
  it('prefill + one-token steps give the full forward logits at every position', () => {
    const seq = [256, 72, 101, 108, 108, 111, 32, 119, 111, 114];
    const full = fullLogits(seq);
    const V = config.vocabSize;
    const dec = new KvCacheDecoder(config, params);
    const pre = dec.append(seq.slice(0, 4), true); // all 4 prompt positions
    expect(maxAbsDiff(pre, full.subarray(0, 4 * V))).toBeLessThan(1e-5);
    for (let t = 4; t < seq.length; t++) {
      const row = dec.append([seq[t]]);
      expect(maxAbsDiff(row, full.subarray(t * V, (t + 1) * V)), `position ${t}`).toBeLessThan(1e-5);
    }
    expect(dec.length).toBe(seq.length);
  });

  it('refuses to overflow the context and leaves the cache unchanged', () => {
    const dec = new KvCacheDecoder(config, params);
    dec.append(new Array(15).fill(1));
    expect(() => dec.append([1, 2])).toThrow(expect.objectContaining({ code: 'ERR_CONTEXT_FULL' }));
    expect(() => dec.append([300])).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_RANGE' }));
    expect(dec.length).toBe(15);
  });
});

describe('sampling', () => {
  const logits = Float32Array.from([1, 3, 2, 3, 0, -1]);

  it('temperature 0 is argmax (lowest index on ties) and one-hot', () => {
    expect(sampleToken(logits, { temperature: 0 }, new Rng(1))).toBe(1);
    expect(Array.from(nextTokenDistribution(logits, { temperature: 0 }))).toEqual([0, 1, 0, 0, 0, 0]);
  });

  it('top-k keeps the k most likely, renormalised', () => {
    const p = nextTokenDistribution(logits, { topK: 3 });
    expect(Array.from(p).map((x) => x > 0)).toEqual([false, true, true, true, false, false]);
    const e = [Math.exp(3), Math.exp(2), Math.exp(3)];
    expect(p[2]).toBeCloseTo(e[1] / (e[0] + e[1] + e[2]), 12);
  });

  it('top-p keeps the smallest prefix reaching p', () => {
    const base = nextTokenDistribution(logits, {});
    const p = nextTokenDistribution(logits, { topP: base[1] + base[3] - 1e-9 }); // the two tied 3s suffice
    expect(Array.from(p).map((x) => x > 0)).toEqual([false, true, false, true, false, false]);
    expect(p[1] + p[3]).toBeCloseTo(1, 12);
  });

  it('temperature sharpens/flattens; draws follow the distribution', () => {
    const cold = nextTokenDistribution(logits, { temperature: 0.5 });
    const hot = nextTokenDistribution(logits, { temperature: 2 });
    expect(cold[1]).toBeGreaterThan(hot[1]);
    const rng = new Rng(3);
    const counts = new Array(6).fill(0);
    for (let i = 0; i < 4000; i++) counts[sampleToken(logits, { topK: 3 }, rng)]++;
    const p = nextTokenDistribution(logits, { topK: 3 });
    for (let v = 0; v < 6; v++) expect(Math.abs(counts[v] / 4000 - p[v]), `token ${v}`).toBeLessThan(0.03);
  });

  it('rejects bad options', () => {
    expect(() => nextTokenDistribution(logits, { temperature: -1 })).toThrow(/temperature/);
    expect(() => nextTokenDistribution(logits, { topP: 0 })).toThrow(/topP/);
    expect(() => nextTokenDistribution(logits, { topK: 1.5 })).toThrow(/topK/);
  });
});

describe('generate', () => {
  const prompt = [256, 65, 66];

  it('greedy equals argmax of the full forward, step by step', () => {
    const r = generate(config, params, prompt, { maxTokens: 5, eosId: -1, temperature: 0 });
    expect(r.finishReason).toBe('length');
    expect(r.tokens.length).toBe(5);
    const seq = [...prompt];
    for (const tok of r.tokens) {
      const full = fullLogits(seq);
      const last = full.subarray((seq.length - 1) * config.vocabSize);
      let best = 0;
      for (let v = 1; v < last.length; v++) if (last[v] > last[best]) best = v;
      expect(tok).toBe(best);
      seq.push(tok);
    }
  });

  it('is reproducible per seed and stops at eos (not returned) or the context length', () => {
    const opts = { maxTokens: 40, eosId: -1, temperature: 1, topK: 50, seed: 9 };
    const a = generate(config, params, prompt, opts);
    const b = generate(config, params, prompt, opts);
    expect(a).toEqual(b);
    expect(a.finishReason).toBe('length');
    expect(prompt.length + a.tokens.length).toBe(config.contextLength); // maxTokens 40 > room 13
    const eos = a.tokens[2];
    const c = generate(config, params, prompt, { ...opts, eosId: eos });
    expect(c.finishReason).toBe('eos');
    expect(c.tokens).toEqual(a.tokens.slice(0, a.tokens.indexOf(eos)));
  });

  it('streams the same tokens and can be stopped by the caller', async () => {
    const opts = { maxTokens: 6, eosId: -1, temperature: 0.8, seed: 4 };
    const whole = generate(config, params, prompt, opts);
    const streamed: number[] = [];
    for await (const t of generateStream(config, params, prompt, opts)) streamed.push(t);
    expect(streamed).toEqual(whole.tokens);
    const partial: number[] = [];
    for await (const t of generateStream(config, params, prompt, opts)) {
      partial.push(t);
      if (partial.length === 2) break;
    }
    expect(partial).toEqual(whole.tokens.slice(0, 2));
  });

  it('rejects bad prompts with named errors', () => {
    expect(() => generate(config, params, [], { maxTokens: 1, eosId: 256 })).toThrow(expect.objectContaining({ code: 'ERR_EMPTY_INPUT' }));
    expect(() => generate(config, params, new Array(17).fill(1), { maxTokens: 1, eosId: 256 }))
      .toThrow(expect.objectContaining({ code: 'ERR_PROMPT_TOO_LONG' }));
    expect(() => generate(config, params, [999], { maxTokens: 1, eosId: 256 })).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_RANGE' }));
  });
});
