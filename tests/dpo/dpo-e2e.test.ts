// DPO end to end (issue 16): a coordinator with --objective dpo, two product Node workers on the
// CPU backend (worker-web/client: the replica handler's preference compute step), real sockets.
// Start: tests/dpo/start-tiny, the `tiny` model trained on the built-in task's addition by
// tests/dpo/make-start-model.ts. Data: tests/dpo/make-preferences.ts (correct sums chosen over
// off-by-one ones, prompts of the task's train split). Judged from the outside:
//  - preference accuracy on the held-out pairs, computed by THIS file (its own log-softmax over
//    the CPU model's logits) on the start weights and on the weights GET /api/export serves, must
//    rise to >= 0.9, and GET /api/status must report the same figure (objective "dpo"); the
//    same on every held-out addition of the built-in task with both off-by-one answers (400
//    pairs of prompts neither stage trained on: a less noisy measure) is reported and must not
//    fall by more than 2 points. The start model is ALREADY above 0.9 (0.933 on the 60 pairs,
//    0.930 on the 400): a start below 0.9 that DPO lifts above it was not found (docs/dpo.md);
//  - greedy exact match on the built-in task's held-out additions, computed here too, must not fall
//    by more than 5 points;
//  - exactly once: the pairs the workers were acknowledged for (their audit traces: each row's
//    first tokens name its prompt) cover every step's batch, no prompt twice;
//  - results were re-computed by the coordinator (--verify-rate) and none disagreed;
//  - a checkpointed run resumes in dpo mode with the same reference and continues.

import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { importModel, importSafetensors } from '../../coordinator/export/import.ts';
import { arithRevPairs } from '../../shared/data/index.ts';
import { preferenceDataset } from '../../shared/data/preference-data.ts';
import type { PreferenceRow } from '../../shared/data/preference-rows.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { CpuGpt } from '../../shared/model/cpu/gpt.ts';
import { greedyAnswer } from '../../shared/model/local-train.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { EOS_ID, encode } from '../../shared/tokenizer.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import type { TraceEvent } from '../../worker-web/client/trace.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { offByOnePreferences, toJsonl } from './make-preferences.ts';

const root = mkdtempSync(join(tmpdir(), 'dpo-e2e-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const START_DIR = fileURLToPath(new URL('./start-tiny', import.meta.url));
const model = presetConfig('tiny');
const T = 16;
const SEED = 1;
const PAIRS = 1200;
const STEPS = 20;
const BATCH = 32;
const rows = offByOnePreferences(PAIRS, 3);
const prefsFile = join(root, 'prefs.jsonl');
writeFileSync(prefsFile, toJsonl(rows));
/** The coordinator's held-out split of the file (a seeded 5%: 60 pairs), never trained on. */
const heldOut = preferenceDataset(rows, 'prefs.jsonl', { T, seed: SEED }).held;
const arithHeldOut = arithRevPairs(1, 200, 6000, ['addition']).heldOut;
/** Every held-out addition of the built-in task with both off-by-one answers rejected (400 pairs). */
const arithPairs: PreferenceRow[] = arithHeldOut.flatMap((p) => [1, -1].map((o) => ({ prompt: p.prompt, chosen: p.response, rejected: String(Number(p.response) + o) })));

/** log pi(response + EOS | prompt), from the CPU model's logits with this file's own log-softmax. */
function sequenceLogProb(gpt: CpuGpt, params: Float32Array, prompt: string, response: string): number {
  const ids = [...encode(prompt), ...encode(response), EOS_ID];
  const n = ids.length - 1;
  gpt.forward(params, { B: 1, T: n, inputs: Int32Array.from(ids.slice(0, n)), targets: Int32Array.from(ids.slice(1)), mask: new Uint8Array(n).fill(1) });
  const logits = gpt.logits();
  const V = model.vocabSize;
  let lp = 0;
  for (let t = encode(prompt).length - 1; t < n; t++) {
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[t * V + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[t * V + v] - max);
    lp += logits[t * V + ids[t + 1]] - max - Math.log(s);
  }
  return lp;
}

function preferenceAccuracy(params: Float32Array, pairs: PreferenceRow[]): number {
  const gpt = new CpuGpt(model);
  let right = 0;
  for (const p of pairs) if (sequenceLogProb(gpt, params, p.prompt, p.chosen) > sequenceLogProb(gpt, params, p.prompt, p.rejected)) right++;
  return right / pairs.length;
}

function exactMatch(params: Float32Array): number {
  return arithHeldOut.filter((p) => greedyAnswer(model, params, p.prompt, T) === p.response).length / arithHeldOut.length;
}

async function servedParams(c: CoordinatorHandle): Promise<Float32Array> {
  const res = await fetch(c.url + '/api/export/model.safetensors');
  expect(res.status).toBe(200);
  return importSafetensors(new Uint8Array(await res.arrayBuffer()), 'GET /api/export/model.safetensors', model).params;
}

const base = {
  port: 0, host: '127.0.0.1', preset: 'tiny', logLevel: 'silent', objective: 'dpo', data: prefsFile, initFrom: START_DIR,
  reference: 'init', seqLen: T, seed: SEED, globalBatch: BATCH, lr: 5e-5, minLr: 5e-5, warmupSteps: 0, dpoBeta: 0.1,
  heartbeatMs: 250, deadAfterMs: 5000, adminToken: 'dpo-e2e-token',
} as const;

function workers(c: CoordinatorHandle, trace: TraceEvent[][]): WorkerClient[] {
  return [0, 1].map((i) => {
    trace[i] = [];
    return new WorkerClient({
      url: c.url, name: `dpo${i}`, seed: i + 1, log: () => undefined, trace: (e) => trace[i].push(e),
      host: createCpuHost({ description: 'test cpu', probedBytes: 256 * 2 ** 20 }),
    });
  });
}

async function untilFinished(c: CoordinatorHandle, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!c.trainer.finished) {
    if (Date.now() - t0 > ms) throw new Error(`dpo run: not finished in ${ms} ms (step ${c.trainer.step})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Prompt of a traced row (its first tokens: the prompt bytes up to '='). */
function promptOf(head: number[]): string {
  const s = String.fromCharCode(...head);
  return s.slice(0, s.indexOf('=') + 1);
}

describe('--objective dpo end to end', () => {
  it(`${STEPS} steps on ${PAIRS} off-by-one pairs raise held-out preference accuracy to >= 0.9, exact match holds, exactly once`, async () => {
    const start = importModel(START_DIR).params;
    const startAcc = preferenceAccuracy(start, heldOut);
    const startArith = preferenceAccuracy(start, arithPairs);
    const startEm = exactMatch(start);
    const c = await startCoordinator({ ...base, runDir: join(root, 'run'), maxSteps: STEPS, evalEvery: STEPS, checkpointEvery: 0, verifyRate: 0.2, resume: false });
    const trace: TraceEvent[][] = [];
    const ws = workers(c, trace);
    try {
      for (const w of ws) await w.start();
      await untilFinished(c, 120_000);
      // The last evaluation runs after the last step (afterStep): wait for it.
      const t0 = Date.now();
      let s: StatusSnapshot = c.ctx.status();
      while (s.eval?.step !== STEPS - 1 && Date.now() - t0 < 30_000) {
        await new Promise((r) => setTimeout(r, 50));
        s = (await (await fetch(c.url + '/api/status')).json()) as StatusSnapshot;
      }
      const endParams = await servedParams(c);
      const endAcc = preferenceAccuracy(endParams, heldOut);
      const endArith = preferenceAccuracy(endParams, arithPairs);
      const endEm = exactMatch(endParams);
      console.log(`dpo e2e: held-out preference accuracy ${startAcc.toFixed(3)} -> ${endAcc.toFixed(3)} (status ${s.eval?.preferenceAccuracy}; `
        + `${heldOut.length} pairs), on the ${arithPairs.length} held-out additions ${startArith.toFixed(3)} -> ${endArith.toFixed(3)}, `
        + `reward margin ${s.eval?.rewardMargin?.toFixed(4)}, dpo loss ${s.eval?.loss.toFixed(4)}, exact match ${startEm.toFixed(3)} -> ${endEm.toFixed(3)} `
        + `(status ${s.eval?.accuracy}), verified ${s.security?.verified} mismatches ${s.security?.mismatches}`);
      expect(s.objective).toBe('dpo');
      expect(s.eval).toMatchObject({ step: STEPS - 1, pairs: heldOut.length });
      expect(endAcc).toBeGreaterThanOrEqual(0.9);
      expect(endAcc).toBeGreaterThan(startAcc);
      expect(endArith).toBeGreaterThanOrEqual(startArith - 0.02);
      expect(s.eval!.preferenceAccuracy).toBeCloseTo(endAcc, 10);
      expect(s.eval!.rewardMargin).toBeGreaterThan(0);
      expect(endEm).toBeGreaterThanOrEqual(startEm - 0.05);
      expect(s.eval!.accuracy).toBeCloseTo(endEm, 10);
      // Exactly once, from the workers' side: acknowledged pairs minus discarded ones.
      const prompts = new Map<string, number>();
      let pairs = 0;
      for (const t of trace) {
        const rowsOf = new Map<string, number[][]>();
        const discarded = new Set<string>();
        for (const e of t) if (e.ev === 'task') rowsOf.set(e.taskId, e.heads); else if (e.ev === 'discard') e.taskIds.forEach((id) => discarded.add(id));
        for (const e of t) {
          if (e.ev !== 'ack' || discarded.has(e.taskId)) continue;
          const heads = rowsOf.get(e.taskId)!;
          for (let r = 0; r < heads.length; r += 2) {
            expect(promptOf(heads[r])).toBe(promptOf(heads[r + 1])); // chosen and rejected of one prompt
            const p = promptOf(heads[r]);
            prompts.set(p, (prompts.get(p) ?? 0) + 1);
            pairs++;
          }
        }
      }
      expect(pairs).toBe(STEPS * BATCH);
      expect(Math.max(...prompts.values())).toBe(1);
      expect(s.accounting.doubled).toBe(0);
      expect(s.security!.verified).toBeGreaterThan(0);
      expect(s.security!.mismatches).toBe(0);
    } finally {
      for (const w of ws) w.stop('test over');
      await c.close();
    }
  }, 240_000);

  it('resumes from a checkpoint in dpo mode: the same reference (the starting weights, not the checkpoint), training continues', async () => {
    const runDir = join(root, 'resume');
    const data = join(root, 'prefs-small.jsonl'); // 240 pairs: the reference pass runs at each start
    writeFileSync(data, toJsonl(offByOnePreferences(240, 5)));
    const c1 = await startCoordinator({ ...base, data, runDir, maxSteps: 3, evalEvery: 0, checkpointEvery: 3, verifyRate: 0 });
    const ws1 = workers(c1, []);
    let ref1: Float32Array;
    try {
      for (const w of ws1) await w.start();
      await untilFinished(c1, 60_000);
      ref1 = c1.trainer.preferences!.reference.train;
    } finally {
      for (const w of ws1) w.stop('test over');
      await c1.close();
    }
    const c2 = await startCoordinator({ ...base, data, runDir, maxSteps: 6, evalEvery: 0, checkpointEvery: 0, verifyRate: 0 });
    const ws2 = workers(c2, []);
    try {
      expect(c2.resumedFrom).toMatch(/ckpt-000000003/);
      expect(c2.trainer.step).toBe(3);
      expect(c2.trainer.objective).toBe('dpo');
      expect(Buffer.from(c2.trainer.preferences!.reference.train.buffer).equals(Buffer.from(ref1.buffer))).toBe(true);
      for (const w of ws2) await w.start();
      await untilFinished(c2, 60_000);
      const s = c2.ctx.status();
      expect(s.step).toBe(6);
      expect(s.samplesTrained).toBe(6 * BATCH);
      expect(s.accounting.doubled).toBe(0);
    } finally {
      for (const w of ws2) w.stop('test over');
      await c2.close();
    }
  }, 120_000);
});
