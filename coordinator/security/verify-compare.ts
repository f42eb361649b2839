// The figures a re-computation is judged by, apart from where it ran (verify-worker.ts computes
// them on a verification thread; verify.ts applies the tolerance on the coordinator's loop).

export interface VerifyFigures {
  /** ||g - g_ref|| / ||g_ref||: sign flips give 2, noise ~1.4, scaling |K - 1|. */
  relErr: number;
  /** |loss - loss_ref| / max(1, |loss_ref|). */
  lossErr: number;
  /**
   * |mean(g - g_ref)| / rms(g_ref): a consistent push (the same small amount on every entry) that
   * the L2 error hides. Adam divides each entry by its own scale, so such a push moves the many
   * entries with tiny true gradients by ~lr per step: a bias at 1% L2 error cost 12% eval loss in
   * the chaos suite, and one at 1e-5 per entry (0.04% of the gradient's rms early on) 8.8%. Float
   * error between backends has mean ~0: WebGPU vs CPU measured 6e-10; an error proportional to
   * each entry (1e-3 relative, all one way) would give 1e-3 x mean(g)/rms(g) ~ 2e-7 on `tiny`. So
   * this is judged at tolerance / 500 (1e-4 at the default), 500x above that worst case.
   */
  biasErr: number;
}

/** The bias figure is judged at the verify tolerance divided by this. */
export const BIAS_TOLERANCE_DIVISOR = 500;

/** Compare a worker's loss and gradient with the reference's (float64 sums). */
export function compareResult(refGrads: Float32Array, refLoss: number, grads: Float32Array, loss: number): VerifyFigures {
  let diff = 0;
  let norm = 0;
  let sum = 0;
  for (let i = 0; i < refGrads.length; i++) {
    const d = grads[i] - refGrads[i];
    diff += d * d;
    sum += d;
    norm += refGrads[i] * refGrads[i];
  }
  const n = Math.max(1, refGrads.length);
  const relErr = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-12);
  const lossErr = Math.abs(loss - refLoss) / Math.max(1, Math.abs(refLoss));
  const biasErr = Math.abs(sum / n) / Math.max(Math.sqrt(norm / n), 1e-30);
  return { relErr, lossErr, biasErr };
}
