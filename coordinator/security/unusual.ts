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

  /** Why this result is unusual ("cos z=7.1"), or null. */
  judge(f: Features): string | null {
    const reasons: string[] = [];
    for (const k of ['cos', 'mean', 'logNorm'] as const) {
      const x = f[k];
      const w = this.seen[k];
      if (x === null || w.length < MIN_WINDOW) continue;
      const med = median(w);
      const mad = Math.max(1.4826 * median(w.map((v) => Math.abs(v - med))), FLOOR[k]);
      const z = Math.abs(x - med) / mad;
      if (z > UNUSUAL_Z) reasons.push(`${k} z=${z.toFixed(1)}`);
    }
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
