// Entry of every TypeScript worker thread (ts-worker.ts): Node 20 refuses a .ts file as a
// worker's main script even when the parent runs under tsx (the extension is checked before any
// loader hook), so this plain module registers tsx's ESM hooks in the new thread and then imports
// the real entry. Resolved from this file, so it works whatever the cwd, under `npx tsx`,
// `node --import tsx` and vitest alike.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.__tsEntry);
