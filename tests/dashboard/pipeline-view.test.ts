// The dashboard's Pipelines panel (dashboard/src/pipeline-view.ts pipelinesView): per pipeline, which
// worker holds which blocks over [0, nLayer) with E/H marked, in-flight micro-batches, bubble and
// tokens/s, and per stage a memory bar by the stage model, from the status snapshot's numbers.
import { describe, expect, it } from 'vitest';
import { pipelinesView, simPipelineSource, stageBarsByWorker } from '../../dashboard/src/pipeline-view.ts';
import { simulate } from '../../shared/memory/simulate.ts';
import { memoryBars, workerView } from '../../dashboard/src/view.ts';
import { formPipelines } from '../../shared/memory/pipeline-plan.ts';
import { PRESETS } from '../../shared/model/config.ts';
import type { PipelineStatus, StatusSnapshot, WorkerRow } from '../../shared/protocol/dashboard.ts';

const MiB = 2 ** 20;
const small = PRESETS.small;

function worker(id: string, extra: Partial<WorkerRow> = {}): WorkerRow {
  return {
    id, backend: 'cpu', adapter: 'x', isSoftware: true, state: 'computing', role: 'stage', budgetBytes: 9 * MiB,
    plan: { role: 'stage', budgetBytes: 9 * MiB, trainableParams: 0, microBatch: 1, seqLen: 16, reason: '' },
    tasksDone: 0, samplesDone: 0, tokensDone: 0, rejected: 0, rejectedByCode: {}, tokensPerSec: 0, lastSeen: 0,
    ...extra,
  } as WorkerRow;
}

const snap = (pipelines: PipelineStatus[] | undefined, workers: WorkerRow[]): Pick<StatusSnapshot, 'pipelines' | 'workers' | 'model'> =>
  ({ pipelines, workers, model: { preset: 'small', params: 1_040_896, config: small } });

describe('dashboard pipelines view', () => {
  it('is empty without pipelines (or an older coordinator that reports none)', () => {
    expect(pipelinesView(snap(undefined, []))).toEqual([]);
    expect(pipelinesView(snap([], []))).toEqual([]);
  });

  it('places each stage over the blocks it holds, marks the ends, and shows bubble, tokens/s and in-flight micro-batches', () => {
    const p: PipelineStatus = {
      id: 'p1', inFlight: 3, microBatch: 2, bubble: 0.4, tokensPerSec: 1234.5,
      stages: [
        { workerId: 'w1', layers: [0, 1], embeddings: true, head: false, inFlight: 3 },
        { workerId: 'w2<b>', layers: [1, 3], embeddings: false, head: false, inFlight: 3 },
        { workerId: 'w3', layers: [3, 5], embeddings: false, head: true, inFlight: 2 },
      ],
    };
    const [v] = pipelinesView(snap([p], [worker('w1'), worker('w2<b>'), worker('w3')]));
    expect(v.id).toBe('p1');
    expect(v.summary).toBe('3 stages · micro-batch 2 · 3 in flight');
    expect(v.bubble).toBe('40%');
    expect(v.tokensPerSec).toBe(`${(1235).toLocaleString('en-US')} tokens/s`);
    expect(v.segments.map((s) => [s.leftPct, s.widthPct])).toEqual([[0, 20], [20, 40], [60, 40]]);
    expect(v.segments.map((s) => s.label)).toEqual(['w1 · E + block 0', 'w2<b> · blocks 1–2', 'w3 · blocks 3–4 + H']);
    expect(v.segments.map((s) => s.flight)).toEqual(['3 in flight', '3 in flight', '2 in flight']);
    // Before the first share: no measured bubble or rate.
    const fresh = pipelinesView(snap([{ ...p, tokensPerSec: 0, bubble: 0 }], []))[0];
    expect([fresh.bubble, fresh.tokensPerSec]).toEqual(['—', '—']);
  });

  it('memory bars per stage equal what the coordinator\'s planner promised for the same pipeline', () => {
    // The coordinator forms the pipeline with formPipelines; /api/status reports it; the view recomputes each stage's bytes.
    const planned = formPipelines(small, ['a', 'b', 'c'].map((id) => ({ id, budgetBytes: 9 * MiB })), { seqLen: 16, maxMicroBatch: 64 }).pipelines[0];
    const status: PipelineStatus = {
      id: 'p7', inFlight: planned.inFlight, microBatch: planned.microBatch, bubble: 0.3, tokensPerSec: 10,
      stages: planned.stages.map((s) => ({ workerId: s.workerId, layers: s.layers, embeddings: s.embeddings, head: s.head, inFlight: planned.inFlight })),
    };
    const [v] = pipelinesView(snap([status], ['a', 'b', 'c'].map((id) => worker(id))));
    expect(v.bars.map((b) => b.breakdown)).toEqual(planned.stages.map((s) => s.breakdown));
    expect(v.bars.map((b) => b.budgetBytes)).toEqual([9 * MiB, 9 * MiB, 9 * MiB]);
    for (const [i, b] of v.bars.entries()) {
      const sum = b.breakdown.weights + b.breakdown.gradients + b.breakdown.optimizer + b.breakdown.activations;
      expect(sum).toBe(planned.stages[i].paramBytes + planned.stages[i].activationBytes);
    }
    expect(v.bars[0].note).toMatch(/^p7 E \+ block 0, \d+ x 16 tokens, 3 in flight$/);
    // The cluster memory plan shows each stage worker's stage, not its hello-time plan; others keep theirs.
    const rows = ['a', 'b', 'c', 'r'].map((id) => workerView(worker(id, id === 'r'
      ? { role: 'replica', plan: { role: 'replica', budgetBytes: 9 * MiB, trainableParams: 0, microBatch: 1, seqLen: 16, reason: 'whole', breakdown: { weights: 1, gradients: 2, optimizer: 3, activations: 4 } } }
      : { layers: status.stages.find((x) => x.workerId === id)!.layers, pipeline: 'p7' })));
    const bars = memoryBars(rows, stageBarsByWorker([v]));
    const byWorker = (id: string) => planned.stages.find((x) => x.workerId === id)!;
    expect(bars.map((b) => b.breakdown)).toEqual([...['a', 'b', 'c'].map((id) => byWorker(id).breakdown), { weights: 1, gradients: 2, optimizer: 3, activations: 4 }]);
    const first = planned.stages[0].workerId;
    expect(bars.find((b) => b.key === first)!.note).toMatch(/^stage \(layer 0, pipeline p7\): p7 E \+ block 0/);
  });

  it('skips malformed stages and has no bars without the sequence length', () => {
    const p = {
      id: 'p2', inFlight: 2, microBatch: 1, bubble: 0.1, tokensPerSec: 5,
      stages: [{ workerId: 'x', layers: [0, 9], embeddings: true, head: true, inFlight: 2 }, { workerId: 'y', layers: [2, 2] }, null],
    } as unknown as PipelineStatus;
    const [v] = pipelinesView(snap([p], [worker('y')]));
    expect(v.segments).toEqual([]);
    expect(v.bars).toEqual([]);
    const ok = pipelinesView(snap([{ ...p, stages: [{ workerId: 'z', layers: [0, 5], embeddings: true, head: true, inFlight: 1 }] }], []))[0];
    expect(ok.segments).toHaveLength(1);
    expect(ok.bars).toEqual([]); // worker z unknown: no sequence length, no bar
  });

  it('the simulator page draws a simulated plan\'s pipelines the same way, with the bytes the plan assigned', () => {
    const r = simulate({ model: 'small', seq: 16, maxMicroBatch: 64, cluster: '6x9MiB@1000,1x1MiB' });
    const views = pipelinesView(simPipelineSource(r));
    expect(views).toHaveLength(2);
    const stages = r.cluster!.stages;
    for (const v of views) {
      const own = stages.filter((s) => String(s.pipeline) === v.id).sort((a, b) => a.stage - b.stage);
      expect(v.segments.map((s) => [s.workerId, s.from, s.to, s.embeddings, s.head])).toEqual(own.map((s) => [`device ${s.device}`, s.layerRange[0], s.layerRange[1], s.embeddings, s.head]));
      // Each bar is the stage's planned bytes against the device's memory.
      expect(v.bars.map((b) => b.breakdown.weights + b.breakdown.gradients + b.breakdown.optimizer + b.breakdown.activations)).toEqual(own.map((s) => s.bytes));
      expect(v.bars.map((b) => b.budgetBytes)).toEqual(own.map(() => 9 * MiB));
      expect(v.bubble).toBe('40%');
      expect(v.tokensPerSec).toMatch(/tokens\/s$/);
    }
    expect(pipelinesView(simPipelineSource(simulate({ params: 7e9, cluster: '2x70GB' })))).toEqual([]); // no config: no blocks to draw
  });

  it('the workers table shows a stage\'s blocks in its pipeline', () => {
    expect(workerView(worker('w1', { layers: [3, 5], pipeline: 'p1' })).role).toBe('stage (layers 3–4, pipeline p1)');
    expect(workerView(worker('w1', { layers: [0, 1], pipeline: 'p2' })).role).toBe('stage (layer 0, pipeline p2)');
    expect(workerView(worker('w1', { role: 'waiting', plan: { role: 'stage', budgetBytes: 1, trainableParams: 0, microBatch: 1, seqLen: 16, reason: '', layerRange: [0, 2] } })).role).toBe('waiting');
  });
});
