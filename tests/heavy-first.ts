// Test-file order for the whole suite: the files that take longest start first, so that on CI's
// two workers the long ones run side by side at the start and the short ones fill in at the end.
// vitest's own order (BaseSequencer) puts unknown files first by source size when it has no
// duration cache (a fresh CI checkout): in the CI run of 2026-12-02 that started the 134 s
// Chromium conformance file at 640 s and the suite ended at 775 s, though its files summed to
// 1,291 s (645 s per worker). Longest-first over the same per-file times ends at ~645 s.
//
// SECONDS: per-file wall seconds from that CI run (test-artifacts/vitest.json: endTime -
// startTime), files over 10 s. Refresh from a later run's vitest.json when the heavy files change;
// a stale or missing entry only changes the order, never what runs. Unlisted files follow in
// vitest's own order.

import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { relative } from 'node:path';

export const SECONDS: Record<string, number> = {
  'tests/e2e/cluster.browser.test.ts': 162,
  'tests/engine/conformance.node.test.ts': 159,
  'tests/engine/browser/conformance.browser.test.ts': 134,
  'tests/e2e/pipeline.browser.test.ts': 117,
  'tests/shared/model/arith-learning.test.ts': 81,
  'tests/dpo/dpo-e2e.test.ts': 69,
  'tests/engine/device.node.test.ts': 47,
  'tests/chaos/chaos.test.ts': 43,
  'tests/worker/webgpu-worker.test.ts': 34,
  'tests/hardening/verify-offloop.test.ts': 32,
  'tests/cluster/failover.test.ts': 28,
  'tests/worker/worker-loop.test.ts': 24,
  'tests/coordinator/pipeline-churn.test.ts': 19,
  'tests/coordinator/pipeline-node.test.ts': 16,
  'tests/coordinator/training.test.ts': 15,
  'tests/worker/node-cli.test.ts': 13,
  'tests/architecture/imports.test.ts': 13,
  'tests/coordinator/restart.test.ts': 12,
  'tests/coordinator/liveness-stall.test.ts': 12,
  'tests/cluster/fencing.test.ts': 11,
};

export default class HeavyFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const root = this.ctx.config.root;
    const secs = (f: TestSpecification) => SECONDS[relative(root, f.moduleId).split('\\').join('/')] ?? 0;
    // Array.prototype.sort is stable: equal (unlisted) files keep the base order.
    return base.map((f) => f).sort((a, b) => secs(b) - secs(a));
  }
}
