// Checkpoint reader/writer for the coordinator and for other tools (export, generate).
export * from './format.ts';
export * from './store.ts';
