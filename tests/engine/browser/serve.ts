// A tiny static file server on 127.0.0.1, port 0, for the browser run: WebGPU needs a secure
// context, and http://127.0.0.1 is one (about:blank and file:// are not). Serves only the
// directories it is given, by URL prefix; anything else is 404, and '..' never escapes a root.

import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import type { AddressInfo } from 'node:net';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.bin': 'application/octet-stream',
  '.wgsl': 'text/plain; charset=utf-8',
};

export interface StaticServer {
  origin: string;
  close(): Promise<void>;
}

/** mounts: URL prefix ('/', '/fixture/') -> directory on disk. Longest prefix wins. */
export async function serveStatic(mounts: Record<string, string>): Promise<StaticServer> {
  // resolve() drops trailing separators, so the containment test below is exact.
  const entries = Object.entries(mounts).map(([p, d]) => [p, resolve(d)] as const).sort((a, b) => b[0].length - a[0].length);
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      const mount = entries.find(([prefix]) => path.startsWith(prefix));
      if (!mount || req.method !== 'GET') {
        res.writeHead(404).end();
        return;
      }
      const [prefix, root] = mount;
      let rel = path.slice(prefix.length);
      if (rel === '' || rel.endsWith('/')) rel += 'index.html';
      const file = normalize(join(root, rel));
      if (!file.startsWith(root + sep)) {
        res.writeHead(403).end();
        return;
      }
      try {
        const body = await readFile(file);
        res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
        res.end(body);
      } catch {
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
