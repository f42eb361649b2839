// POST /api/generate: text generation from the live model (or a named checkpoint) over HTTP, plus
// the request-parsing pieces the OpenAI routes share (body schema, zod -> 400, JSON body). The
// generation itself (limiter, stop sequences, token loop) is coordinator/generation/, shared with
// the CLI.

import express, { type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { AppError } from '../../shared/errors.ts';
import { CHECKPOINT_NAME } from '../generation/checkpoints.ts';
import { checkPromptFits, freshSeed, promptTokens, runGeneration, type GenerationLimiter, type LiveModel } from '../generation/generate.ts';
import { errorHandler, type ErrorLog } from './errors.ts';

/** What the server gives these routers. */
export interface GenerateContext {
  /** The current parameters (the decoder copies them, so training may update them meanwhile). */
  getModel(): LiveModel;
  /** Load a checkpoint by NAME (e.g. "ckpt-000000050.vtc") from the run directory; never a path. */
  loadCheckpoint?(name: string): Promise<LiveModel>;
  limiter: GenerationLimiter;
  /** Model id reported by /v1 routes (default "gpt2-webgpu"). */
  modelName?: string;
  /** Where unexpected errors are logged (their text is never sent to the client); default stderr. */
  log?: ErrorLog;
}

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

/** JSON body parsing + error responses shared by both routers. */
export function jsonBody(): express.RequestHandler {
  return express.json({ limit: '2mb', type: () => true });
}

/** The error handler of the generation routers (their own too-large code, as always). */
export function generationErrors(where: string, log?: ErrorLog) {
  return errorHandler(log, { where, tooLargeCode: 'ERR_BODY_TOO_LARGE', bodyLimit: '2 MB' });
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
  r.use('/api/generate', generationErrors('POST /api/generate', ctx.log));
  return r;
}
