// The generation routers on a bare express app on port 0 (real HTTP, real model, real decoder).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerationLimiter, StopMatcher } from '../../coordinator/generation/generate.ts';
import { AppError } from '../../shared/errors.ts';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';
import { generate } from '../../shared/model/generate.ts';
import { initParameters } from '../../shared/model/init.ts';
import { decode, encode } from '../../shared/tokenizer.ts';
import { context, post, startApp } from './helpers.ts';

const config: ModelConfig = { ...PRESETS.tiny, contextLength: 32 };
const params = initParameters(config, 5);
for (let i = 0; i < params.length; i++) params[i] *= 4; // a sharper random model: varied tokens
const live = { config, params, step: 17 };
const other = { config, params: initParameters(config, 6), step: 3 };

let app: Awaited<ReturnType<typeof startApp>>;
const ctx = context(live, {
  loadCheckpoint: async (name: string) => {
    if (name === 'ckpt-000000003.vtc') return other;
    throw new AppError('ERR_CHECKPOINT_READ', `checkpoint ${name}: not found`, 404);
  },
});
beforeAll(async () => { app = await startApp(ctx); });
afterAll(async () => { await app.close(); });

const greedy = (prompt: string, maxTokens: number, p = params) =>
  generate(config, p, encode(prompt), { maxTokens, eosId: 256, temperature: 0 });

describe('POST /api/generate', () => {
  it('temperature 0 equals the CPU reference greedy generation', async () => {
    const ref = greedy('12+34=', 10);
    const r = await post(`${app.url}/api/generate`, { prompt: '12+34=', maxTokens: 10, temperature: 0 });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ tokens: ref.tokens, finishReason: 'length', step: 17, text: decode(ref.tokens) });
    expect(r.json.usage).toEqual({ promptTokens: 6, completionTokens: 10 });
  });

  it('sampling is reproducible by seed', async () => {
    const body = { prompt: 'rev cat=', maxTokens: 12, temperature: 1, topK: 40, topP: 0.95 };
    const a = await post(`${app.url}/api/generate`, { ...body, seed: 1 });
    const b = await post(`${app.url}/api/generate`, { ...body, seed: 1 });
    const c = await post(`${app.url}/api/generate`, { ...body, seed: 2 });
    expect(a.json.tokens).toEqual(b.json.tokens);
    expect(a.json.tokens).not.toEqual(c.json.tokens);
    const unseeded = await post(`${app.url}/api/generate`, body);
    const replay = await post(`${app.url}/api/generate`, { ...body, seed: unseeded.json.seed });
    expect(replay.json.tokens).toEqual(unseeded.json.tokens);
  });

  it('stop sequences cut the text and report "stop"; a full context reports "length"', async () => {
    const full = greedy('Hello', 20);
    const text = decode(full.tokens);
    const stop = text.slice(5, 7);
    const cut = text.indexOf(stop);
    const r = await post(`${app.url}/api/generate`, { prompt: 'Hello', maxTokens: 20, temperature: 0, stop: ['zzzz', stop] });
    expect(r.json.finishReason).toBe('stop');
    expect(r.json.text).toBe(text.slice(0, cut));
    const long = await post(`${app.url}/api/generate`, { prompt: 'x'.repeat(30), maxTokens: 50, temperature: 0 });
    expect(long.json).toMatchObject({ finishReason: 'length' });
    expect(long.json.tokens.length).toBe(2);
  });

  it('a named checkpoint is used instead of the live model', async () => {
    const ref = greedy('abc', 8, other.params);
    const r = await post(`${app.url}/api/generate`, { prompt: 'abc', maxTokens: 8, temperature: 0, checkpoint: 'ckpt-000000003.vtc' });
    expect(r.json).toMatchObject({ tokens: ref.tokens, step: 3 });
    const missing = await post(`${app.url}/api/generate`, { prompt: 'abc', checkpoint: 'ckpt-000000009.vtc' });
    expect(missing.status).toBe(404);
  });

  it('bad requests get a 400 naming the problem', async () => {
    const cases: Array<[unknown, RegExp, boolean?]> = [
      [{ prompt: 'a', maxTokens: 5, bogus: 1 }, /unknown field\(s\) "bogus"/],
      [{ prompt: 'a', maxTokens: -1 }, /maxTokens: maxTokens must be >= 1/],
      [{ prompt: 'a', temperature: -0.5 }, /temperature: temperature must be >= 0/],
      [{ prompt: 'a', topK: -2 }, /topK must be >= 0/],
      [{ prompt: 'a', topP: 0 }, /topP must be in \(0, 1\]/],
      [{ prompt: 'a', seed: -3 }, /seed must be >= 0/],
      [{ prompt: 'a', stop: '' }, /stop strings must be non-empty/],
      [{ prompt: 'a', checkpoint: '../../etc/passwd' }, /checkpoint must be a checkpoint file name/],
      [{ maxTokens: 3 }, /prompt: prompt must be a string/],
      [{ prompt: 'y'.repeat(32) }, /prompt is 32 tokens \(bytes\), the model's context is 32/],
      [[1, 2], /body must be a JSON object/],
      ['{"prompt": "a",', /body is not valid JSON/, true],
    ];
    for (const [body, re, raw] of cases) {
      const r = await post(`${app.url}/api/generate`, body, raw);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error.message, JSON.stringify(body)).toMatch(re);
      expect(r.json.error.code).toMatch(/^ERR_/);
    }
  });

  it('answers 429 when every slot and queue place is taken, and recovers', async () => {
    const limiter = new GenerationLimiter({ concurrency: 1, queue: 1, timeoutMs: 30_000 });
    const small = await startApp(context(live, { limiter }));
    try {
      let release!: () => void;
      const held = limiter.run(() => new Promise<void>((r) => (release = r)));
      const queued = post(`${small.url}/api/generate`, { prompt: 'a', maxTokens: 3, temperature: 0 });
      await new Promise((r) => setTimeout(r, 50));
      expect(limiter.stats).toEqual({ active: 1, queued: 1 });
      const rejected = await post(`${small.url}/api/generate`, { prompt: 'a', maxTokens: 3 });
      expect(rejected.status).toBe(429);
      expect(rejected.json.error.code).toBe('ERR_GENERATE_BUSY');
      release();
      await held;
      expect((await queued).status).toBe(200);
      expect(limiter.stats).toEqual({ active: 0, queued: 0 });
    } finally {
      await small.close();
    }
  });

  it('a queued request generates from the parameters current when its slot opens, and reports that step', async () => {
    const limiter = new GenerationLimiter({ concurrency: 1, queue: 2, timeoutMs: 30_000 });
    const moving = { config, params: new Float32Array(params), step: 1 };
    const t = await startApp(context(moving, { limiter, getModel: () => ({ ...moving }) }));
    try {
      let release!: () => void;
      const held = limiter.run(() => new Promise<void>((r) => (release = r)));
      const queued = post(`${t.url}/api/generate`, { prompt: 'q', maxTokens: 8, temperature: 0 });
      await new Promise((r) => setTimeout(r, 50));
      // an optimizer step lands while the request waits
      const next = initParameters(config, 99);
      moving.params.set(next);
      moving.step = 2;
      release();
      await held;
      const r = await queued;
      expect(r.json.step).toBe(2);
      expect(r.json.tokens).toEqual(greedy('q', 8, next).tokens);
      expect(r.json.tokens).not.toEqual(greedy('q', 8).tokens);
    } finally {
      await t.close();
    }
  });

  it('the time budget ends generation with "length" and timedOut', async () => {
    const t = await startApp(context(live, { limiter: new GenerationLimiter({ timeoutMs: 0 }) }));
    try {
      const r = await post(`${t.url}/api/generate`, { prompt: 'a', maxTokens: 20, temperature: 0 });
      expect(r.json).toMatchObject({ finishReason: 'length', timedOut: true });
      expect(r.json.tokens.length).toBeLessThan(20);
    } finally {
      await t.close();
    }
  });

  it('generation yields to the event loop: other requests are served meanwhile', async () => {
    const big: ModelConfig = { ...PRESETS.small };
    const t = await startApp(context({ config: big, params: initParameters(big, 1), step: 0 }));
    try {
      let done = false;
      const gen = post(`${t.url}/api/generate`, { prompt: 'a', maxTokens: 100, temperature: 0 }).then((r) => { done = true; return r; });
      let servedDuring = 0;
      while (!done) {
        const m = await fetch(`${t.url}/v1/models`);
        expect(m.status).toBe(200);
        await m.text();
        if (!done) servedDuring++;
      }
      expect((await gen).json.tokens.length).toBeGreaterThan(0);
      expect(servedDuring).toBeGreaterThan(2);
    } finally {
      await t.close();
    }
  });
});

describe('StopMatcher', () => {
  it('holds back a possible stop prefix and releases it when it is not one', () => {
    const m = new StopMatcher(['END']);
    expect(m.push('abcE')).toBe('abc');
    expect(m.push('N')).toBe('');
    expect(m.push('x')).toBe('ENx');
    expect(m.push('yEND tail')).toBe('y');
    expect(m.stopped).toBe(true);
    const n = new StopMatcher(['\n\n']);
    expect(n.push('a\n')).toBe('a');
    expect(n.flush()).toBe('\n');
  });
});
