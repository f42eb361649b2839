// The figures a re-computation is judged by, apart from where it ran (verify-worker.ts computes
// them on a verification thread; verify.ts applies the tolerance on the coordinator's loop).

export interface VerifyFigures {
  /** ||g - g_ref|| / ||g_ref||: sign flips give 2, noise ~1.4, scaling |K - 1|. */
  relErr: number;
  /** |loss - loss_ref| / max(1, |loss_ref|). */
  lossErr: number;
}

/** Compare a worker's loss and gradient with the reference's (float64 sums). */
export function compareResult(refGrads: Float32Array, refLoss: number, grads: Float32Array, loss: number): VerifyFigures {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < refGrads.length; i++) {
    const d = grads[i] - refGrads[i];
    diff += d * d;
    norm += refGrads[i] * refGrads[i];
  }
  const relErr = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-12);
  const lossErr = Math.abs(loss - refLoss) / Math.max(1, Math.abs(refLoss));
  return { relErr, lossErr };
}
