// `npm run generate -- --prompt "..." [--url http://host:port | --checkpoint FILE | --model-dir DIR] [options]`
// Streams the generated text to stdout as it is produced: from a running coordinator through
// POST /v1/completions with stream: true (default --url http://localhost:8080), or locally on
// the CPU from a checkpoint file or an exported model directory. A summary goes to stderr.
// Bad arguments: exit 2; server/checkpoint errors: exit 1.

import { parseArgs } from 'node:util';
import { readCheckpoint } from '../checkpoint/index.ts';
import { AppError, isAppError } from '../../shared/errors.ts';
import { importModel } from '../export/import.ts';
import { freshSeed, runGeneration, type GenerationRequest, type LiveModel } from '../generation/generate.ts';

const USAGE = `usage: npm run generate -- --prompt TEXT [source] [options]
  source (one of):
    --url URL            a running coordinator (default http://localhost:8080), via /v1/completions streaming
    --checkpoint FILE    a coordinator checkpoint file, generated here on the CPU
    --model-dir DIR      a directory written by npm run export, generated here on the CPU
  options:
    --max-tokens N       new tokens at most (default 64)
    --temperature T      0 = greedy (default 0)
    --top-k K            0 = off (default 0)
    --top-p P            1 = off (default 1)
    --seed N             sampling seed (default: random, printed)
    --stop S             stop sequence (repeatable, up to 4)`;

interface Args extends GenerationRequest {
  url?: string;
  checkpoint?: string;
  modelDir?: string;
}

function usage(msg: string): AppError {
  return new AppError('ERR_GENERATE_ARGS', `generate: ${msg}`, 400, 'run with --help for the options');
}

function num(flag: string, v: string | undefined, def: number, ok: (n: number) => boolean, want: string): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !ok(n)) throw usage(`${flag} must be ${want}, got "${v}"`);
  return n;
}

function parseGenerateArgs(argv: string[]): Args | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        prompt: { type: 'string' }, url: { type: 'string' }, checkpoint: { type: 'string' }, 'model-dir': { type: 'string' },
        'max-tokens': { type: 'string' }, temperature: { type: 'string' }, 'top-k': { type: 'string' }, 'top-p': { type: 'string' },
        seed: { type: 'string' }, stop: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw usage((e as Error).message);
  }
  if (values.help) return 'help';
  if (values.prompt === undefined) throw usage('--prompt TEXT is required');
  const sources = [values.url, values.checkpoint, values['model-dir']].filter((s) => s !== undefined);
  if (sources.length > 1) throw usage('give only one of --url, --checkpoint, --model-dir');
  const stop = values.stop ?? [];
  if (stop.length > 4 || stop.some((s) => s === '')) throw usage('--stop: at most 4 non-empty stop sequences');
  const int = (n: number) => Number.isInteger(n);
  return {
    prompt: values.prompt,
    url: values.url ?? (sources.length === 0 ? 'http://localhost:8080' : undefined),
    checkpoint: values.checkpoint,
    modelDir: values['model-dir'],
    maxTokens: num('--max-tokens', values['max-tokens'], 64, (n) => int(n) && n >= 1 && n <= 4096, 'an integer in 1..4096'),
    temperature: num('--temperature', values.temperature, 0, (n) => n >= 0 && n <= 2, 'a number in 0..2'),
    topK: num('--top-k', values['top-k'], 0, (n) => int(n) && n >= 0, 'an integer >= 0'),
    topP: num('--top-p', values['top-p'], 1, (n) => n > 0 && n <= 1, 'a number in (0, 1]'),
    seed: num('--seed', values.seed, freshSeed(), (n) => int(n) && n >= 0 && n < 2 ** 32, 'an integer in 0..2^32-1'),
    stop,
  };
}

/** Stream from a coordinator's /v1/completions (server-sent events). */
async function fromServer(a: Args, write: (s: string) => void): Promise<string> {
  const url = new URL('/v1/completions', a.url).toString();
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: a.prompt, max_tokens: a.maxTokens, temperature: a.temperature, top_k: a.topK, top_p: a.topP,
        seed: a.seed, stop: a.stop.length ? a.stop : undefined, stream: true,
      }),
    });
  } catch (e) {
    throw new AppError('ERR_GENERATE_CONNECT', `generate: cannot reach ${url} (${(e as Error).cause ? String((e as Error).cause) : (e as Error).message})`,
      503, 'is the coordinator running (npm start)? pass its address with --url');
  }
  if (!res.ok || !res.body) {
    const text = await res.text();
    let msg = text;
    try { msg = JSON.parse(text).error.message; } catch { /* not JSON: show as is */ }
    throw new AppError('ERR_GENERATE_SERVER', `generate: ${url} answered ${res.status}: ${msg}`, res.status);
  }
  let buf = '';
  let finish = '?';
  const dec = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!event.startsWith('data: ')) continue;
      const data = event.slice(6);
      if (data === '[DONE]') return finish;
      const o = JSON.parse(data);
      if (o.error) throw new AppError('ERR_GENERATE_SERVER', `generate: server error: ${o.error.message}`, 500);
      write(o.choices[0].text);
      if (o.choices[0].finish_reason) finish = o.choices[0].finish_reason;
    }
  }
  return finish;
}

function localModel(a: Args): LiveModel {
  if (a.checkpoint) {
    const ck = readCheckpoint(a.checkpoint);
    return { config: ck.meta.model, params: ck.params, step: ck.meta.step };
  }
  const m = importModel(a.modelDir!);
  return { config: m.config, params: m.params, step: m.step };
}

async function main(): Promise<void> {
  let a: Args | 'help';
  try {
    a = parseGenerateArgs(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    console.error(USAGE);
    process.exit(2);
  }
  if (a === 'help') {
    console.log(USAGE);
    return;
  }
  const write = (s: string) => process.stdout.write(s);
  try {
    if (a.url) {
      const finish = await fromServer(a, write);
      process.stdout.write('\n');
      console.error(`[finish: ${finish}, seed ${a.seed}, from ${a.url}]`);
    } else {
      const model = localModel(a);
      const r = await runGeneration(model, a, { onText: write });
      process.stdout.write('\n');
      console.error(`[finish: ${r.finishReason}, ${r.tokens.length} tokens, step ${r.step}, seed ${r.seed}]`);
    }
  } catch (e) {
    console.error(isAppError(e) ? e.message : (e as Error).stack);
    process.exit(1);
  }
}

main();
