// POST /api/generate: text generation from the live model (or a named checkpoint) on the
// coordinator's CPU, with the KV-cache decoder of shared/model. Also the pieces the OpenAI
// routes and the generate CLI share: the limiter, the stop-sequence matcher and the streaming
// token loop. Generation never blocks training: it yields to the event loop after every token,
// runs at most `concurrency` requests at once (others queue, 429 when the queue is full), and
// ends with finishReason "length" plus `timedOut` when the time budget runs out.

import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { AppError, isAppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { generateTokens } from '../../shared/model/generate.ts';
import type { SamplingOptions } from '../../shared/model/sampling.ts';
import { encode, EOS_ID, StreamDecoder } from '../../shared/tokenizer.ts';
import { listCheckpoints, readCheckpoint } from '../checkpoint/index.ts';
import { basename } from 'node:path';

export interface LiveModel {
  config: ModelConfig;
  params: Float32Array;
  /** Optimizer step the parameters are from. */
  step: number;
}

/** What the server gives these routers. */
export interface GenerateContext {
  /** The current parameters (the decoder copies them, so training may update them meanwhile). */
  getModel(): LiveModel;
  /** Load a checkpoint by NAME (e.g. "ckpt-000000050.vtc") from the run directory; never a path. */
  loadCheckpoint?(name: string): Promise<LiveModel>;
  limiter: GenerationLimiter;
  /** Model id reported by /v1 routes (default "gpt2-webgpu"). */
  modelName?: string;
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

// ---------------------------------------------------------------------------------------------
// HTTP

/** A seed when the client gives none: from the clock, returned in the response for replay. */
export function freshSeed(): number {
  return (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0;
}

export const CHECKPOINT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const nonneg = (name: string, max: number) =>
  z.number({ error: `${name} must be a number` }).min(0, `${name} must be >= 0`).max(max, `${name} must be <= ${max}`);

export const generateBodySchema = z
  .object({
    prompt: z.string({ error: 'prompt must be a string' }).max(1_000_000, 'prompt is too long'),
    maxTokens: z.number({ error: 'maxTokens must be a number' }).int('maxTokens must be an integer')
      .min(1, 'maxTokens must be >= 1').max(4096, 'maxTokens must be <= 4096').default(64),
    temperature: nonneg('temperature', 10).default(0),
    topK: z.number({ error: 'topK must be a number' }).int('topK must be an integer').min(0, 'topK must be >= 0 (0 = off)').default(0),
    topP: z.number({ error: 'topP must be a number' }).gt(0, 'topP must be in (0, 1]').max(1, 'topP must be in (0, 1]').default(1),
    seed: z.number({ error: 'seed must be a number' }).int('seed must be an integer').min(0, 'seed must be >= 0')
      .max(2 ** 32 - 1, 'seed must be < 2^32').optional(),
    stop: z.union([z.string().min(1, 'stop strings must be non-empty'), z.array(z.string().min(1, 'stop strings must be non-empty')).max(4, 'at most 4 stop strings')]).optional(),
    checkpoint: z.string().regex(CHECKPOINT_NAME, 'checkpoint must be a checkpoint file name from the run directory (no paths)').optional(),
  })
  .strict();

/** zod error -> one 400 AppError listing each problem with its field. */
export function zodToAppError(e: z.ZodError, where: string): AppError {
  const parts = e.issues.map((i) => {
    if (i.code === 'unrecognized_keys') return `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`;
    return i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message;
  });
  return new AppError('ERR_BAD_REQUEST', `${where}: ${parts.join('; ')}`, 400, 'see docs/generation.md for the request fields');
}

export function parseBody<S extends z.ZodType>(schema: S, body: unknown, where: string): z.infer<S> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new AppError('ERR_BAD_REQUEST', `${where}: body must be a JSON object`, 400, 'send Content-Type: application/json');
  }
  const r = schema.safeParse(body);
  if (!r.success) throw zodToAppError(r.error, where);
  return r.data;
}

/** The model a request asks for: the live one, or a named checkpoint. */
export async function resolveModel(ctx: GenerateContext, checkpoint: string | undefined): Promise<LiveModel> {
  if (checkpoint === undefined) return ctx.getModel();
  if (!ctx.loadCheckpoint) {
    throw new AppError('ERR_NO_CHECKPOINTS', 'generate: this server cannot load checkpoints by name', 400, 'omit "checkpoint" to use the live model');
  }
  return ctx.loadCheckpoint(checkpoint);
}

/**
 * A GenerateContext.loadCheckpoint for a run directory: accepts only the NAME of a checkpoint
 * that listCheckpoints() finds there (404 listing what exists otherwise), never a path. The last
 * loaded checkpoint is kept, so repeated requests do not re-read the file.
 */
export function checkpointLoader(runDir: string): (name: string) => Promise<LiveModel> {
  let cached: { name: string; model: LiveModel } | undefined;
  return async (name: string) => {
    if (cached?.name === name) return cached.model;
    const files = listCheckpoints(runDir);
    const hit = CHECKPOINT_NAME.test(name) ? files.find((f) => basename(f.file) === name) : undefined;
    if (!hit) {
      throw new AppError('ERR_CHECKPOINT_NOT_FOUND', `generate: no checkpoint named "${name}" in the run directory`, 404,
        files.length ? `available: ${files.slice(0, 5).map((f) => basename(f.file)).join(', ')}` : 'no checkpoints saved yet');
    }
    const ck = readCheckpoint(hit.file);
    const model = { config: ck.meta.model, params: ck.params, step: ck.meta.step };
    cached = { name, model };
    return model;
  };
}

/** JSON body parsing + error responses shared by both routers. */
export function jsonBody(): express.RequestHandler {
  return express.json({ limit: '2mb', type: () => true });
}

export function errorHandler(where: string) {
  return (err: unknown, _req: Request, res: Response, next: NextFunction): void => {
    if (res.headersSent) return next(err);
    let e: AppError;
    if (isAppError(err)) e = err;
    else if (err && typeof err === 'object' && (err as { type?: string }).type === 'entity.parse.failed') {
      e = new AppError('ERR_BAD_JSON', `${where}: body is not valid JSON (${(err as Error).message})`, 400, 'send a JSON object');
    } else if (err && typeof err === 'object' && (err as { type?: string }).type === 'entity.too.large') {
      e = new AppError('ERR_BODY_TOO_LARGE', `${where}: body larger than 2 MB`, 413);
    } else {
      e = new AppError('ERR_INTERNAL', `${where}: ${(err as Error)?.message ?? String(err)}`, 500);
    }
    res.status(e.status).json(e.toJSON());
  };
}

/** Router with POST /api/generate. Mount: app.use(generateRouter(ctx)). */
export function generateRouter(ctx: GenerateContext): Router {
  const r = express.Router();
  r.post('/api/generate', jsonBody(), async (req: Request, res: Response) => {
    const body = parseBody(generateBodySchema, req.body, 'POST /api/generate');
    checkPromptFits(promptTokens(body.prompt), (await resolveModel(ctx, body.checkpoint)).config); // 400 before queueing
    const deadline = Date.now() + ctx.limiter.timeoutMs;
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    // The model is taken again once a slot is ours: the decoder copies the parameters in that same
    // tick, so the reported step is exactly the one generated from, however long the queue was.
    const result = await ctx.limiter.run(async () =>
      runGeneration(await resolveModel(ctx, body.checkpoint), {
        prompt: body.prompt, maxTokens: body.maxTokens, temperature: body.temperature, topK: body.topK, topP: body.topP,
        seed: body.seed ?? freshSeed(), stop: body.stop === undefined ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
      }, { deadline, signal: abort.signal }),
    );
    res.json({
      text: result.text,
      tokens: result.tokens,
      finishReason: result.finishReason,
      step: result.step,
      seed: result.seed,
      usage: { promptTokens: result.promptTokens, completionTokens: result.tokens.length },
      ...(result.timedOut ? { timedOut: true } : {}),
    });
  });
  r.use('/api/generate', errorHandler('POST /api/generate'));
  return r;
}
