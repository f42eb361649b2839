// Re-computation of a worker's result on the coordinator with the CPU reference (shared/model/cpu),
// at the same parameters and micro-batch, compared within a tolerance. The relative L2 error
// ||g - g_ref|| / ||g_ref|| catches sign flips (2), noise (~1.4), scaling (|K - 1|) and lazy
// workers; the loss must agree too. WebGPU float32 kernels differ from the CPU by ~1e-5..1e-3
// relative, so the default tolerance (5e-2) leaves two orders of magnitude of margin both ways.
//
// Why CPU recompute and not redundant assignment to a second worker: the coordinator always has the
// reference, it cannot collude, and it costs no volunteer time; for a model too large to recompute
// here, the verify rate is the knob (0 disables it; norm checks and robust aggregation remain).
//
// The compute runs on verification threads (verify-pool.ts), never on the coordinator's loop: a
// check takes seconds and the loop must keep serving heartbeats, sockets and the API meanwhile.

import type { MicroBatch } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { TaskDpo } from '../../shared/protocol/messages.ts';
import type { ShareCheck, StageMismatch } from './stage-recompute.ts';
import { SharedParamsCache, VerifyPool, type SharedParams } from './verify-pool.ts';
import { BIAS_TOLERANCE_DIVISOR } from './verify-compare.ts';

export interface Comparison {
  ok: boolean;
  relErr: number;
  lossErr: number;
  /** |mean difference| / rms of the reference gradient (verify-compare.ts), judged at tolerance / BIAS_TOLERANCE_DIVISOR. */
  biasErr: number;
  /** Compute time on the verification thread (queueing excluded). */
  ms: number;
}

export class Verifier {
  private readonly pool: VerifyPool;
  /** The newest version's shared copy, reused by every check of that version. */
  private readonly shared = new SharedParamsCache();
  checks = 0;
  mismatches = 0;
  totalMs = 0;
  /** Checks that could not run (a thread crashed, a bad job); the result went on unverified. */
  failures = 0;

  constructor(
    readonly model: ModelConfig,
    readonly tolerance: number,
    threads = 1,
  ) {
    this.pool = new VerifyPool(model, threads);
  }

  /** SharedArrayBuffer copies of the parameters made so far (one per version checked). */
  get paramCopies(): number {
    return this.shared.copies;
  }

  /** Checks queued or running. */
  get pending(): number {
    return this.pool.pending;
  }

  /**
   * Re-compute (params, batch) and compare with the worker's loss and gradient. `params` must be
   * at `version`, the version the worker computed at, when this is called: the copy handed to the
   * thread is taken now, synchronously, since the optimizer updates `params` in place.
   */
  check(params: Float32Array, version: number, batch: MicroBatch & { dpo?: TaskDpo }, loss: number, grads: Float32Array): Promise<Comparison> {
    const job = this.pool.run({ params: this.sharedParams(params, version), batch, loss, grads });
    return job.then(
      (f) => {
        const ok = f.relErr <= this.tolerance && f.lossErr <= this.tolerance && f.biasErr <= this.tolerance / BIAS_TOLERANCE_DIVISOR;
        this.checks++;
        if (!ok) this.mismatches++;
        this.totalMs += f.ms;
        return { ok, relErr: f.relErr, lossErr: f.lossErr, biasErr: f.biasErr, ms: f.ms };
      },
      (e: unknown) => {
        this.failures++;
        throw e;
      },
    );
  }

  /**
   * Re-run a pipeline share's stages (stage-recompute.ts) at `params`, which must be at `version`
   * now (copied synchronously, as for check()); the first stage that disagrees, or null.
   */
  checkShare(params: Float32Array, version: number, share: ShareCheck): Promise<StageMismatch | null> {
    return this.pool.runShare(this.sharedParams(params, version), share, this.tolerance).then(
      (v) => {
        this.checks++;
        if (v.mismatch) this.mismatches++;
        this.totalMs += v.ms;
        return v.mismatch;
      },
      (e: unknown) => {
        this.failures++;
        throw e;
      },
    );
  }

  /** One SharedArrayBuffer copy per (version, params array); pending checks keep theirs alive. */
  private sharedParams(params: Float32Array, version: number): SharedParams {
    return this.shared.get(params, version);
  }

  /** Stop the threads; pending checks fail with ERR_VERIFY_CLOSED. */
  close(): Promise<void> {
    return this.pool.close();
  }
}
