import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

// The dashboard is three static pages served by the coordinator at `/`: the live view
// (index.html), the playground and the memory simulator. Everything is bundled into external
// files (no inline scripts or styles) so the pages run under a strict Content-Security-Policy.
const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

// In `vite dev`, API and socket.io calls go to a running coordinator (default :8080).
const coordinator = process.env.COORDINATOR_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  root: here('.'),
  base: '/',
  publicDir: false,
  build: {
    outDir: here('../dist/dashboard'),
    emptyOutDir: true,
    // No inlined assets: data: URLs for scripts/styles would need CSP exceptions.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    rollupOptions: {
      input: {
        index: here('index.html'),
        playground: here('playground.html'),
        simulator: here('simulator.html'),
      },
    },
  },
  server: {
    proxy: {
      '/api': coordinator,
      '/metrics': coordinator,
      '/worker': coordinator,
      '/socket.io': { target: coordinator, ws: true },
    },
  },
});
