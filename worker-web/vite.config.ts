import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

// The volunteer page, served by the coordinator at /worker/. The engine and the worker loop run
// in a module Web Worker bundled alongside. No inline scripts or styles (strict CSP).
const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const coordinator = process.env.COORDINATOR_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  root: here('./tab'),
  base: '/worker/',
  publicDir: false,
  worker: { format: 'es' },
  build: {
    outDir: here('../dist/worker'),
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
  },
  server: {
    proxy: {
      '/socket.io': { target: coordinator, ws: true },
    },
  },
});
