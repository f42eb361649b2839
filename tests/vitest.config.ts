import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';
import HeavyFirstSequencer from './heavy-first.ts';

// Tests live beside the behaviour they pin (tests/<area>/...). Suites that start servers, browsers
// or SwiftShader run in forks with generous timeouts; SwiftShader is ~0.3 GFLOP/s.
export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: ['tests/**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
    // Longest files first (tests/heavy-first.ts): on 2 workers the suite ends ~130 s sooner.
    sequence: { sequencer: HeavyFirstSequencer },
    env: { VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json' },
  },
});
