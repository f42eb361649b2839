// OpenAI-compatible completions: POST /v1/completions (with `stream: true` as server-sent
// events ending in `data: [DONE]`) and GET /v1/models, so existing OpenAI clients can query the
// model. Same engine, limiter and timeout as /api/generate. OpenAI fields we cannot honour
// (n > 1, logprobs, echo, penalties, best_of > 1, suffix) are accepted only at their no-op value
// and rejected with a 400 naming the field otherwise; fields OpenAI does not define are rejected.

import { randomBytes } from 'node:crypto';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { AppError } from '../../shared/errors.ts';
import { CHECKPOINT_NAME } from '../generation/checkpoints.ts';
import { checkPromptFits, freshSeed, promptTokens, runGeneration, type FinishReason, type LiveModel } from '../generation/generate.ts';
import { asAppError } from './errors.ts';
import { generationErrors, jsonBody, parseBody, type GenerateContext } from './generate-routes.ts';

export const DEFAULT_MODEL_NAME = 'gpt2-webgpu';

const noop = <T extends z.ZodType>(t: T, name: string, ok: (v: z.infer<T>) => boolean, what: string) =>
  t.optional().refine((v) => v === undefined || v === null || ok(v), `${name} is not supported (only ${what})`);

export const completionsBodySchema = z
  .object({
    model: z.string({ error: 'model must be a string' }).optional(),
    prompt: z.union([z.string(), z.array(z.string()).length(1, 'prompt arrays must hold exactly one string (n=1)')], {
      error: 'prompt must be a string or an array of one string',
    }),
    max_tokens: z.number({ error: 'max_tokens must be a number' }).int('max_tokens must be an integer')
      .min(1, 'max_tokens must be >= 1').max(4096, 'max_tokens must be <= 4096').default(16),
    temperature: z.number({ error: 'temperature must be a number' }).min(0, 'temperature must be >= 0').max(2, 'temperature must be <= 2').default(1),
    top_p: z.number({ error: 'top_p must be a number' }).gt(0, 'top_p must be in (0, 1]').max(1, 'top_p must be in (0, 1]').default(1),
    top_k: z.number({ error: 'top_k must be a number' }).int('top_k must be an integer').min(0, 'top_k must be >= 0 (0 = off)').default(0),
    n: z.literal(1, { error: 'n: only n=1 is supported' }).optional(),
    stream: z.boolean({ error: 'stream must be a boolean' }).default(false),
    stop: z.union([z.string().min(1), z.array(z.string().min(1, 'stop strings must be non-empty')).max(4, 'at most 4 stop strings')]).nullable().optional(),
    seed: z.number({ error: 'seed must be a number' }).int('seed must be an integer').min(0, 'seed must be >= 0')
      .max(2 ** 32 - 1, 'seed must be < 2^32').nullable().optional(),
    user: z.string().optional(),
    logprobs: noop(z.any(), 'logprobs', () => false, 'null'),
    echo: noop(z.boolean(), 'echo', (v) => v === false, 'false'),
    best_of: noop(z.number(), 'best_of', (v) => v === 1, '1'),
    frequency_penalty: noop(z.number(), 'frequency_penalty', (v) => v === 0, '0'),
    presence_penalty: noop(z.number(), 'presence_penalty', (v) => v === 0, '0'),
    logit_bias: noop(z.record(z.string(), z.number()), 'logit_bias', (v) => Object.keys(v).length === 0, '{}'),
    suffix: noop(z.string(), 'suffix', (v) => v === '', 'null'),
  })
  .strict();

/** OpenAI reports eos and stop sequences alike as "stop". */
export function openaiFinish(r: FinishReason): 'stop' | 'length' {
  return r === 'length' ? 'length' : 'stop';
}

function modelFor(ctx: GenerateContext, requested: string | undefined): { name: string; load: () => Promise<LiveModel> } {
  const live = ctx.modelName ?? DEFAULT_MODEL_NAME;
  if (requested === undefined || requested === live) return { name: live, load: async () => ctx.getModel() };
  if (ctx.loadCheckpoint && CHECKPOINT_NAME.test(requested)) {
    const load = ctx.loadCheckpoint.bind(ctx);
    return { name: requested, load: () => load(requested) };
  }
  throw new AppError('ERR_UNKNOWN_MODEL', `POST /v1/completions: unknown model "${requested}"`, 404,
    `use "${live}" (GET /v1/models lists it) or a checkpoint file name`);
}

/** OpenAI clients read error.message and error.type. */
function openaiErrors(where: string, log: GenerateContext['log']) {
  const base = generationErrors(where, log);
  return (err: unknown, req: Request, res: Response, next: NextFunction): void => {
    if (res.headersSent) return next(err);
    const json = res.json.bind(res);
    res.json = (body: { error?: Record<string, unknown> }) => {
      if (body?.error) body.error.type = res.statusCode === 429 ? 'rate_limit_error' : res.statusCode >= 500 ? 'server_error' : 'invalid_request_error';
      return json(body);
    };
    base(err, req, res, next);
  };
}

/** Router with POST /v1/completions and GET /v1/models. Mount: app.use(openaiRouter(ctx)). */
export function openaiRouter(ctx: GenerateContext): Router {
  const r = express.Router();
  const started = Math.floor(Date.now() / 1000);

  r.get('/v1/models', (_req, res) => {
    const m = ctx.getModel();
    res.json({
      object: 'list',
      data: [{
        id: ctx.modelName ?? DEFAULT_MODEL_NAME, object: 'model', created: started, owned_by: 'webgpu-volunteer-train',
        step: m.step, context_length: m.config.contextLength,
      }],
    });
  });

  r.post('/v1/completions', jsonBody(), async (req: Request, res: Response) => {
    const where = 'POST /v1/completions';
    const body = parseBody(completionsBodySchema, req.body, where);
    const { name, load } = modelFor(ctx, body.model);
    const prompt = typeof body.prompt === 'string' ? body.prompt : body.prompt[0];
    checkPromptFits(promptTokens(prompt), (await load()).config);
    const id = `cmpl-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const request = {
      prompt, maxTokens: body.max_tokens, temperature: body.temperature, topK: body.top_k, topP: body.top_p,
      seed: body.seed ?? freshSeed(), stop: body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
    };
    const deadline = Date.now() + ctx.limiter.timeoutMs;
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const chunk = (text: string, finish: 'stop' | 'length' | null) => ({
      id, object: 'text_completion', created, model: name, choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    });

    if (!body.stream) {
      // load() again inside the slot: the step reported is the one generated from (see generate-routes)
      const out = await ctx.limiter.run(async () => runGeneration(await load(), request, { deadline, signal: abort.signal }));
      res.json({
        ...chunk(out.text, openaiFinish(out.finishReason)),
        usage: { prompt_tokens: out.promptTokens, completion_tokens: out.tokens.length, total_tokens: out.promptTokens + out.tokens.length },
      });
      return;
    }
    // Streaming: headers go out only once a slot is ours, so 429 is still a plain JSON error.
    await ctx.limiter.run(async () => {
      res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
      res.flushHeaders();
      const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      try {
        const out = await runGeneration(await load(), request, { deadline, signal: abort.signal, onText: (t) => send(chunk(t, null)) });
        send({
          ...chunk('', openaiFinish(out.finishReason)),
          usage: { prompt_tokens: out.promptTokens, completion_tokens: out.tokens.length, total_tokens: out.promptTokens + out.tokens.length },
        });
      } catch (e) {
        const err = asAppError(e, where, ctx.log);
        send({ error: { ...err.toJSON().error, type: 'server_error' } });
      }
      res.write('data: [DONE]\n\n');
      res.end();
    });
  });
  r.use(['/v1/completions', '/v1/models'], openaiErrors('POST /v1/completions', ctx.log));
  return r;
}
