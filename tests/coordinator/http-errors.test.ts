// One error handler for the whole HTTP API (coordinator/http/errors.ts): a failure that is not an
// AppError is answered 500 with its router's code and a generic message, and its text goes to the
// log, never to the client; malformed JSON and too-large bodies keep each router's named codes.
import express from 'express';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportRouter } from '../../coordinator/export/routes.ts';
import { GenerationLimiter } from '../../coordinator/generation/generate.ts';
import { errorHandler, notFound, type ErrorLog } from '../../coordinator/http/errors.ts';
import { generateRouter } from '../../coordinator/http/generate-routes.ts';
import { openaiRouter } from '../../coordinator/http/openai-routes.ts';
import { simulateRouter } from '../../coordinator/http/simulate-routes.ts';

const SECRET = 'db password is hunter2 at /srv/internal/path';
const logged: string[] = [];
const log: ErrorLog = { error: ((o: unknown, m?: string) => void logged.push(`${m} ${String((o as { err?: Error }).err?.message ?? '')}`)) as ErrorLog['error'] };

let server: Server;
let url = '';
beforeAll(async () => {
  const app = express();
  const broken = () => { throw new Error(SECRET); };
  const gen = { getModel: broken, limiter: new GenerationLimiter(), log };
  app.use(generateRouter(gen));
  app.use(openaiRouter(gen));
  app.use(exportRouter({ getModel: broken, log }));
  app.use(simulateRouter(log));
  app.get('/boom', () => { throw new Error(SECRET); });
  app.use(notFound);
  app.use(errorHandler(log));
  server = await new Promise<Server>((r) => { const s = app.listen(0, '127.0.0.1', () => r(s)); });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));

async function call(path: string, init?: RequestInit): Promise<{ status: number; text: string; code: string }> {
  const res = await fetch(url + path, init);
  const text = await res.text();
  return { status: res.status, text, code: JSON.parse(text).error?.code };
}
const post = (body: string): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body });

describe('HTTP errors', () => {
  it('500 answers carry the route\'s code and no internal error text; the text is logged', async () => {
    for (const [path, init, code] of [
      ['/boom', undefined, 'ERR_INTERNAL'],
      ['/api/generate', post('{"prompt":"a"}'), 'ERR_INTERNAL'],
      ['/v1/models', undefined, 'ERR_INTERNAL'],
      ['/api/export', undefined, 'ERR_EXPORT'],
    ] as const) {
      logged.length = 0;
      const r = await call(path, init);
      expect(r.status, path).toBe(500);
      expect(r.code, path).toBe(code);
      expect(r.text, path).not.toContain('hunter2');
      expect(logged.join('\n'), path).toContain('hunter2');
    }
  });

  it('malformed JSON and too-large bodies keep their named codes per router', async () => {
    expect((await call('/api/generate', post('{"prompt":'))).code).toBe('ERR_BAD_JSON');
    expect((await call('/api/simulate', post('{"model":'))).code).toBe('ERR_BAD_JSON');
    const big = JSON.stringify({ prompt: 'x'.repeat(3 << 20) });
    const g = await call('/api/generate', post(big));
    expect([g.status, g.code]).toEqual([413, 'ERR_BODY_TOO_LARGE']);
    const s = await call('/api/simulate', post(JSON.stringify({ model: 'x'.repeat(100_000) })));
    expect([s.status, s.code]).toEqual([413, 'ERR_TOO_LARGE']);
    expect((await call('/nowhere')).code).toBe('ERR_NOT_FOUND');
  });
});
