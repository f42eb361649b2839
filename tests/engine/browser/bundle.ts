// Bundles the conformance cases + engine for the browser (esbuild, ~1 s) into
// tests/engine/browser/.build (gitignored), next to index.html. Rebuilt on every run, so the
// page always runs the working tree's engine and suite.

import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const BROWSER_DIR = fileURLToPath(new URL('.', import.meta.url));
export const BUILD_DIR = join(BROWSER_DIR, '.build');

export async function bundleConformancePage(): Promise<string> {
  await mkdir(BUILD_DIR, { recursive: true });
  await build({
    entryPoints: [join(BROWSER_DIR, 'entry.ts')],
    outfile: join(BUILD_DIR, 'entry.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: 'linked',
    logLevel: 'error',
  });
  await copyFile(join(BROWSER_DIR, 'index.html'), join(BUILD_DIR, 'index.html'));
  return BUILD_DIR;
}
