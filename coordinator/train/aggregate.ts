// Gradient aggregation, all of it in one module: the Aggregator interface the trainer folds
// results into, the streaming mean (default), the robust rules (--aggregate trimmed-mean |
// centered-clip, docs/hardening.md). The factory that picks one from the config: create-aggregator.ts.
//
// MeanAggregator: the token-weighted mean, streamed: each accepted result is folded into ONE
// float64 accumulator in place (acc += tokens * g) as it arrives; no list of gradient copies is
// kept. sum_k(n_k * mean_k) / sum_k(n_k) equals the mean over all tokens, so K workers equal one
// worker on the whole batch (up to float rounding, which the float64 accumulator keeps ~1e-7).
//
// Robust rules, with the per-result norm check against the step's median that each applies first.
// Memory: unlike the streaming mean, a robust rule needs every result of the step at once:
// k results x params x 4 bytes (float32 copies). For the 1M-param `small` preset and 32 tasks that
// is 128 MB; for GPT-2 small (124M) it is ~0.5 GB per task, so robust modes suit small and medium
// models, or few tasks per step (large micro-batches). Keeping the vectors also lets a ban remove
// exactly the banned worker's results from the step (remove()).
// Token weighting: each result is a mean over `tokens` positions, so both rules weight results by
// their tokens (a weighted trimmed mean; a weighted centered clip). With honest workers only and no
// trimming these equal the token-weighted mean the streaming aggregator computes.

import { l2Norm } from '../../shared/optim/clip.ts';
import { GradientKernels } from '../../shared/simd/gradient-kernels.ts';
import type { StagingTarget } from '../../shared/protocol/validate.ts';

export interface Aggregator {
  readonly name: string;
  /** Start a step; clears the accumulator. */
  begin(step: number): void;
  /** Fold one accepted result in (the gradient of the mean loss over `tokens` positions). */
  add(grads: Float32Array, tokens: number, workerId: string): void;
  /** Results folded in this step. */
  readonly count: number;
  readonly tokens: number;
  /** Write the aggregate gradient into `out` (float32, parameter layout); returns total tokens. */
  finish(out: Float32Array): number;
  /** Drop one worker's results of this step (ban); only aggregators that keep per-result vectors can. */
  remove?(workerId: string): number;
  /** Bytes of gradient copies held for the running step (robust rules; the mean holds none). */
  readonly heldBytes?: number;
  /** Fold threads only: a thread failed, this step's sum is incomplete (fold-threads.ts). */
  readonly failed?: boolean;
  /** Fold threads only: stop the threads. */
  close?(): Promise<void>;
  /**
   * Fold threads only: where validateResult's scan may copy a result's gradient so that the fold
   * reads it in place (fold-threads.ts; ResultLimits.stage), or null.
   */
  stage?(grads: Float32Array): StagingTarget | null;
}

/**
 * acc[i] += the sum of t * g[i] over the pending results, in ONE pass for up to FOLD_BATCH of them.
 * Shared by MeanAggregator and the fold threads (fold-thread.ts).
 */
export function foldPending(acc: Float64Array, p: ReadonlyArray<{ g: Float32Array; t: number }>): void {
  const n = acc.length;
  if (p.length === 4) {
    const [a, b, c, d] = p;
    const ga = a.g, gb = b.g, gc = c.g, gd = d.g, ta = a.t, tb = b.t, tc = c.t, td = d.t;
    for (let i = 0; i < n; i++) acc[i] += ta * ga[i] + tb * gb[i] + tc * gc[i] + td * gd[i];
  } else if (p.length === 3) {
    const [a, b, c] = p;
    const ga = a.g, gb = b.g, gc = c.g, ta = a.t, tb = b.t, tc = c.t;
    for (let i = 0; i < n; i++) acc[i] += ta * ga[i] + tb * gb[i] + tc * gc[i];
  } else if (p.length === 2) {
    const [a, b] = p;
    const ga = a.g, gb = b.g, ta = a.t, tb = b.t;
    for (let i = 0; i < n; i++) acc[i] += ta * ga[i] + tb * gb[i];
  } else {
    for (const { g, t } of p) for (let i = 0; i < n; i++) acc[i] += t * g[i];
  }
}

export class MeanAggregator implements Aggregator {
  readonly name = 'mean';
  private acc: Float64Array;
  private n = 0;
  private tok = 0;
  /**
   * Results accepted but not yet folded in: up to FOLD_BATCH of them are folded in ONE pass over
   * the accumulator (acc += t0*g0 + t1*g1 + ...). The float64 accumulator is 2x the gradient's
   * bytes and is read and written on every fold, so folding results one by one is bound by memory
   * traffic (20 bytes per parameter per result); four at a time it is 8 + 16/4. The arrays held are
   * the decoded messages themselves (no copies; nobody writes to them), at most FOLD_BATCH - 1.
   */
  private pending: Array<{ g: Float32Array; t: number }> = [];

  /** The SIMD kernels holding `acc` in their memory, or null (JavaScript loops, same bits). */
  private readonly kernels: GradientKernels | null;

  constructor(readonly paramCount: number) {
    this.kernels = GradientKernels.create(paramCount);
    this.acc = this.kernels?.acc ?? new Float64Array(paramCount);
  }

  begin(_step: number): void {
    this.acc.fill(0);
    this.pending = [];
    this.n = 0;
    this.tok = 0;
  }

  add(grads: Float32Array, tokens: number, _workerId: string): void {
    if (grads.length !== this.acc.length) throw new Error(`aggregate: gradient length ${grads.length} != ${this.acc.length} (validated earlier: bug)`);
    if (tokens <= 0) return; // a task with no masked-in position contributes nothing
    this.pending.push({ g: grads, t: tokens });
    this.n++;
    this.tok += tokens;
    if (this.pending.length >= FOLD_BATCH) this.fold();
  }

  /** Fold the pending results into the accumulator (one pass for all of them). */
  private fold(): void {
    if (this.kernels) this.kernels.fold(this.pending);
    else foldPending(this.acc, this.pending);
    this.pending = [];
  }

  get count(): number {
    return this.n;
  }
  get tokens(): number {
    return this.tok;
  }

  finish(out: Float32Array): number {
    if (this.pending.length) this.fold();
    const inv = this.tok > 0 ? 1 / this.tok : 0;
    if (this.kernels) this.kernels.scaleInto(out, inv);
    else for (let i = 0; i < this.acc.length; i++) out[i] = this.acc[i] * inv;
    return this.tok;
  }
}

/** Results the streaming mean folds in per pass over its accumulator (MeanAggregator). */
export const FOLD_BATCH = 4;

// ---------------------------------------------------------------- robust rules

export interface RobustOptions {
  /** Fraction of total token weight trimmed from EACH end per coordinate (trimmed-mean). */
  trim: number;
  /** Results with norm > normLimit x the step's median norm are dropped before aggregating. */
  normLimit: number;
  /** Centered-clip iterations. */
  clipIters: number;
}

export const DEFAULT_ROBUST: RobustOptions = { trim: 0.25, normLimit: 4, clipIters: 3 };

interface Entry {
  grads: Float32Array;
  tokens: number;
  workerId: string;
  norm: number;
}

/** What the last finish() did: results dropped by the norm check, and why (for reputation). */
export interface RobustReport {
  medianNorm: number;
  dropped: Array<{ workerId: string; norm: number }>;
  used: number;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export abstract class StoredAggregator implements Aggregator {
  abstract readonly name: string;
  protected entries: Entry[] = [];
  lastReport: RobustReport = { medianNorm: 0, dropped: [], used: 0 };

  constructor(
    readonly paramCount: number,
    protected readonly opts: RobustOptions,
  ) {}

  begin(_step: number): void {
    this.entries = [];
  }

  add(grads: Float32Array, tokens: number, workerId: string): void {
    if (grads.length !== this.paramCount) throw new Error(`aggregate: gradient length ${grads.length} != ${this.paramCount} (validated earlier: bug)`);
    if (tokens <= 0) return;
    // Own copy: the socket layer's buffer is not ours to keep.
    const g = new Float32Array(grads);
    this.entries.push({ grads: g, tokens, workerId, norm: l2Norm(g) });
  }

  /** Drop every result of `workerId` from this step (ban); returns how many were dropped. */
  remove(workerId: string): number {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => e.workerId !== workerId);
    return before - this.entries.length;
  }

  get count(): number {
    return this.entries.length;
  }
  get tokens(): number {
    return this.entries.reduce((a, e) => a + e.tokens, 0);
  }

  /** Bytes held for this step's results (k x params x 4). */
  get heldBytes(): number {
    return this.entries.length * this.paramCount * 4;
  }

  finish(out: Float32Array): number {
    const med = median(this.entries.map((e) => e.norm));
    const keep: Entry[] = [];
    const dropped: RobustReport['dropped'] = [];
    for (const e of this.entries) {
      // With one or two results the median is no reference: keep them (verification still runs).
      if (this.entries.length >= 3 && med > 0 && e.norm > this.opts.normLimit * med) dropped.push({ workerId: e.workerId, norm: e.norm });
      else keep.push(e);
    }
    this.lastReport = { medianNorm: med, dropped, used: keep.length };
    out.fill(0);
    if (keep.length === 0) return 0;
    this.combine(keep, out);
    // Tokens trained are all the step's positions (every sample was seen; outliers only lose their vote).
    return this.entries.reduce((a, e) => a + e.tokens, 0);
  }

  protected abstract combine(keep: Entry[], out: Float32Array): void;
}

/**
 * Coordinate-wise token-weighted trimmed mean: per coordinate, sort the k values, cut `trim` of
 * the total weight from each end, average the rest. O(P k log k); k is the step's task count.
 */
function trimmedMean(keep: Entry[], out: Float32Array, trim: number): void {
  const k = keep.length;
  const W = keep.reduce((a, e) => a + e.tokens, 0);
  const cut = k >= 3 ? trim * W : 0;
  const idx = new Array<number>(k);
  const vals = new Float64Array(k);
  for (let i = 0; i < out.length; i++) {
    for (let j = 0; j < k; j++) {
      idx[j] = j;
      vals[j] = keep[j].grads[i];
    }
    idx.sort((a, b) => vals[a] - vals[b]);
    // Walk the sorted weights; each entry contributes the part of its weight inside [cut, W - cut].
    let lo = 0;
    let s = 0;
    let w = 0;
    for (let j = 0; j < k; j++) {
      const e = keep[idx[j]];
      const a = Math.max(lo, cut);
      const b = Math.min(lo + e.tokens, W - cut);
      if (b > a) {
        s += (b - a) * vals[idx[j]];
        w += b - a;
      }
      lo += e.tokens;
    }
    out[i] = w > 0 ? s / w : 0;
  }
}

export class TrimmedMeanAggregator extends StoredAggregator {
  readonly name = 'trimmed-mean';

  protected combine(keep: Entry[], out: Float32Array): void {
    trimmedMean(keep, out, this.opts.trim);
  }
}

/**
 * CenteredClip (Karimireddy et al. 2021; BTARD's defence): start at the trimmed mean, then
 * v <- v + sum_i w_i clip_tau(x_i - v) / sum_i w_i, with tau = the median distance of the results
 * to v. A minority of far-away vectors moves v by at most tau each, whatever their size or direction.
 */
export class CenteredClipAggregator extends StoredAggregator {
  readonly name = 'centered-clip';

  protected combine(keep: Entry[], out: Float32Array): void {
    trimmedMean(keep, out, this.opts.trim);
    const P = this.paramCount;
    const W = keep.reduce((a, e) => a + e.tokens, 0);
    const delta = new Float64Array(P);
    for (let it = 0; it < this.opts.clipIters; it++) {
      const dist = keep.map((e) => {
        let s = 0;
        for (let i = 0; i < P; i++) {
          const d = e.grads[i] - out[i];
          s += d * d;
        }
        return Math.sqrt(s);
      });
      const tau = median(dist);
      if (!(tau > 0)) break;
      delta.fill(0);
      for (let j = 0; j < keep.length; j++) {
        const c = (keep[j].tokens / W) * Math.min(1, tau / Math.max(dist[j], 1e-30));
        const g = keep[j].grads;
        for (let i = 0; i < P; i++) delta[i] += c * (g[i] - out[i]);
      }
      for (let i = 0; i < P; i++) out[i] += delta[i];
    }
  }
}

export function createRobustAggregator(kind: 'trimmed-mean' | 'centered-clip', paramCount: number, opts: Partial<RobustOptions> = {}): StoredAggregator {
  const o = { ...DEFAULT_ROBUST, ...opts };
  return kind === 'trimmed-mean' ? new TrimmedMeanAggregator(paramCount, o) : new CenteredClipAggregator(paramCount, o);
}
