// The pipeline-stage messages (shared/protocol/stage.ts) through the real msgpack parser, and every
// way a decoded one can be wrong: each gets its named rejection code; and the share's relay state
// machine (coordinator/server/pipeline-relay.ts) refuses answers it did not ask for.
import { describe, expect, it } from 'vitest';
import { ShareRun } from '../../coordinator/server/pipeline-relay.ts';
import { PRESETS } from '../../shared/model/config.ts';
import { buildStageTable } from '../../shared/model/stage.ts';
import { packActivations } from '../../shared/pipeline/activation-codec.ts';
import { Decoder, Encoder, PacketType, type Packet } from '../../shared/protocol/parser.ts';
import { stageOutHeader, validateHop, validateStageOut, validateStageTask } from '../../shared/protocol/stage.ts';

const M = PRESETS.tiny;
const C = M.nEmbd;

/** Through the socket.io msgpack parser, as a message travels. */
function wire<T>(v: T): unknown {
  const [frame] = new Encoder().encode({ type: PacketType.EVENT, nsp: '/', data: ['x', v] });
  const d = new Decoder();
  let got: Packet | null = null;
  d.on('decoded', (p: Packet) => void (got = p));
  d.add(frame);
  return (got!.data as unknown[])[1];
}

const acts = (rows: number, dtype: 'fp32' | 'fp16' | 'int8' = 'fp16') => packActivations(new Float32Array(rows * C).map((_, i) => Math.sin(i)), rows, C, dtype);

describe('stage messages', () => {
  const middle = { from: 1, to: 2 };
  const stageTotal = buildStageTable(M, middle).total;
  const task = { taskId: 'n.1.2', pipelineId: 'p1', step: 1, version: 1, layers: [1, 2], index: 1, stages: 3, micros: 4, dtype: 'fp16', leaseMs: 1000 };

  it('a stage task: layers, position, dtype and the parameter slice are checked', () => {
    const ok = validateStageTask(wire({ ...task, params: new Float32Array(stageTotal) }), M);
    expect(ok.ok && ok.value.params?.length).toBe(stageTotal);
    const bad = (patch: Record<string, unknown>) => {
      const v = validateStageTask(wire({ ...task, ...patch }), M);
      return v.ok ? 'ok' : v.code;
    };
    expect(bad({ layers: [2, 1] })).toBe('OUT_OF_RANGE');
    expect(bad({ layers: [0, 2] })).toBe('OUT_OF_RANGE'); // stage 1 of 3 cannot hold the embeddings
    expect(bad({ dtype: 'bf16' })).toBe('BAD_SCHEMA');
    expect(bad({ params: new Float32Array(stageTotal - 1) })).toBe('BAD_LENGTH');
    expect(bad({ params: new Float32Array(stageTotal).fill(NaN) })).toBe('NON_FINITE');
    expect(bad({ micros: 0 })).toBe('OUT_OF_RANGE');
  });

  it('a hop: fields by stage (first: token ids, others: activations, head: targets + mask), lengths against B*T*C', () => {
    const B = 2;
    const T = 4;
    const n = B * T;
    const fwd = { taskId: 't', micro: 0, kind: 'fwd', B, T, tokens: 3 };
    const first = validateHop(wire({ ...fwd, inputs: new Int32Array(n) }), M, { from: 0, to: 1 });
    expect(first.ok).toBe(true);
    const mid = validateHop(wire({ ...fwd, acts: acts(n) }), M, middle);
    expect(mid.ok && mid.value.actsValues?.length).toBe(n * C);
    const mask = new Uint8Array(n);
    mask.set([1, 1, 1]);
    const head = validateHop(wire({ ...fwd, acts: acts(n, 'int8'), targets: new Int32Array(n), mask }), M, { from: 2, to: 3 });
    expect(head.ok).toBe(true);
    const code = (x: unknown, spec = middle) => {
      const v = validateHop(wire(x), M, spec);
      return v.ok ? 'ok' : v.code;
    };
    expect(code({ ...fwd, acts: acts(n - 1) })).toBe('BAD_LENGTH');
    expect(code({ ...fwd })).toBe('BAD_SCHEMA');
    expect(code({ ...fwd, inputs: new Int32Array(n).fill(M.vocabSize) }, { from: 0, to: 1 })).toBe('OUT_OF_RANGE');
    expect(code({ ...fwd, acts: acts(n), targets: new Int32Array(n), mask: new Uint8Array(n) }, { from: 2, to: 3 })).toBe('TOKENS_MISMATCH');
    expect(code({ ...fwd, kind: 'bwd', grad: acts(n) }, { from: 2, to: 3 })).toBe('BAD_SCHEMA');
    const inf = acts(n, 'fp32');
    new Float32Array(inf.data.buffer)[5] = Infinity;
    expect(code({ ...fwd, acts: inf })).toBe('NON_FINITE');
    expect(code({ ...fwd, kind: 'bwd', grad: { ...acts(n, 'int8'), scales: new Float32Array(n).fill(-1) } })).toBe('NON_FINITE');
  });

  it('activations that arrive as a Node Buffer view (msgpack bin, as a browser sends them) decode to their own bytes', () => {
    const x = new Float32Array(8 * C).map((_, i) => Math.cos(i));
    for (const dtype of ['fp32', 'fp16', 'int8'] as const) {
      const p = packActivations(x, 8, C, dtype);
      // As ws + msgpackr hand it over in Node: a Buffer slice of a larger pooled frame, not at offset 0.
      const pool = Buffer.alloc(p.data.length + 300, 0x7f);
      pool.set(p.data, 116);
      const data = pool.subarray(116, 116 + p.data.length);
      const v = validateStageOut({ kind: 'fwd', taskId: 't', micro: 0, acts: { ...p, data }, ms: 1 }, { rows: 8, cols: C, stageParams: 1, first: false, head: false });
      expect(v.ok, dtype).toBe(true);
      const got = v.ok ? v.value.values! : new Float32Array(0);
      let err = 0;
      for (let i = 0; i < x.length; i++) err = Math.max(err, Math.abs(got[i] - x[i]));
      expect(err, dtype).toBeLessThan(dtype === 'fp32' ? 1e-7 : 1e-2);
    }
  });

  it('a stageOut from a worker: kind, shape of its stage, finite gradient', () => {
    const s = { rows: 8, cols: C, stageParams: stageTotal, first: false, head: false };
    expect(stageOutHeader(wire({ kind: 'grad', taskId: 't' })).ok).toBe(true);
    expect(stageOutHeader(wire({ kind: 'nope', taskId: 't' })).ok).toBe(false);
    const code = (x: unknown, shape = s) => {
      const v = validateStageOut(wire(x), shape);
      return v.ok ? 'ok' : v.code;
    };
    expect(code({ kind: 'fwd', taskId: 't', micro: 0, acts: acts(8), ms: 1 })).toBe('ok');
    expect(code({ kind: 'fwd', taskId: 't', micro: 0, acts: acts(8), ms: 1 }, { ...s, head: true })).toBe('BAD_SCHEMA');
    expect(code({ kind: 'bwd', taskId: 't', micro: 0, ms: 1 })).toBe('BAD_SCHEMA'); // a middle stage owes dIn
    expect(code({ kind: 'bwd', taskId: 't', micro: 0, ms: 1, dIn: acts(8) }, { ...s, first: true })).toBe('BAD_SCHEMA');
    expect(code({ kind: 'bwd', taskId: 't', micro: 0, ms: 1, dIn: acts(8), loss: -1, tokens: 2 }, { ...s, head: true })).toBe('OUT_OF_RANGE');
    expect(code({ kind: 'grad', taskId: 't', version: 1, tokens: 3, nonFinite: 0, grads: new Float32Array(stageTotal) })).toBe('ok');
    expect(code({ kind: 'grad', taskId: 't', version: 1, tokens: 3, nonFinite: 0, grads: new Float32Array(stageTotal + 1) })).toBe('BAD_LENGTH');
    expect(code({ kind: 'grad', taskId: 't', version: 1, tokens: 3, nonFinite: 0, grads: new Float32Array(stageTotal).fill(NaN) })).toBe('NON_FINITE');
    expect(code({ kind: 'grad', taskId: 't', version: 1, tokens: 3, nonFinite: 0, grads: Array.from({ length: stageTotal }, () => 0) })).toBe('BAD_SCHEMA');
  });
});

describe('a share in flight (pipeline-relay)', () => {
  const tables = [buildStageTable(M, { from: 0, to: 1 }), buildStageTable(M, { from: 1, to: 3 })];
  const T = 4;
  const B = 6;
  const batch = { B, T, inputs: new Int32Array(B * T), targets: new Int32Array(B * T), mask: new Uint8Array(B * T).fill(1) };
  const lease = { id: 'n.0.1', step: 0, version: 0, epoch: 0, workerId: 'p1', start: 0, end: B, ids: [0, 1, 2, 3, 4, 5], issuedAt: 0, expiresAt: 1e9 };

  it('keeps inFlight micro-batches in the pipeline, relays both ways, refuses what it did not ask for', () => {
    const r = new ShareRun(lease, tables, batch, 2, 2, 0);
    expect(r.micros).toHaveLength(3);
    const first = r.admit();
    expect(first.map((o) => [o.stage, o.hop.micro, o.hop.kind])).toEqual([[0, 0, 'fwd'], [0, 1, 'fwd']]);
    const a = acts(2 * T);
    // Stage 0's output of micro 0 goes to the head with targets and mask; its input is kept.
    const toHead = r.onFwd(0, 0, a, new Float32Array(2 * T * C), 1);
    expect(Array.isArray(toHead) && toHead[0].stage === 1 && toHead[0].hop.mask?.length === 2 * T).toBe(true);
    expect(r.inputs[1][0]?.length).toBe(2 * T * C);
    // The same answer twice, or an answer from the wrong stage: refused.
    expect(r.onFwd(0, 0, a, new Float32Array(2 * T * C), 1)).toMatchObject({ code: 'UNKNOWN_TASK' });
    expect(r.onBwd(1, 1, a, new Float32Array(2 * T * C), 1, 2 * T, 1)).toMatchObject({ code: 'UNKNOWN_TASK' });
    expect(r.onBwd(1, 0, a, new Float32Array(2 * T * C), 1, 3, 1)).toMatchObject({ code: 'TOKENS_MISMATCH' });
    const back = r.onBwd(1, 0, a, new Float32Array(2 * T * C), 2.5, 2 * T, 1);
    expect(Array.isArray(back) && back[0].stage === 0 && back[0].hop.kind === 'bwd' && back[0].hop.grad === a).toBe(true);
    // Micro 0 leaves the first stage: micro 2 may enter (window of 2).
    const next = r.onBwd(0, 0, undefined, undefined, undefined, undefined, 1);
    expect(Array.isArray(next) && next.map((o) => o.hop.micro)).toEqual([2]);
    // A gradient before the stage finished every micro-batch is refused.
    expect(r.onGrad(0, new Float32Array(tables[0].total), 3 * 2 * T)).toMatchObject({ code: 'OUT_OF_RANGE' });
    expect(r.complete).toBe(false);
  });
});
