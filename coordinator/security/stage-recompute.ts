// Re-computation of a pipeline share (issue 12 "Security"), as plain data so it runs on a
// verification thread (verify-worker.ts) like a replica's check: the coordinator relayed every
// stage input and every output gradient, so each stage is run again with the CPU reference stage
// backend and compared with what the worker claimed: its outputs (what it sent on), its dIn and its
// gradient sum. The first stage whose answer differs by more than the tolerance (relative L2) is
// named. coordinator/server/stage-verify.ts turns a ShareRun into a ShareCheck.

import type { MicroBatch, StageDpo } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';
import { buildStageTable, gatherStage, type StageSpec } from '../../shared/model/stage.ts';

export interface StageMismatch {
  stage: number;
  message: string;
}

/** What a share's check needs: per stage its blocks, per micro-batch the rows and what was relayed. */
export interface ShareCheck {
  specs: StageSpec[];
  micros: Array<{ batch: MicroBatch; tokens: number; loss?: number; dpo?: StageDpo }>;
  /** Stage inputs relayed, [stage][micro] (stage 0: the token ids of the micro-batch, so unused). */
  inputs: Array<Array<Float32Array | undefined>>;
  /** Gradients w.r.t. each non-head stage's output, [stage][micro]. */
  dOuts: Array<Array<Float32Array | undefined>>;
  /** Each stage's gradient sum (sum over micro-batches of tokens x gradient). */
  grads: Float32Array[];
}

function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return n > 0 ? Math.sqrt(d / n) : Math.sqrt(d);
}

/** Re-runs every stage of `c` at `params` (the full vector of the share's version); the first mismatch, or null. */
export async function recomputeShare(model: ModelConfig, c: ShareCheck, params: Float32Array, tolerance: number): Promise<StageMismatch | null> {
  const S = c.specs.length;
  for (let s = 0; s < S; s++) {
    const table = buildStageTable(model, c.specs[s]);
    const cpu = createCpuStageBackend(model, c.specs[s]);
    try {
      await cpu.setParams(gatherStage(table, params));
      const acc = new Float32Array(table.total);
      for (let m = 0; m < c.micros.length; m++) {
        const mi = c.micros[m];
        const input = {
          B: mi.batch.B, T: mi.batch.T,
          ...(s === 0 ? { inputs: mi.batch.inputs } : { acts: c.inputs[s][m] }),
          ...(s === S - 1 ? { targets: mi.batch.targets, mask: mi.batch.mask, ...(mi.dpo ? { dpo: mi.dpo } : {}) } : {}),
        };
        if (s < S - 1) {
          const out = await cpu.forward(input);
          const e = relErr(c.inputs[s + 1][m]!, out);
          if (e > tolerance) return { stage: s, message: `stage ${s} micro-batch ${m}: its output differs from the re-computation by ${e.toExponential(2)} (relative)` };
        }
        const r = await cpu.forwardBackward(input, s < S - 1 ? c.dOuts[s][m] : undefined);
        if (s > 0) {
          const e = relErr(c.dOuts[s - 1][m]!, r.dIn!);
          if (e > tolerance) return { stage: s, message: `stage ${s} micro-batch ${m}: its dIn differs from the re-computation by ${e.toExponential(2)} (relative)` };
        }
        if (s === S - 1 && Math.abs((mi.loss ?? 0) - (r.loss ?? 0)) > tolerance * Math.max(1e-6, Math.abs(r.loss ?? 0))) {
          return { stage: s, message: `stage ${s} micro-batch ${m}: loss ${mi.loss} but the re-computation gives ${r.loss}` };
        }
        for (let i = 0; i < acc.length; i++) acc[i] += mi.tokens * r.grads[i];
      }
      const e = relErr(c.grads[s], acc);
      if (e > tolerance) return { stage: s, message: `stage ${s}: its gradient sum differs from the re-computation by ${e.toExponential(2)} (relative)` };
    } finally {
      cpu.dispose();
    }
  }
  return null;
}
