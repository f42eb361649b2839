// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): if ||g|| > maxNorm, scale g
// by maxNorm / (||g|| + 1e-6). Returns the PRE-clip norm (what training logs report).

import { AppError } from '../errors.ts';

/** L2 norm with float64 accumulation. */
export function l2Norm(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

export function clipGradNorm(grads: Float32Array, maxNorm: number): number {
  if (!(maxNorm > 0)) {
    throw new AppError('ERR_OPTIM_CONFIG', `clipGradNorm: maxNorm = ${maxNorm} is invalid, expected a number > 0`,
      400, 'use Infinity to disable clipping');
  }
  const norm = l2Norm(grads);
  // A non-finite norm is left for the caller to reject; scaling by 0 or NaN would hide it.
  if (Number.isFinite(norm) && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (let i = 0; i < grads.length; i++) grads[i] *= scale;
  }
  return norm;
}
