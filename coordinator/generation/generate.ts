// Text generation on the coordinator's CPU, free of HTTP so the routes (http/generate-routes.ts,
// http/openai-routes.ts) and the CLI (cli/generate.ts) share it: the live-model shape, the bounded
// limiter, the stop-sequence matcher and the streaming token loop over the KV-cache decoder of
// shared/model. Generation never blocks training: it yields to the event loop after every token,
// runs at most `concurrency` requests at once (others queue, 429 when the queue is full), and ends
// with finishReason "length" plus `timedOut` when the time budget runs out.

import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { generateTokens } from '../../shared/model/generate.ts';
import type { SamplingOptions } from '../../shared/model/sampling.ts';
import { encode, EOS_ID, StreamDecoder } from '../../shared/tokenizer.ts';

/** A model to generate from: the live parameters (the trainer's own array) or a loaded checkpoint. */
export interface LiveModel {
  config: ModelConfig;
  params: Float32Array;
  /** Optimizer step the parameters are from. */
  step: number;
}

// ---------------------------------------------------------------------------------------------
// Bounded concurrency

export interface LimiterOptions {
  /** Requests generating at once (default 2). */
  concurrency?: number;
  /** Requests waiting for a slot; beyond that: 429 (default 8). */
  queue?: number;
  /** Wall-clock budget per request in ms, queueing included (default 30000). */
  timeoutMs?: number;
}

export class GenerationLimiter {
  readonly concurrency: number;
  readonly queueLimit: number;
  readonly timeoutMs: number;
  private active = 0;
  private waiting: Array<() => void> = [];

  constructor(opts: LimiterOptions = {}) {
    this.concurrency = opts.concurrency ?? 2;
    this.queueLimit = opts.queue ?? 8;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  get stats(): { active: number; queued: number } {
    return { active: this.active, queued: this.waiting.length };
  }

  /** Run fn in a slot. Throws ERR_GENERATE_BUSY (429) at once when every slot and queue place is taken. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.concurrency) {
      if (this.waiting.length >= this.queueLimit) {
        throw new AppError('ERR_GENERATE_BUSY',
          `generate: ${this.active} requests running and ${this.waiting.length} queued (limits ${this.concurrency} + ${this.queueLimit})`,
          429, 'retry in a few seconds');
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // hand the slot over (active unchanged)
      else this.active--;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Stop sequences

/**
 * Cuts streamed text at the first stop sequence. push() returns the text that is safe to emit:
 * anything that could still be the start of a stop sequence is held back until it is decided.
 */
export class StopMatcher {
  private pending = '';
  stopped = false;

  constructor(private readonly stops: string[]) {}

  push(text: string): string {
    if (this.stopped) return '';
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return out;
    }
    // Hold back the longest suffix that is a proper prefix of some stop sequence.
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > hold; k--) {
        if (this.pending.endsWith(s.slice(0, k))) { hold = k; break; }
      }
    }
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return out;
  }

  /** Text still held back at the end of generation (it did not become a stop sequence). */
  flush(): string {
    const out = this.stopped ? '' : this.pending;
    this.pending = '';
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// The generation loop shared by every front end

export type FinishReason = 'eos' | 'length' | 'stop';

export interface GenerationRequest {
  prompt: string;
  maxTokens: number;
  /** 0 = greedy (deterministic). */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
  seed: number;
  stop: string[];
}

export interface GenerationResult {
  text: string;
  /** Generated token ids (the EOS that ended generation is not included). */
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  step: number;
  seed: number;
  /** True when the time budget ended generation (finishReason is then "length"). */
  timedOut: boolean;
}

/** Prompt -> token ids; an empty prompt starts from <|endoftext|> (GPT-2's convention for BOS). */
export function promptTokens(prompt: string): number[] {
  return prompt === '' ? [EOS_ID] : encode(prompt);
}

/** Throws a 400 naming the lengths when the prompt leaves no room to generate. */
export function checkPromptFits(ids: number[], config: ModelConfig): void {
  if (ids.length >= config.contextLength) {
    throw new AppError('ERR_PROMPT_TOO_LONG',
      `generate: prompt is ${ids.length} tokens (bytes), the model's context is ${config.contextLength}: at most ${config.contextLength - 1} leave room for an answer`,
      400, 'shorten the prompt');
  }
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Generate with streaming: onText receives each piece of text as soon as it is final (stop
 * sequences and partial UTF-8 held back). Yields to the event loop after every token, so
 * training and other requests keep running. `deadline` (ms since epoch) ends it with "length".
 */
export async function runGeneration(
  model: LiveModel,
  req: GenerationRequest,
  opts: { deadline?: number; onText?: (text: string) => void; signal?: AbortSignal } = {},
): Promise<GenerationResult> {
  const ids = promptTokens(req.prompt);
  checkPromptFits(ids, model.config);
  const sampling: SamplingOptions = { temperature: req.temperature, topK: req.topK, topP: req.topP };
  const decoder = new StreamDecoder({ skipSpecial: true });
  const stop = new StopMatcher(req.stop);
  const tokens: number[] = [];
  let text = '';
  let finishReason: FinishReason = 'length';
  let timedOut = false;
  const emit = (piece: string) => {
    if (!piece) return;
    text += piece;
    opts.onText?.(piece);
  };
  const it = generateTokens(model.config, model.params, ids, { ...sampling, maxTokens: req.maxTokens, eosId: EOS_ID, seed: req.seed });
  for (;;) {
    const r = it.next();
    if (r.done) {
      finishReason = r.value.finishReason;
      break;
    }
    const id = r.value;
    tokens.push(id);
    emit(stop.push(decoder.push(id)));
    if (stop.stopped) {
      finishReason = 'stop';
      break;
    }
    await yieldToEventLoop();
    if (opts.signal?.aborted) break;
    if (opts.deadline !== undefined && Date.now() > opts.deadline) {
      timedOut = true;
      break;
    }
  }
  if (finishReason !== 'stop') emit(stop.push(decoder.flush()) + stop.flush());
  return { text, tokens, finishReason, promptTokens: ids.length, step: model.step, seed: req.seed, timedOut };
}

/** A seed when the client gives none: from the clock, returned in the response for replay. */
/** A seed when the client gives none: from the clock, returned in the response for replay. */
export function freshSeed(): number {
  return (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0;
}
