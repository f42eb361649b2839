// Pages: the built dashboard (dist/dashboard) at / and the worker tab (dist/worker) at /worker,
// when `npm run build` produced them; until then a plain page with the links.

import express, { Router } from 'express';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

export function staticRouter(root = resolve(process.cwd())): Router {
  const r = Router();
  r.use((_req, res, next) => {
    res.set('Content-Security-Policy', CSP);
    res.set('X-Content-Type-Options', 'nosniff');
    next();
  });
  const dash = join(root, 'dist', 'dashboard');
  const worker = join(root, 'dist', 'worker');
  if (existsSync(join(worker, 'index.html'))) r.use('/worker', express.static(worker));
  else r.get('/worker', (_req, res) => void res.type('html').send(page('Worker', '<p>The worker page is not built yet: run <code>npm run build</code>, or run a Node worker: <code>npm run worker -- --url ' + '&lt;this address&gt; --backend cpu</code>.</p>')));
  if (existsSync(join(dash, 'index.html'))) r.use('/', express.static(dash));
  else r.get('/', (_req, res) => void res.type('html').send(page('Coordinator', '<ul><li><a href="/worker">/worker</a>: contribute this browser\'s GPU</li><li><a href="/api/status">/api/status</a></li><li><a href="/api/history">/api/history</a></li><li><a href="/api/plan">/api/plan</a></li><li><a href="/metrics">/metrics</a></li></ul><p>The dashboard is not built yet: run <code>npm run build</code>.</p>')));
  return r;
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
}
