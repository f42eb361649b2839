// Trust for --mode diloco deltas (docs/diloco.md "Trust"): a delta is scored by the loss change it
// causes on its own round's data (as Templar's Gauntlet does): the loss of a sample of the lease's
// rows at the published start weights and at start - delta, on the coordinator's CPU. An honest
// delta (H AdamW steps on exactly those rows) lowers it, or, when its steps overshot (a high inner
// learning rate, fresh moments), raises it less than the opposite move start + delta would: it
// points downhill. A delta that raises the loss at least as much as its reverse (sign-flipped,
// random) or by more than LOSS_BLOWUP (blown up) is refused (VERIFY_FAILED) and the worker banned. Then the delta's norm per inner step is compared
// with the median of recently accepted ones: over --norm-limit times it is refused (NORM_OUTLIER).
// Re-computation: a sampled round (--verify-rate; the worker is told to start it with fresh moments
// and an empty residual, so it is reproducible) is run again here, H inner AdamW steps on the CPU
// reference (shared/diloco/inner.ts runRound + HostInnerEngine) from the same start weights and
// rows, packed with the same codec; the worker's decoded delta must be within
// RECOMPUTE_TOLERANCE (relative L2) of the reference's, else VERIFY_FAILED and a ban.
// prepare(): what needs only the lease (the score's loss at the start weights; a sampled round's
// reference delta) is computed when the lease goes out, while its worker computes, so that the
// delta's arrival waits only for what needs the delta (issue 13: the re-computation of a sampled
// round, H inner steps, used to start when the delta arrived and held the round's close as long
// again as the worker's own round).

import { buildMicroBatch, type Dataset } from '../../shared/data/index.ts';
import { createCpuBackend, type CpuBackend } from '../../shared/model/cpu-backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { RejectCode } from '../../shared/protocol/messages.ts';
import { decode, encode, type CodecName, type CodecParams } from '../../shared/diloco/codec.ts';
import { HostInnerEngine, runRound, type InnerHyper } from '../../shared/diloco/inner.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { SharedParamsCache, VerifyPool } from './verify-pool.ts';
import { median } from '../train/aggregate.ts';
import type { RoundLease } from '../train/round-trainer.ts';

/**
 * Relative L2 difference allowed between a worker's decoded delta and the CPU reference's
 * (||d_w - d_ref|| / ||d_ref||, both int8-packed when the run packs int8). Measured: a CPU worker
 * reproduces the reference exactly (0: the same code, the same order); WebGPU (SwiftShader) vs CPU
 * rounds of H = 4, int8 packed: 2.0e-4 .. 3.2e-4 (tests/engine/diloco-inner.case.ts, run by conformance.node.test.ts, prints
 * it). Allowed: 1e-2 (30x the largest measured, for longer rounds whose float32 differences grow
 * with H; not measured beyond H = 4). A delta scaled by 1.1 is 1e-1 off.
 */
export const RECOMPUTE_TOLERANCE = 1e-2;

/** ||a - b|| / ||b|| in float64. */
export function relativeL2(a: Float32Array, b: Float32Array): number {
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] - b[i];
    d += x * x;
    n += b[i] * b[i];
  }
  return n > 0 ? Math.sqrt(d / n) : d > 0 ? Infinity : 0;
}


/**
 * Relative rise of the scored loss accepted without further questions. Not zero: H AdamW steps on
 * the whole lease need not lower the loss of every 8-row sample of it, and at a too-high inner
 * rate an honest round overshoots (measured on the CPU reference, one call at a time: lr 1e-2 with
 * fresh moments from partly trained weights, 2.90 -> 8.18). Above 2% the reverse test decides (to
 * second order L(start - d) < L(start + d) for a move along a descent direction; a sign flip
 * reverses it); sign-flipped deltas in chaos runs raised it by +70% and +428%. (The honest bans
 * of +0.55..11% first seen in chaos runs were deltas judged concurrently: see serial().)
 */
export const LOSS_RISE_TOLERANCE = 0.02;
/** A rise refused whatever the reverse move does (a blown-up delta raises the loss both ways). */
export const LOSS_BLOWUP = 0.5;

/** Rows of a lease the loss score looks at (evenly spaced over its micro-batches). */
export const SCORE_ROWS = 8;
const NORM_WINDOW = 64;

/** What a sampled round's re-computation needs besides the lease and the start weights. */
export interface RecomputeRound { lrs: number[]; hyper: Omit<InnerHyper, 'lrs'>; compress: CodecName; codec: CodecParams }

/**
 * `scoreOnly`: refused by the loss score's reverse test alone (not blown up, not re-computed). For a
 * codec with error feedback (sparse) that is not proof of a lie: the sent vector is the top-k of this
 * round's delta PLUS what earlier rounds did not send, 2-bit quantised, so on this round's 8 scored
 * rows an honest one can rise a little more than its reverse (measured: 3.4567 -> 3.5520, reverse
 * 3.5135, an honest bench:comm worker, 2026-12-02, which was banned). `scoreFailurePenalty` says
 * what it costs instead of a ban.
 */
export type DeltaVerdict = { ok: true; norm: number; before: number; after: number } | { ok: false; code: RejectCode; message: string; ban?: string; scoreOnly?: boolean; overshoot?: true };

/**
 * Penalty points (Reputation.addPenalty; a ban at DEFAULT_REPUTATION.banPenalty = 16, one point
 * forgiven per accepted delta) for a delta refused by the loss score alone, by codec: 0 = ban at
 * once (dense codecs carry exactly this round's delta: raising the loss more than its reverse is a
 * lie), 4 for sparse (a sign-flipping attacker fails every round and is banned at its 4th refusal;
 * an honest worker that fails now and then is forgiven by its accepted deltas). A blown-up delta
 * (LOSS_BLOWUP) and a failed re-computation are banned at once whatever the codec.
 */
export function scoreFailurePenalty(codec: CodecName): number {
  return codec === 'sparse' ? 4 : 0;
}

/**
 * Penalty points, in all, for a delta refused as NORM_OUTLIER (over --norm-limit times the recent
 * median norm per inner step): as a sparse score failure, banned at the 4th refusal in a row, an
 * honest worker's rare outlier forgiven by its accepted deltas.
 */
export const DELTA_NORM_PENALTY = 4;

/** Resolves in a later turn of the event loop (after pending I/O): one CPU forward per turn at most. */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

export class DeltaJudge {
  private readonly cpu: CpuBackend;
  private readonly norms: number[] = [];
  counters = { scored: 0, lossRaised: 0, overshoots: 0, normOutliers: 0, recomputed: 0, recomputeFailed: 0 };
  /** Relative L2 differences of the re-computed rounds (the last 64), for the status and the docs. */
  readonly recomputeErrors: number[] = [];
  private inner: HostInnerEngine | null = null;
  /** prepare()'s results by lease id (dropped when used, or when a later version is prepared). */
  private readonly prepared = new Map<string, { version: number; before: Promise<number>; want: Promise<Float32Array> | null }>();

  /** Scoring threads (--judge-threads); null: the losses are computed in the event loop, one forward per turn. */
  private readonly pool: VerifyPool | null;
  /** The start weights' shared copy (one per version), reused by every score of that version. */
  private readonly shared = new SharedParamsCache();
  /** Each judged delta's shared copy (made once: the loss at start - delta, maybe start + delta). */
  private readonly sharedDeltas = new WeakMap<Float32Array, SharedArrayBuffer>();

  constructor(
    model: ModelConfig,
    private readonly dataset: Dataset,
    private readonly normLimit: number,
    threads = 0,
  ) {
    this.cpu = createCpuBackend(model);
    this.model = model;
    this.pool = threads > 0 ? new VerifyPool(model, threads) : null;
  }

  private readonly model: ModelConfig;

  /** Threads the loss score runs on (0: the event loop). */
  get threads(): number {
    return this.pool?.size ?? 0;
  }

  /** Stop the scoring threads (scores in flight fail; their deltas are refused). */
  async close(): Promise<void> {
    await this.pool?.close();
  }

  /**
   * The score's loss at start + sign x delta: on a scoring thread when there are threads (any
   * number run at once: each thread's backend holds its own weights), else in the judge's queue
   * in the event loop. `start` is copied (once per version) now, synchronously.
   */
  private scoreLoss(lease: RoundLease, start: Float32Array, batch: ReturnType<typeof buildMicroBatch>, delta: Float32Array | null, sign: -1 | 0 | 1): Promise<number> {
    if (this.pool) {
      let d = delta ? this.sharedDeltas.get(delta) ?? null : null;
      if (delta && !d) {
        d = new SharedArrayBuffer(delta.byteLength);
        new Float32Array(d).set(delta);
        this.sharedDeltas.set(delta, d);
      }
      return this.pool.runLoss(this.shared.get(start, lease.version), batch, d, sign).then((r) => r.loss);
    }
    return this.serial(() => this.movedLoss(start, batch, delta, sign));
  }

  /** In the event loop (inside the queue): the loss at start + sign x delta, one forward per turn. */
  private async movedLoss(start: Float32Array, batch: ReturnType<typeof buildMicroBatch>, delta: Float32Array | null, sign: -1 | 0 | 1): Promise<number> {
    if (!delta || sign === 0) return this.lossAt(start, batch);
    const moved = new Float32Array(start.length);
    if (sign < 0) for (let i = 0; i < moved.length; i++) moved[i] = start[i] - delta[i];
    else for (let i = 0; i < moved.length; i++) moved[i] = start[i] + delta[i];
    return this.lossAt(moved, batch);
  }

  /**
   * Re-run a sampled round's H inner steps on the CPU reference (fresh moments, as the worker was
   * told) and compare the worker's decoded delta with the reference packed by the same codec.
   */
  recompute(lease: RoundLease, start: Float32Array, delta: Float32Array, round: RecomputeRound): Promise<DeltaVerdict | null> {
    // Not itself in the queue: a prepared reference is already in it (awaiting it from a later
    // place in the queue is fine, but the delta need not wait for score calls queued after it);
    // an unprepared reference is queued (the inner engine holds one round at a time).
    return this.recomputeNow(lease, start, delta, round);
  }

  /**
   * The judge's backends hold one set of weights at a time, and every call awaits between setting
   * them and reading the loss: deltas arriving together (after a re-computation held the event loop)
   * were judged interleaved, each scoring another's weights, and honest workers were banned (chaos,
   * diloco: 5 of 6 honest workers in one round). One call at a time.
   */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private queue: Promise<unknown> = Promise.resolve();

  /**
   * Starts, in the judge's queue, what judging `lease`'s delta needs before the delta exists: the
   * loss score's loss at `start` and, for a sampled round (`round` given), the reference delta.
   * `start` must be the weights the delta will be judged against (the round's published weights).
   */
  prepare(lease: RoundLease, start: Float32Array, round?: RecomputeRound): void {
    for (const [id, x] of this.prepared) if (x.version < lease.version) this.prepared.delete(id);
    const before = this.scoreLoss(lease, start, this.scoreBatch(lease), null, 0);
    const want = round ? this.serial(() => this.reference(lease, start, round)) : null;
    // A failure is met again (and reported) by judge()/recompute(), which then compute it themselves.
    before.catch(() => undefined);
    want?.catch(() => undefined);
    this.prepared.set(lease.id, { version: lease.version, before, want });
  }

  /** prepare()'s results for `lease` when they were made for its version. */
  private preparedFor(lease: RoundLease): { before: Promise<number>; want: Promise<Float32Array> | null } | null {
    const x = this.prepared.get(lease.id);
    return x && x.version === lease.version ? x : null;
  }

  /** The round's H inner steps on the CPU reference (fresh moments), packed and decoded as the round's codec does. */
  private async reference(lease: RoundLease, start: Float32Array, round: RecomputeRound): Promise<Float32Array> {
    const b = buildMicroBatch(this.dataset, lease.rows.map((r) => r.id));
    // Its own CPU backend: the loss score's backend holds other weights between calls.
    this.inner ??= new HostInnerEngine(createCpuBackend(this.model), buildParameterTable(this.model));
    this.inner.resetMoments();
    // Yields to the event loop between inner steps: heartbeats and deltas are read meanwhile
    // (the judge's queue keeps the other calls waiting).
    const ref = await runRound(this.inner, start, { B: lease.B, T: b.T, inputs: b.inputs, targets: b.targets, mask: b.mask }, { ...round.hyper, lrs: round.lrs },
      { between: () => new Promise<void>((r) => setImmediate(r)) });
    return round.compress === 'none' ? ref.delta : decode(encode(ref.delta, round.compress, round.codec));
  }

  private async recomputeNow(lease: RoundLease, start: Float32Array, delta: Float32Array, round: RecomputeRound): Promise<DeltaVerdict | null> {
    if (round.lrs.length !== lease.H) return { ok: false, code: 'VERIFY_FAILED', message: `re-computation: ${round.lrs.length} learning rates for H = ${lease.H} (bug)` };
    const early = this.preparedFor(lease)?.want;
    this.prepared.delete(lease.id);
    const want = (early ? await early.catch(() => null) : null) ?? await this.serial(() => this.reference(lease, start, round));
    const err = relativeL2(delta, want);
    this.counters.recomputed++;
    this.recomputeErrors.push(err);
    if (this.recomputeErrors.length > NORM_WINDOW) this.recomputeErrors.shift();
    if (!(err <= RECOMPUTE_TOLERANCE)) {
      this.counters.recomputeFailed++;
      const why = `its delta differs from the coordinator's CPU re-computation of the round by ${err.toExponential(3)} (relative L2; allowed ${RECOMPUTE_TOLERANCE})`;
      return { ok: false, code: 'VERIFY_FAILED', message: `delta refused: ${why}`, ban: why };
    }
    return null;
  }

  /** The score's rows of `lease`: SCORE_ROWS evenly spaced over its micro-batches. */
  private scoreBatch(lease: RoundLease) {
    const n = lease.rows.length;
    const pick = Array.from({ length: Math.min(SCORE_ROWS, n) }, (_, i) => lease.rows[Math.floor((i * n) / Math.min(SCORE_ROWS, n))].id);
    return buildMicroBatch(this.dataset, pick);
  }

  /** The loss of `batch` at `weights` on the score's backend (called inside the queue only). */
  private async lossAt(weights: Float32Array, batch: ReturnType<typeof buildMicroBatch>): Promise<number> {
    // Each forward in a turn of its own: a CPU forward is synchronous (~25-100 ms for 8 rows of
    // tiny), and chained on resolved promises alone a burst of them ran back to back without letting
    // I/O in (npm run loadtest -- --mode diloco, 50 workers: event-loop lag p99 4.4 s, /healthz
    // timing out at 10 s while a round's deltas and leases were scored).
    await nextTurn();
    await this.cpu.setParams(weights);
    return (await this.cpu.forward(batch)).loss;
  }

  judge(lease: RoundLease, start: Float32Array, delta: Float32Array): Promise<DeltaVerdict> {
    // What prepare() queued for this lease, looked up now: a prepare() that comes after this call
    // (a worker answering within the turn its lease went out) queues its loss behind this judgement,
    // and awaiting it from inside the queue would wait forever.
    const ready = this.preparedFor(lease);
    if (!ready?.want) this.prepared.delete(lease.id); // kept only for recompute()'s reference
    return this.judgeNow(lease, start, delta, ready);
  }

  private async judgeNow(lease: RoundLease, start: Float32Array, delta: Float32Array, ready: { before: Promise<number> } | null): Promise<DeltaVerdict> {
    let ss = 0;
    for (let i = 0; i < delta.length; i++) ss += delta[i] * delta[i];
    const norm = Math.sqrt(ss);
    if (!Number.isFinite(norm)) return { ok: false, code: 'NON_FINITE', message: 'delta: not finite' };
    const batch = this.scoreBatch(lease);
    // Both losses asked for now (the start weights copied while they are the lease's version).
    const beforeP = ready ? ready.before.catch(() => this.scoreLoss(lease, start, batch, null, 0)) : this.scoreLoss(lease, start, batch, null, 0);
    const afterP = this.scoreLoss(lease, start, batch, delta, -1);
    // The reverse move only when the loss rose: its weights are copied now too (start may change later).
    let reverseP: Promise<number> | null = null;
    const reverse = () => (reverseP ??= this.scoreLoss(lease, start, batch, delta, 1));
    const [before, after] = await Promise.all([beforeP, afterP]);
    this.counters.scored++;
    if (!(after <= before * (1 + LOSS_RISE_TOLERANCE))) {
      const rev = await reverse();
      const blownUp = !(after <= before * (1 + LOSS_BLOWUP));
      if (!(after < rev) || blownUp) {
        this.counters.lossRaised++;
        // The delta's size against the weights' says which failure it is (an overshoot, a delta
        // of other weights, a delta that is the weights themselves): CI once banned an honest
        // worker here with the loss after the move at ~ln(vocab), as if the weights were zeroed.
        let ss0 = 0;
        for (let i = 0; i < start.length; i++) ss0 += start[i] * start[i];
        const why = `its delta raises the loss on its own round's data from ${before.toFixed(4)} to ${after.toFixed(4)} (the reverse move: ${rev.toFixed(4)}; |delta| ${norm.toExponential(3)} = ${(norm / Math.sqrt(ss0)).toExponential(2)} x |weights|, round ${lease.round}, version ${lease.version}, H ${lease.H})`;
        // The reverse move raises the loss too (and it did not blow up): a step too long in a
        // direction that is no descent either way, not a sign flip (a flipped descent step's
        // reverse LOWERS the loss). An honest round makes it: fresh moments take sign-like steps
        // of lr on every weight (CI, 2026-12-03: an honest H = 3 round at lr 3e-3, |delta| = 8.8 %
        // of |weights|, 3.97 -> 4.94 with the reverse at 4.49, was banned at once). Refused, and
        // counted as DELTA_NORM_PENALTY points (a 4th in a row bans; accepted deltas forgive).
        if (!blownUp && !(rev < before)) {
          this.counters.overshoots++;
          return { ok: false, code: 'VERIFY_FAILED', message: `delta refused: ${why}: both directions raise the loss (an overshoot, not a sign flip): counted as a strike`, overshoot: true };
        }
        return { ok: false, code: 'VERIFY_FAILED', message: `delta refused: ${why}`, ban: why, scoreOnly: !blownUp };
      }
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
