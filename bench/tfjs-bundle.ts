// Loads TensorFlow.js for the Node benchmark as ONE bundled ESM copy (esbuild, ~1 s), so the
// gradient registry, the kernels and the engine are the same module instance. Built into
// bench/.build (gitignored) on each run: it tracks whatever tfjs version node_modules holds.

import { build } from 'esbuild';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as tfCore from '@tensorflow/tfjs-core';
import type { WebGPUBackend as WebGPUBackendT } from '@tensorflow/tfjs-backend-webgpu';

export type TfModule = typeof tfCore & { WebGPUBackend: typeof WebGPUBackendT };

export async function loadTfjs(): Promise<TfModule> {
  const entry = fileURLToPath(new URL('./tfjs-entry.ts', import.meta.url));
  const outfile = fileURLToPath(new URL('./.build/tfjs.mjs', import.meta.url));
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    // The ESM builds ('module'), where register_all_gradients lives.
    mainFields: ['module', 'main'],
    // CommonJS dependencies (node-fetch's helpers) require() Node built-ins from inside an ESM file.
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: 'error',
  });
  return (await import(pathToFileURL(outfile).href)) as TfModule;
}
