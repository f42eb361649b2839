// Learning-rate schedule: linear warmup then cosine decay to minLr (llm.c / nanoGPT):
//   step < warmupSteps:  lr * (step + 1) / warmupSteps
//   step >= totalSteps:  minLr
//   otherwise:           minLr + 0.5 (1 + cos(pi r)) (lr - minLr),  r = (step - warmup) / (total - warmup)
// or, with stableSteps > 0, warmup-stable-decay (WSD): the peak is held until stableSteps, then
//   lr + (minLr - lr) (step - stableSteps) / (totalSteps - stableSteps)   (linear to minLr at totalSteps).
// WSD is an option (--stable-fraction), measured on the built-in task in docs/model.md ("Teaching the
// built-in task"); the default stays the cosine.
// `step` is the 0-based index of the update about to be applied.

import { AppError } from '../errors.ts';

export interface LrSchedule {
  lr: number;
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
  /** WSD: last step (exclusive) at the peak, in warmupSteps..totalSteps; 0 / unset = cosine. */
  stableSteps?: number;
}

export function checkSchedule(s: LrSchedule): LrSchedule {
  const bad = (msg: string) => {
    throw new AppError('ERR_OPTIM_CONFIG', `lr schedule: ${msg}`);
  };
  if (!(s.lr >= 0 && Number.isFinite(s.lr))) bad(`lr = ${s.lr}, expected a finite number >= 0`);
  if (!(s.minLr >= 0 && s.minLr <= s.lr)) bad(`minLr = ${s.minLr}, expected 0 <= minLr <= lr (${s.lr})`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) bad(`warmupSteps = ${s.warmupSteps}, expected an integer >= 0`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < s.warmupSteps) {
    bad(`totalSteps = ${s.totalSteps}, expected an integer >= warmupSteps (${s.warmupSteps})`);
  }
  const st = s.stableSteps ?? 0;
  if (st !== 0 && (!Number.isInteger(st) || st < s.warmupSteps || st > s.totalSteps)) {
    bad(`stableSteps = ${st}, expected 0 (cosine) or an integer in warmupSteps..totalSteps (${s.warmupSteps}..${s.totalSteps})`);
  }
  return s;
}

/** The schedule of a run: total = decaySteps, WSD holding the peak for stableFraction of it (0 = cosine). */
export function runSchedule(o: { lr: number; minLr: number; warmupSteps: number; stableFraction?: number }, total: number): LrSchedule {
  const warmupSteps = Math.min(o.warmupSteps, total);
  const frac = o.stableFraction ?? 0;
  const stableSteps = frac > 0 ? Math.max(warmupSteps, Math.round(frac * total)) : 0;
  return checkSchedule({ lr: o.lr, minLr: Math.min(o.minLr, o.lr), warmupSteps, totalSteps: total, stableSteps });
}

export function lrAt(step: number, s: LrSchedule): number {
  checkSchedule(s);
  if (!Number.isInteger(step) || step < 0) {
    throw new AppError('ERR_OPTIM_CONFIG', `lr schedule: step = ${step}, expected an integer >= 0`);
  }
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (step >= s.totalSteps) return s.minLr;
  const st = s.stableSteps ?? 0;
  if (st > 0) return step < st ? s.lr : s.lr + ((s.minLr - s.lr) * (step - st)) / (s.totalSteps - st);
  const r = (step - s.warmupSteps) / (s.totalSteps - s.warmupSteps);
  return s.minLr + 0.5 * (1 + Math.cos(Math.PI * r)) * (s.lr - s.minLr);
}
