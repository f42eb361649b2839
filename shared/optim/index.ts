// Optimizer pieces used by the coordinator's trainer: AdamW, clipping, LR schedule.
export * from './adamw.ts';
export * from './clip.ts';
export * from './schedule.ts';
