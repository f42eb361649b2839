// Unit tests for the dashboard's pure pieces (no DOM): number formatting, the step history the
// charts draw, memory-bar geometry, mapping of the coordinator's pushed rows, and the simulator's
// arithmetic lines.
import { describe, it, expect } from 'vitest';
import { formatAgo, formatBytes, formatBytesDecimal, formatCount, formatInt, formatLoss } from '../../dashboard/src/format.ts';
import { History } from '../../dashboard/src/history.ts';
import { layoutBar, totals, sumBreakdown } from '../../dashboard/src/memory-bars.ts';
import { eventView, memoryBars, securityView, statusView, workerView } from '../../dashboard/src/view.ts';
import { trustText } from '../../dashboard/src/workers-table.ts';
import { arithmeticLines, churnLines, deviceBars, verdict } from '../../dashboard/src/sim-view.ts';
import { simulate } from '../../shared/memory/simulate.ts';
import { actionPath } from '../../dashboard/src/admin.ts';
import { workerUrl } from '../../dashboard/src/share.ts';
import { qrMatrix } from '../../dashboard/src/qr.ts';
import type { StatusSnapshot, WorkerRow } from '../../shared/protocol/dashboard.ts';

describe('format', () => {
  it('prints bytes with their unit, binary and decimal', () => {
    expect(formatBytes(2 * 2 ** 30)).toBe('2.00 GiB');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536 * 2 ** 20)).toBe('1.50 GiB');
    expect(formatBytesDecimal(4e9)).toBe('4.00 GB');
    expect(formatBytesDecimal(2.488796e9)).toBe('2.49 GB');
  });
  it('prints counts, integers, losses and ages', () => {
    expect(formatCount(124_439_808)).toBe('124.4M');
    expect(formatCount(1_557_611_200)).toBe('1.56B');
    expect(formatInt(1234567)).toBe('1,234,567');
    expect(formatLoss(null)).toBe('—');
    expect(formatLoss(2.345678)).toBe('2.3457');
    expect(formatAgo(10_000, 13_000)).toBe('3s ago');
    expect(formatAgo(0, 125_000)).toBe('2m ago');
  });
});

describe('History', () => {
  it('merges points by step so the initial history and live pushes can overlap', () => {
    const h = new History();
    expect(h.add([{ step: 1, loss: 5 }, { step: 2, loss: 4 }])).toBe(true);
    expect(h.add([{ step: 2, loss: 4 }])).toBe(false); // same again: nothing changes, no redraw
    expect(h.add([{ step: 2, evalLoss: 4.5, evalAccuracy: 0.1 }])).toBe(true);
    expect(h.add([{ step: 0, loss: 6 }])).toBe(true);
    const [steps, loss, evalLoss] = h.columns(['loss', 'evalLoss']);
    expect(steps).toEqual([0, 1, 2]);
    expect(loss).toEqual([6, 5, 4]);
    expect(evalLoss).toEqual([null, null, 4.5]);
    expect(h.latest('loss')).toBe(4);
    expect(h.latest('evalAccuracy')).toBe(0.1);
  });
  it('ignores malformed points and non-finite values, and caps its size', () => {
    const h = new History(3);
    h.add([{ step: Number.NaN, loss: 1 }, { step: 1, loss: Number.POSITIVE_INFINITY }, null as never]);
    expect(h.columns(['loss'])).toEqual([[1], [null]]);
    h.add([2, 3, 4, 5].map((s) => ({ step: s, loss: s })));
    expect(h.columns(['loss'])[0]).toEqual([3, 4, 5]);
  });
});

describe('memory bars', () => {
  const b = { weights: 400, gradients: 400, optimizer: 800, activations: 200 };
  it('sizes each part against the budget', () => {
    const l = layoutBar(2000, b);
    expect(sumBreakdown(b)).toBe(1800);
    expect(l.widths).toEqual({ weights: 20, gradients: 20, optimizer: 40, activations: 10 });
    expect(l.fill).toBeCloseTo(0.9);
    expect(l.over).toBe(false);
  });
  it('flags a plan over budget and keeps it inside the track', () => {
    const l = layoutBar(900, b);
    expect(l.over).toBe(true);
    const total = Object.values(l.widths).reduce((s, w) => s + w, 0);
    expect(total).toBeCloseTo(100);
  });
  it('adds up totals over workers', () => {
    const t = totals([
      { key: 'a', label: 'a', budgetBytes: 1000, breakdown: b },
      { key: 'b', label: 'b', budgetBytes: 3000, breakdown: b },
    ]);
    expect(t.budgetBytes).toBe(4000);
    expect(t.usedBytes).toBe(3600);
    expect(t.breakdown.optimizer).toBe(1600);
  });
});

function row(over: Partial<WorkerRow> = {}): WorkerRow {
  return {
    id: 'w1', name: 'laptop', backend: 'webgpu', adapter: '<img src=x onerror=alert(1)>', isSoftware: true,
    state: 'computing', role: 'replica', budgetBytes: 2 ** 30,
    plan: { role: 'replica', budgetBytes: 2 ** 30, trainableParams: 53_687_091, microBatch: 4, seqLen: 64, reason: 'holds the whole model', breakdown: { weights: 4e5, gradients: 4e5, optimizer: 8e5, activations: 1e6 } },
    tasksDone: 7, samplesDone: 28, tokensDone: 1792, rejected: 3, rejectedByCode: { LATE: 2, DUPLICATE: 1, BAD_SCHEMA: 0 },
    tokensPerSec: 123.4, lastSeen: 1000, joinedAt: 500, ...over,
  };
}

describe('view mapping', () => {
  it('keeps worker-supplied strings verbatim and lists rejection codes', () => {
    const v = workerView(row());
    expect(v.adapter).toBe('<img src=x onerror=alert(1)>');
    expect(v.software).toBe(true);
    expect(v.rejected).toBe(3);
    expect(v.rejectedCodes).toBe('LATE 2, DUPLICATE 1');
    expect(v.breakdown).toEqual({ weights: 4e5, gradients: 4e5, optimizer: 8e5, activations: 1e6 });
  });
  it('names a stage by its layer range and leaves departed workers out of the plan', () => {
    const stage = workerView(row({ id: 'w2', role: 'stage', plan: { ...row().plan, role: 'stage', layerRange: [0, 3], reason: 'holds blocks 0-2' } }));
    expect(stage.role).toBe('stage (layers 0–2)');
    const gone = workerView(row({ id: 'w3', state: 'left' }));
    const bars = memoryBars([workerView(row()), stage, gone]);
    expect(bars.map((b) => b.key)).toEqual(['w1', 'w2']);
    expect(bars[1].note).toContain('holds blocks 0-2');
  });
  it('maps the security summary: non-zero counters and codes, bans newest first, trust per worker', () => {
    expect(securityView(undefined)).toBeNull();
    const v = securityView({
      aggregate: 'trimmed-mean', verifyRate: 1, verifyTolerance: 0.05, verified: 9, mismatches: 2, verifyMs: 120, heldGradientBytes: 4096,
      counters: { rateLimited: 0, replays: 1, normOutliers: 2 },
      rejectsByCode: { LATE: 1, VERIFY_FAILED: 2, BAD_SCHEMA: 0 },
      banned: [{ id: 'w1', reason: 'old <b>ban</b>', at: 10 }, { id: 'w2', reason: '2 results failed re-computation', at: 20 }],
      trust: {
        w1: { trust: 0, verifiedOk: 0, mismatches: 2, penalty: 0, banned: true, verifyProbability: 1 },
        w3: { trust: 0.875, verifiedOk: 7, mismatches: 0, penalty: 1, banned: false, verifyProbability: 0.1 },
      },
    })!;
    expect(v.counters).toBe('replays 1, normOutliers 2');
    expect(v.rejects).toBe('VERIFY_FAILED 2, LATE 1');
    expect(v.bans.map((b) => [b.id, b.reason])).toEqual([['w2', '2 results failed re-computation'], ['w1', 'old <b>ban</b>']]);
    expect(trustText(workerView(row({ id: 'w1' }), v.trust))).toBe('banned');
    expect(trustText(workerView(row({ id: 'w3' }), v.trust))).toBe('88%');
    expect(trustText(workerView(row({ id: 'w9' }), v.trust))).toBe('—');
  });
  it('summarises a status snapshot, including the exactly-once counters', () => {
    const s = statusView({
      step: 12, epoch: 0, version: 12, loss: 3.2, lr: 3e-4, samplesTrained: 96, tokensTrained: 6144, tokensPerSec: 50,
      paused: true, finished: false, workers: [], checkpoint: { step: 10, file: 'runs/x/ckpt-10.bin', at: 1 },
      model: { preset: 'tiny', params: 101_232, config: { vocabSize: 257, contextLength: 64, nLayer: 3, nHead: 4, nEmbd: 48 } },
      eval: { step: 10, loss: 3.3, accuracy: 0.25 },
      accounting: { epoch: 0, epochSize: 512, trained: 96, doubled: 0, leased: 14, released: 1, rejectedResults: 2 },
      globalBatch: 8, uptimeSec: 30,
    } satisfies StatusSnapshot);
    expect(s.runState).toBe('paused');
    expect(s.evalAccuracy).toBe(0.25);
    expect(s.checkpointStep).toBe(10);
    expect(s.accounting).toBe('epoch 0: 96/512 trained, 0 doubled, 1 re-leased, 2 rejected');
  });
  it('maps log entries', () => {
    expect(eventView({ t: 5, level: 'warn', kind: 'reject', message: 'late result', workerId: 'w1', code: 'LATE' })).toEqual({
      time: 5, kind: 'reject', level: 'warn', code: 'LATE', workerId: 'w1', message: 'late result',
    });
  });
});

describe('simulator view (over the real simulate())', () => {
  const res = simulate({ model: 'gpt2', cluster: '2x8GiB,1x1GiB', batch: 1, seq: 512 });
  it('shows each part of the rule as params × bytes', () => {
    const lines = arithmeticLines(res);
    expect(lines[0]).toMatch(/^weights\s+124,439,808 × 4 B = 497.8 MB \(474.7 MiB\)$/);
    expect(lines[2]).toContain('× 8 B');
    expect(lines[4]).toContain('124,439,808 × 20 B/param = 2.49 GB');
    expect(lines.some((l) => l.startsWith('explicit estimate for micro-batch 1 × 512 tokens'))).toBe(true);
    expect(lines.some((l) => l.startsWith('cluster      3 device(s)'))).toBe(true);
    expect(lines.some((l) => l.startsWith('step         tokens per step'))).toBe(true);
  });
  it('states the verdict and draws one bar per device against its memory', () => {
    const v = verdict(res);
    expect(v.fits).toBe(true);
    expect(v.text).toMatch(/^Fits\. gpt2: 124,439,808 parameters need 2.49 GB/);
    const bars = deviceBars(res);
    expect(bars).toHaveLength(res.cluster!.assignments.length);
    const big = bars.find((b) => b.label.includes('8GiB'))!;
    expect(big.budgetBytes).toBe(8 * 2 ** 30);
    expect(sumBreakdown(big.breakdown)).toBe(2_488_796_160);
    expect(big.note).toMatch(/^replica/);
    const small = simulate({ model: 'gpt2', cluster: '1x1GiB' });
    expect(verdict(small).text).toMatch(/^Does not fit/);
    expect(deviceBars(simulate({ params: 1e9, cluster: '300x8GiB' })).length).toBe(200);
  });
});

describe('simulator churn summary (over the real simulate())', () => {
  it('states coverage, throughput and moved bytes, and nothing without churn', () => {
    const r = simulate({ model: 'gpt2', cluster: '6x8GiB', churn: { meanSession: '4h', meanOffline: '4h', trials: 4, seed: 7, horizon: '24h' } });
    const lines = churnLines(r);
    expect(lines[0]).toMatch(/^6 device\(s\), sessions ~4\.0 h .*each online 50\.0% of the time/);
    expect(lines[1]).toContain(`model fully covered ${(r.churn!.coveredShare * 100).toFixed(1)}% of the time`);
    expect(lines[2]).toMatch(/^expected \d+ tokens\/s \(all online: \d+ tokens\/s\)$/);
    expect(churnLines(simulate({ model: 'gpt2', cluster: '6x8GiB' }))).toEqual([]);
  });
});

describe('admin and share', () => {
  it('builds admin paths with the worker id escaped', () => {
    expect(actionPath('pause')).toBe('/api/admin/pause');
    expect(actionPath({ kick: 'w/1?x' })).toBe('/api/admin/kick/w%2F1%3Fx');
  });
  it('points the share link at /worker/, or at an advertised URL', () => {
    expect(workerUrl('http://10.0.0.2:8080')).toBe('http://10.0.0.2:8080/worker/');
    expect(workerUrl('http://localhost:8080', 'https://train.example.org/worker/')).toBe('https://train.example.org/worker/');
    expect(workerUrl('http://localhost:8080', 'javascript:alert(1)')).toBe('http://localhost:8080/worker/');
  });
});

describe('share QR code', () => {
  it('encodes the worker URL as a QR matrix with the three finder patterns', () => {
    const m = qrMatrix('http://192.168.1.20:8080/worker/');
    const n = m.length;
    expect((n - 17) % 4).toBe(0); // sizes are 21, 25, 29, ... (version v: 17 + 4v)
    expect(n).toBeLessThanOrEqual(33); // a short URL fits a small version, easy to scan
    // A finder pattern: 7x7 dark ring, light ring, 3x3 dark centre, at three corners.
    const finder = (r0: number, c0: number): boolean => {
      for (let r = 0; r < 7; r++)
        for (let c = 0; c < 7; c++) {
          const ring = r === 0 || r === 6 || c === 0 || c === 6;
          const centre = r >= 2 && r <= 4 && c >= 2 && c <= 4;
          if (m[r0 + r][c0 + c] !== (ring || centre)) return false;
        }
      return true;
    };
    expect([finder(0, 0), finder(0, n - 7), finder(n - 7, 0)]).toEqual([true, true, true]);
    expect(finder(n - 7, n - 7)).toBe(false);
    // Different URLs give different codes.
    expect(qrMatrix('http://192.168.1.21:8080/worker/')).not.toEqual(m);
  });
});

describe('held-out answers panel and playground suggestions', () => {
  it('maps an eval point to a heading, per-task lines and rows of text', async () => {
    const { evalSamplesView, suggestionPrompts } = await import('../../dashboard/src/eval-samples.ts');
    expect(evalSamplesView(null).rows).toEqual([]);
    expect(evalSamplesView({ step: 3, accuracy: 0.5 }).heading).toMatch(/first evaluation/);
    const v = evalSamplesView({
      step: 1199, accuracy: 0.965,
      tasks: [{ task: 'addition', correct: 79, total: 83, accuracy: 79 / 83 }],
      samples: [{ prompt: '12+34=', response: '46', output: '46', correct: true }, { prompt: '<b>x</b>', response: 'a', output: '', correct: false }],
    });
    expect(v.heading).toBe('After step 1,200: 96.5% exact match');
    expect(v.tasks).toEqual(['addition 95.2% (79/83)']);
    expect(v.rows).toEqual([
      { prompt: '12+34=', output: '46', want: '46', correct: true },
      { prompt: '<b>x</b>', output: '', want: 'a', correct: false }, // text, rendered with textContent
    ]);
    expect(suggestionPrompts({ task: { name: 'arith-rev(seed=1)', builtIn: true, examplePrompts: ['12+34=', '', 'rev cat='] } })).toEqual(['12+34=', 'rev cat=']);
    expect(suggestionPrompts({})).toEqual([]);
    expect(suggestionPrompts(null)).toEqual([]);
  });
});
