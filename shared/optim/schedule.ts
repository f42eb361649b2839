// Learning-rate schedule: linear warmup then cosine decay to minLr (llm.c / nanoGPT):
//   step < warmupSteps:  lr * (step + 1) / warmupSteps
//   step >= totalSteps:  minLr
//   otherwise:           minLr + 0.5 (1 + cos(pi r)) (lr - minLr),  r = (step - warmup) / (total - warmup)
// `step` is the 0-based index of the update about to be applied.

import { AppError } from '../errors.ts';

export interface LrSchedule {
  lr: number;
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
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
  return s;
}

export function lrAt(step: number, s: LrSchedule): number {
  checkSchedule(s);
  if (!Number.isInteger(step) || step < 0) {
    throw new AppError('ERR_OPTIM_CONFIG', `lr schedule: step = ${step}, expected an integer >= 0`);
  }
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (step >= s.totalSteps) return s.minLr;
  const r = (step - s.warmupSteps) / (s.totalSteps - s.warmupSteps);
  return s.minLr + 0.5 * (1 + Math.cos(Math.PI * r)) * (s.lr - s.minLr);
}
