// DiLoCo rounds (docs/diloco.md): codecs for what rounds send, the outer Nesterov optimizer, and
// the inner round (H local AdamW steps) shared by workers, the coordinator's verifier and tests.
export * from './codec.ts';
export * from './fp16.ts';
export * from './inner.ts';
export * from './outer.ts';
