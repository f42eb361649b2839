// Part 1 (fast): a share's short last micro-batch is padded to the pipeline's micro-batch with
// mask-0 rows (one shape to compile; the tokens are unchanged), and the `stage` message carries
// that shape. Part 2 (opt-in, PIPELINE_WEBGPU_E2E=1: minutes on SwiftShader on a loaded 2-core
// machine, see docs/pipeline.md): stage workers on the WebGPU engine (Dawn; SwiftShader here, where a stage's first shape takes
// tens of seconds to compile) get their shape compiled on the `stage` message, off the lease and
// without missing heartbeats: three Node workers (`npm run worker` entry point, default backend
// webgpu) at a 1 MiB cap form one pipeline of the tiny model and train their first shares with
// nobody declared dead and the pipeline never re-formed. Counted from the outside: each worker's
// trace holds ONE welcome (a worker declared dead rejoins: a second welcome) and acks; the
// pipeline id in /api/status stays the first one (p1).
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { ShareRun } from '../../coordinator/server/pipeline-relay.ts';
import { PRESETS } from '../../shared/model/config.ts';
import { buildStageTable } from '../../shared/model/stage.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { validateStageTask } from '../../shared/protocol/stage.ts';
import { untilAsync } from './test-worker.ts';

const STEPS = 2;
// 3 rows per step with micro-batch 2: a share's last micro-batch has one row, padded to two.
const G = 3;
const procs: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'coord-pipe-webgpu-'));
afterAll(() => {
  procs.forEach((p) => p.exitCode === null && p.signalCode === null && p.kill('SIGKILL'));
  rmSync(dir, { recursive: true, force: true });
});

function events(name: string): Array<{ ev: string; taskId?: string }> {
  const f = join(dir, `${name}.trace`);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { ev: string; taskId?: string });
}

describe('one micro-batch shape per share', () => {
  it('pads the last micro-batch with mask-0 rows; the stage message carries the shape', () => {
    const M = PRESETS.tiny;
    const tables = [buildStageTable(M, { from: 0, to: 1 }), buildStageTable(M, { from: 1, to: 3 })];
    const T = 4, B = 3;
    const batch = { B, T, inputs: Int32Array.from({ length: B * T }, (_, i) => 1 + i), targets: Int32Array.from({ length: B * T }, (_, i) => 2 + i), mask: new Uint8Array(B * T).fill(1) };
    const lease = { id: 'n.0.1', step: 0, version: 0, epoch: 0, workerId: 'p1', start: 0, end: B, ids: [0, 1, 2], issuedAt: 0, expiresAt: 1e9 };
    const r = new ShareRun(lease, tables, batch, 2, 2, 0);
    const hops = r.admit().map((o) => o.hop);
    expect(hops.map((h) => [h.B, h.T, h.tokens])).toEqual([[2, T, 2 * T], [2, T, T]]);
    expect([...hops[1].inputs!]).toEqual([...batch.inputs.subarray(2 * T), 0, 0, 0, 0]);
    expect(r.micros[1].batch.mask.join('')).toBe('11110000');
    expect(r.tokens).toBe(B * T);
    const msg = { taskId: 't', pipelineId: 'p1', step: 0, version: 0, layers: [0, 1], index: 0, stages: 2, micros: 2, dtype: 'fp16', leaseMs: 1 };
    const ok = validateStageTask({ ...msg, microBatch: 2, seqLen: T }, M);
    expect(ok.ok && [ok.value.microBatch, ok.value.seqLen]).toEqual([2, T]);
    expect(validateStageTask({ ...msg, microBatch: 2 }, M)).toMatchObject({ ok: false });
    expect(validateStageTask({ ...msg, microBatch: 2, seqLen: M.contextLength + 1 }, M)).toMatchObject({ ok: false });
  });
});

describe.skipIf(!process.env.PIPELINE_WEBGPU_E2E)('pipeline stages on the WebGPU engine (Node workers)', () => {
  it('the first shares finish without a worker declared dead or the pipeline re-formed', async () => {
    const c = await startCoordinator({
      port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, seqLen: 16, globalBatch: G, maxSteps: STEPS, maxMicroBatch: 2,
      evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
    });
    const names = ['g1', 'g2', 'g3'];
    try {
      for (const n of names) {
        procs.push(spawn(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', c.url, '--memory', '1MiB', '--name', n, '--quiet',
          '--trace', join(dir, `${n}.trace`)], { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'pipe'], env: process.env }));
      }
      const get = async <T>(path: string): Promise<T> => (await fetch(c.url + path)).json() as Promise<T>;
      const ids = new Set<string>();
      await untilAsync(async () => {
        const s = await get<StatusSnapshot>('/api/status');
        for (const p of s.pipelines ?? []) ids.add(p.id);
        return s.step >= STEPS;
      }, 580_000, `${STEPS} steps`);
      const s = await get<StatusSnapshot>('/api/status');
      expect([...ids]).toEqual(['p1']);
      expect(s.pipelines!.map((p) => p.stages.length)).toEqual([3]);
      expect(s.workers.map((w) => [w.role, w.pipeline])).toEqual(names.map(() => ['stage', 'p1']));
      for (const n of names) {
        const ev = events(n);
        expect(ev.filter((e) => e.ev === 'welcome'), `${n} joined once`).toHaveLength(1);
        expect(ev.filter((e) => e.ev === 'ack').length, `${n} acknowledged`).toBeGreaterThanOrEqual(STEPS);
      }
      expect(s.samplesTrained).toBe(STEPS * G);
      expect(s.accounting.doubled).toBe(0);
    } finally {
      await c.close();
    }
  }, 600_000);
});
