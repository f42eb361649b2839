// POST /v1/completions and GET /v1/models against a real HTTP server on port 0.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';
import { generate } from '../../shared/model/generate.ts';
import { initParameters } from '../../shared/model/init.ts';
import { decode, encode } from '../../shared/tokenizer.ts';
import { context, post, startApp } from './helpers.ts';

const config: ModelConfig = { ...PRESETS.tiny, contextLength: 32 };
const params = initParameters(config, 8);
for (let i = 0; i < params.length; i++) params[i] *= 4;
let app: Awaited<ReturnType<typeof startApp>>;
beforeAll(async () => { app = await startApp(context({ config, params, step: 42 }, { modelName: 'tiny-test' })); });
afterAll(async () => { await app.close(); });

function parseSse(text: string): { events: any[]; done: boolean } {
  const datas = text.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
  return { events: datas.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d)), done: datas[datas.length - 1] === '[DONE]' };
}

describe('OpenAI-compatible API', () => {
  it('GET /v1/models lists the model', async () => {
    const r = await (await fetch(`${app.url}/v1/models`)).json();
    expect(r).toMatchObject({ object: 'list', data: [{ id: 'tiny-test', object: 'model', step: 42, context_length: 32 }] });
  });

  it('completions at temperature 0 equal greedy generation, with the OpenAI response shape', async () => {
    const ref = generate(config, params, encode('12+3'), { maxTokens: 9, eosId: 256, temperature: 0 });
    const r = await post(`${app.url}/v1/completions`, { model: 'tiny-test', prompt: '12+3', max_tokens: 9, temperature: 0, n: 1, logprobs: null, echo: false });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      object: 'text_completion', model: 'tiny-test',
      choices: [{ text: decode(ref.tokens), index: 0, logprobs: null, finish_reason: 'length' }],
      usage: { prompt_tokens: 4, completion_tokens: 9, total_tokens: 13 },
    });
    expect(r.json.id).toMatch(/^cmpl-[0-9a-f]{24}$/);
    expect(Number.isInteger(r.json.created)).toBe(true);
  });

  it('stream: true sends server-sent events whose text adds up to the non-streamed answer, then [DONE]', async () => {
    const body = { prompt: ['hello'], max_tokens: 12, temperature: 0.9, seed: 77 };
    const plain = await post(`${app.url}/v1/completions`, body);
    const res = await fetch(`${app.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const { events, done } = parseSse(await res.text());
    expect(done).toBe(true);
    expect(events.length).toBeGreaterThan(2);
    expect(events.map((e) => e.choices[0].text).join('')).toBe(plain.json.choices[0].text);
    expect(events.slice(0, -1).every((e) => e.choices[0].finish_reason === null && e.object === 'text_completion')).toBe(true);
    expect(events[events.length - 1].choices[0].finish_reason).toBe(plain.json.choices[0].finish_reason);
    expect(events[events.length - 1].usage).toEqual(plain.json.usage);
  });

  it('a stop sequence reports finish_reason "stop"', async () => {
    const ref = decode(generate(config, params, encode('ab'), { maxTokens: 16, eosId: 256, temperature: 0 }).tokens);
    const stop = ref.slice(3, 5);
    const r = await post(`${app.url}/v1/completions`, { prompt: 'ab', max_tokens: 16, temperature: 0, stop });
    expect(r.json.choices[0]).toMatchObject({ text: ref.slice(0, ref.indexOf(stop)), finish_reason: 'stop' });
  });

  it('unsupported or unknown fields and bad values get a 400 in OpenAI error shape', async () => {
    const cases: Array<[unknown, number, RegExp]> = [
      [{ prompt: 'a', n: 2 }, 400, /only n=1 is supported/],
      [{ prompt: 'a', echo: true }, 400, /echo is not supported/],
      [{ prompt: 'a', logprobs: 3 }, 400, /logprobs is not supported/],
      [{ prompt: 'a', presence_penalty: 0.5 }, 400, /presence_penalty is not supported/],
      [{ prompt: 'a', max_tokens: -5 }, 400, /max_tokens must be >= 1/],
      [{ prompt: 'a', temperatur: 1 }, 400, /unknown field\(s\) "temperatur"/],
      [{ prompt: ['a', 'b'] }, 400, /a string or an array of one string/],
      [{ prompt: 'z'.repeat(40) }, 400, /prompt is 40 tokens/],
      [{ prompt: 'a', model: 'gpt-4' }, 404, /unknown model "gpt-4"/],
    ];
    for (const [body, status, re] of cases) {
      const r = await post(`${app.url}/v1/completions`, body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(r.json.error.message, JSON.stringify(body)).toMatch(re);
      expect(r.json.error.type).toBe('invalid_request_error');
    }
  });
});
