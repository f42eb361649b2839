// Trust for --mode diloco deltas (docs/diloco.md "Trust"): a delta is scored by the loss change it
// causes on its own round's data (as Templar's Gauntlet does): the loss of a sample of the lease's
// rows at the published start weights and at start - delta, on the coordinator's CPU. An honest
// delta (H AdamW steps on exactly those rows) lowers it; a sign-flipped or blown-up one raises it:
// refused (VERIFY_FAILED) and the worker is banned. Then the delta's norm per inner step is compared
// with the median of recently accepted ones: over --norm-limit times it is refused (NORM_OUTLIER).

import { buildMicroBatch, type Dataset } from '../../shared/data/index.ts';
import { createCpuBackend, type CpuBackend } from '../../shared/model/cpu-backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { RejectCode } from '../../shared/protocol/messages.ts';
import { median } from '../train/aggregate.ts';
import type { RoundLease } from '../train/round-trainer.ts';

/** Rows of a lease the loss score looks at (evenly spaced over its micro-batches). */
export const SCORE_ROWS = 8;
const NORM_WINDOW = 64;

export type DeltaVerdict = { ok: true; norm: number; before: number; after: number } | { ok: false; code: RejectCode; message: string; ban?: string };

export class DeltaJudge {
  private readonly cpu: CpuBackend;
  private readonly norms: number[] = [];
  counters = { scored: 0, lossRaised: 0, normOutliers: 0 };

  constructor(
    model: ModelConfig,
    private readonly dataset: Dataset,
    private readonly normLimit: number,
  ) {
    this.cpu = createCpuBackend(model);
  }

  async judge(lease: RoundLease, start: Float32Array, delta: Float32Array): Promise<DeltaVerdict> {
    let ss = 0;
    for (let i = 0; i < delta.length; i++) ss += delta[i] * delta[i];
    const norm = Math.sqrt(ss);
    if (!Number.isFinite(norm)) return { ok: false, code: 'NON_FINITE', message: 'delta: not finite' };
    const n = lease.rows.length;
    const pick = Array.from({ length: Math.min(SCORE_ROWS, n) }, (_, i) => lease.rows[Math.floor((i * n) / Math.min(SCORE_ROWS, n))].id);
    const batch = buildMicroBatch(this.dataset, pick);
    await this.cpu.setParams(start);
    const before = (await this.cpu.forward(batch)).loss;
    const moved = new Float32Array(start.length);
    for (let i = 0; i < moved.length; i++) moved[i] = start[i] - delta[i];
    await this.cpu.setParams(moved);
    const after = (await this.cpu.forward(batch)).loss;
    this.counters.scored++;
    if (!(after < before)) {
      this.counters.lossRaised++;
      const why = `its delta raises the loss on its own round's data from ${before.toFixed(4)} to ${after.toFixed(4)}`;
      return { ok: false, code: 'VERIFY_FAILED', message: `delta refused: ${why}`, ban: why };
    }
    const perStep = norm / lease.H;
    if (this.norms.length >= 3) {
      const ref = median(this.norms);
      if (perStep > this.normLimit * ref) {
        this.counters.normOutliers++;
        return { ok: false, code: 'NORM_OUTLIER', message: `delta norm per inner step ${perStep.toExponential(3)} is over ${this.normLimit}x the recent median ${ref.toExponential(3)}` };
      }
    }
    this.norms.push(perStep);
    if (this.norms.length > NORM_WINDOW) this.norms.shift();
    return { ok: true, norm, before, after };
  }
}
