import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';
import HeavyFirstSequencer from './heavy-first.ts';
import { LIGHT_FILES } from './light-files.ts';

// Tests live beside the behaviour they pin (tests/<area>/...). Suites that start servers, browsers
// or SwiftShader run in forks with generous timeouts; SwiftShader is ~0.3 GFLOP/s.
// Two projects share the two workers: 'light' (tests/light-files.ts: small pure files that reuse a
// worker process, no fork per file) and 'isolated' (every other file, a fresh fork each).
const EXCLUDE = ['node_modules/**', 'dist/**'];
export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
    // Longest files first (tests/heavy-first.ts): on 2 workers the suite ends ~130 s sooner.
    sequence: { sequencer: HeavyFirstSequencer },
    env: { VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json' },
    projects: [
      { extends: true, test: { name: 'light', include: LIGHT_FILES, exclude: EXCLUDE, isolate: false } },
      { extends: true, test: { name: 'isolated', include: ['tests/**/*.test.ts'], exclude: [...EXCLUDE, ...LIGHT_FILES] } },
    ],
  },
});
