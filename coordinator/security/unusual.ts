// Contributions unlike the others are re-computed, whatever the worker's trust. A sleeper (honest
// through probation, lying later) is otherwise only sampled at the base rate, and a colluding group
// can look like a consensus to "agrees with the others" rules; but their gradients still differ
// from honest ones in simple, cheap statistics. Three features per result, each compared with the
// same feature of recently accepted results by a robust z-score (distance from the median in units
// of the median absolute deviation):
//   - cosine to the previous step's aggregate gradient (sign flips, crafted directions);
//   - mean gradient entry (a small consistent bias moves it by exactly the bias);
//   - log of the norm (scaled or crafted updates of another size).
// Unusual is not guilty: the result is re-computed (CPU cost only), and only a mismatch is punished.
// Medians of a window are robust to the minority of lies that slip into it.
// Per worker, the z-scores also accumulate (one-sided CUSUM per feature and direction): a lie that
// hides in the honest spread one result at a time (later in a run, small tasks' gradients align
// with the last aggregate only weakly, so one sign-flipped result can look ordinary) drifts its
// sender's sum up by ~z - 1/2 per result, and the sum crossing CUSUM_H re-computes its next result.
// In the chaos suite a sign-flipping sleeper got 11 lies through on single z-scores alone.

export interface Features {
  /** Cosine to the previous step's aggregate; null before the first step. */
  cos: number | null;
  mean: number;
  logNorm: number;
}

/** Accepted results remembered per feature. */
const WINDOW = 64;
/** Fewer accepted results than this: no judgement yet (probation covers new runs' first results). */
const MIN_WINDOW = 12;
/** Robust z-score above which a feature is unusual. */
export const UNUSUAL_Z = 4;
/** MAD floors, so a window of near-identical values does not flag float noise. */
const FLOOR = { cos: 0.05, mean: 1e-7, logNorm: 0.05 };
/** CUSUM slack and threshold, in z units: an honest worker's sum drifts down by the slack. */
const CUSUM_K = 0.5;
export const CUSUM_H = 5;
/** Sides watched: lower cosine only (agreeing more is not an attack); mean and norm both ways. */
const SIDES = [['cos', -1], ['mean', -1], ['mean', 1], ['logNorm', -1], ['logNorm', 1]] as const;

export function features(g: Float32Array, ref: Float32Array | null): Features {
  let sum = 0;
  let sq = 0;
  let dot = 0;
  let rsq = 0;
  for (let i = 0; i < g.length; i++) {
    const x = g[i];
    sum += x;
    sq += x * x;
    if (ref) {
      dot += x * ref[i];
      rsq += ref[i] * ref[i];
    }
  }
  const norm = Math.sqrt(sq);
  const cos = ref && norm > 0 && rsq > 0 ? dot / (norm * Math.sqrt(rsq)) : null;
  return { cos, mean: sum / Math.max(1, g.length), logNorm: Math.log(Math.max(norm, 1e-30)) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class UnusualGuard {
  private readonly seen: { cos: number[]; mean: number[]; logNorm: number[] } = { cos: [], mean: [], logNorm: [] };
  /** Per worker, one CUSUM per entry of SIDES. */
  private readonly sums = new Map<string, number[]>();

  /**
   * Why this result (of `worker`) is unusual ("cos z=7.1", "cusum cos- 5.3"), or null. Call it for
   * every result of a worker, sampled or not: each call adds to the worker's sums; a flag resets them.
   */
  judge(f: Features, worker = ''): string | null {
    const reasons: string[] = [];
    const z: Partial<Record<keyof Features, number>> = {};
    for (const k of ['cos', 'mean', 'logNorm'] as const) {
      const x = f[k];
      const w = this.seen[k];
      if (x === null || w.length < MIN_WINDOW) continue;
      const med = median(w);
      const mad = Math.max(1.4826 * median(w.map((v) => Math.abs(v - med))), FLOOR[k]);
      z[k] = (x - med) / mad;
      if (Math.abs(z[k]!) > UNUSUAL_Z) reasons.push(`${k} z=${Math.abs(z[k]!).toFixed(1)}`);
    }
    const sums = this.sums.get(worker) ?? SIDES.map(() => 0);
    SIDES.forEach(([k, dir], i) => {
      const zk = z[k];
      if (zk === undefined) return;
      sums[i] = Math.max(0, sums[i] + dir * zk - CUSUM_K);
      if (sums[i] > CUSUM_H) reasons.push(`cusum ${k}${dir < 0 ? '-' : '+'} ${sums[i].toFixed(1)}`);
    });
    this.sums.set(worker, reasons.length ? SIDES.map(() => 0) : sums);
    if (this.sums.size > 65_536) this.sums.delete(this.sums.keys().next().value as string);
    return reasons.length ? reasons.join(', ') : null;
  }

  /** An accepted result joins the reference window. */
  accept(f: Features): void {
    for (const k of ['cos', 'mean', 'logNorm'] as const) {
      const x = f[k];
      if (x === null) continue;
      const w = this.seen[k];
      w.push(x);
      if (w.length > WINDOW) w.shift();
    }
  }
}
