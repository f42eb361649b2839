// Text generation on the CPU reference with a KV cache: prefill the prompt in one pass, then
// feed one token at a time. Stops at the end-of-sequence id ('eos', the id itself is not
// returned), after maxTokens, or when prompt + output fill the context ('length'). Stop strings
// are the caller's business (decode as tokens stream in; break out of the iterator).

import { AppError } from '../errors.ts';
import { Rng } from '../rng.ts';
import type { ModelConfig } from './config.ts';
import { KvCacheDecoder } from './cpu/kv-cache.ts';
import { checkSampling, sampleToken, type SamplingOptions } from './sampling.ts';

export type FinishReason = 'eos' | 'length';

export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens to produce (>= 0). */
  maxTokens: number;
  /** End-of-sequence id (256 for the byte tokenizer); -1 = never stop on a token. */
  eosId: number;
  /** Seed for sampling (ignored by greedy). Default 0. Or pass an Rng to continue a stream. */
  seed?: number;
  rng?: Rng;
}

export interface GenerateResult {
  /** New tokens, without the prompt and without the eos id. */
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
}

function checkRequest(config: ModelConfig, prompt: ArrayLike<number>, o: GenerateOptions): void {
  checkSampling(o);
  if (!(Number.isInteger(o.maxTokens) && o.maxTokens >= 0)) {
    throw new AppError('ERR_GENERATE', `generate: maxTokens = ${o.maxTokens}, expected an integer >= 0`);
  }
  if (!Number.isInteger(o.eosId) || o.eosId < -1 || o.eosId >= config.vocabSize) {
    throw new AppError('ERR_GENERATE', `generate: eosId = ${o.eosId}, expected -1 or a token id 0..${config.vocabSize - 1}`);
  }
  if (prompt.length === 0) {
    throw new AppError('ERR_EMPTY_INPUT', 'generate: the prompt has no tokens', 400,
      'start from the end-of-sequence token to generate unconditionally');
  }
  if (prompt.length > config.contextLength) {
    throw new AppError('ERR_PROMPT_TOO_LONG', `generate: prompt of ${prompt.length} tokens exceeds contextLength ${config.contextLength}`,
      400, 'keep only the last contextLength tokens');
  }
  for (let i = 0; i < prompt.length; i++) {
    const t = prompt[i];
    if (!(Number.isInteger(t) && t >= 0 && t < config.vocabSize)) {
      throw new AppError('ERR_TOKEN_RANGE', `generate: prompt[${i}] = ${t} is outside the vocabulary 0..${config.vocabSize - 1}`);
    }
  }
}

/**
 * Token-by-token generation as a synchronous generator: yields each new token, returns the
 * GenerateResult. The shared core of generate() and generateStream().
 */
export function* generateTokens(
  config: ModelConfig, params: Float32Array, prompt: ArrayLike<number>, options: GenerateOptions,
): Generator<number, GenerateResult, void> {
  checkRequest(config, prompt, options);
  const rng = options.rng ?? new Rng(options.seed ?? 0);
  const dec = new KvCacheDecoder(config, params);
  const tokens: number[] = [];
  const done = (finishReason: FinishReason): GenerateResult => ({ tokens, finishReason, promptTokens: prompt.length });
  if (options.maxTokens === 0 || prompt.length >= config.contextLength) return done('length');
  let logits = dec.append(prompt);
  for (;;) {
    const next = sampleToken(logits, options, rng);
    if (next === options.eosId) return done('eos');
    tokens.push(next);
    yield next;
    // prompt + output may fill the context; the last token then never needs a position itself
    if (tokens.length >= options.maxTokens || prompt.length + tokens.length >= config.contextLength) return done('length');
    logits = dec.append([next]);
  }
}

/** Runs to completion; onToken (optional) sees each token as it is produced. */
export function generate(
  config: ModelConfig, params: Float32Array, prompt: ArrayLike<number>, options: GenerateOptions,
  onToken?: (token: number, index: number) => void,
): GenerateResult {
  const it = generateTokens(config, params, prompt, options);
  for (let i = 0; ; i++) {
    const r = it.next();
    if (r.done) return r.value;
    onToken?.(r.value, i);
  }
}

const yieldToEventLoop: () => Promise<void> = typeof setImmediate === 'function'
  ? () => new Promise((r) => setImmediate(r))
  : () => new Promise((r) => setTimeout(r, 0));

/**
 * Streaming form: `for await (const token of generateStream(...))`. Yields to the event loop
 * between tokens so a server stays responsive; breaking out of the loop stops generation.
 * The iterator's return value is the GenerateResult.
 */
export async function* generateStream(
  config: ModelConfig, params: Float32Array, prompt: ArrayLike<number>, options: GenerateOptions,
): AsyncGenerator<number, GenerateResult, void> {
  const it = generateTokens(config, params, prompt, options);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    yield r.value;
    await yieldToEventLoop();
  }
}
