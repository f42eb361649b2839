// The official OpenAI Node client (a devDependency, unmodified) against our /v1 routes on a real
// HTTP server on port 0: models.list, completions.create (plain and streaming) and its error type.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';
import { generate } from '../../shared/model/generate.ts';
import { initParameters } from '../../shared/model/init.ts';
import { decode, encode } from '../../shared/tokenizer.ts';
import { context, startApp } from './helpers.ts';

const config: ModelConfig = { ...PRESETS.tiny, contextLength: 32 };
const params = initParameters(config, 31);
for (let i = 0; i < params.length; i++) params[i] *= 4;
let app: Awaited<ReturnType<typeof startApp>>;
let client: OpenAI;
beforeAll(async () => {
  app = await startApp(context({ config, params, step: 2 }, { modelName: 'gpt2-webgpu' }));
  client = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => { await app.close(); });

describe('official OpenAI client', () => {
  it('lists the model and gets the greedy completion, plain and streamed', async () => {
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(['gpt2-webgpu']);
    const want = decode(generate(config, params, encode('rev dog='), { maxTokens: 10, eosId: 256, temperature: 0 }).tokens);
    const r = await client.completions.create({ model: 'gpt2-webgpu', prompt: 'rev dog=', max_tokens: 10, temperature: 0 });
    expect(r.choices[0].text).toBe(want);
    expect(r.usage).toEqual({ prompt_tokens: 8, completion_tokens: 10, total_tokens: 18 });
    const stream = await client.completions.create({ model: 'gpt2-webgpu', prompt: 'rev dog=', max_tokens: 10, temperature: 0, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0].text;
      finish = c.choices[0].finish_reason ?? finish;
    }
    expect(text).toBe(want);
    expect(finish).toBe('length');
  });

  it('a bad request surfaces as the client\'s BadRequestError with our message', async () => {
    await expect(client.completions.create({ model: 'gpt2-webgpu', prompt: 'a', max_tokens: 4, n: 3 })).rejects.toThrow(OpenAI.BadRequestError);
    await expect(client.completions.create({ model: 'gpt2-webgpu', prompt: 'a', max_tokens: 4, n: 3 })).rejects.toThrow(/only n=1 is supported/);
  });
});
