// A bare express app on port 0 with the generation routers mounted, as the coordinator mounts them.
import express from 'express';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { GenerationLimiter, type LiveModel } from '../../coordinator/generation/generate.ts';
import { generateRouter, type GenerateContext } from '../../coordinator/http/generate-routes.ts';
import { openaiRouter } from '../../coordinator/http/openai-routes.ts';
import { exportRouter } from '../../coordinator/export/routes.ts';

export async function startApp(ctx: GenerateContext): Promise<{ url: string; server: Server; close: () => Promise<void> }> {
  const app = express();
  app.use(generateRouter(ctx));
  app.use(openaiRouter(ctx));
  app.use(exportRouter({ getModel: () => ctx.getModel() }));
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, server, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

export function context(model: LiveModel, extra: Partial<GenerateContext> = {}): GenerateContext {
  return { getModel: () => model, limiter: new GenerationLimiter({ concurrency: 2, queue: 4, timeoutMs: 30_000 }), ...extra };
}

export async function post(url: string, body: unknown, raw = false): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ? (body as string) : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}
