// Round protocol (--mode diloco): every new message survives the msgpack wire and is validated at
// runtime; a bad field is refused with a named code.
import { describe, expect, it } from 'vitest';
import { encode } from '../../shared/diloco/codec.ts';
import { presetConfig, parameterCount } from '../../shared/model/config.ts';
import { packValue, unpackValue } from '../../shared/protocol/parser.ts';
import { validateDelta, validateRoundTask, validateUpdate, type RoundTaskMsg } from '../../shared/protocol/round.ts';

const model = presetConfig('tiny');
const P = parameterCount(model);
const wire = <T>(x: T): unknown => unpackValue(packValue(x));

function task(): RoundTaskMsg {
  const H = 3, B = 2, T = 8;
  return {
    taskId: 'abc.1.1', round: 1, step: 1, version: 1, H, B, T,
    inputs: new Int32Array(H * B * T).fill(5), targets: new Int32Array(H * B * T).fill(6), mask: new Uint8Array(H * B * T).fill(1),
    tokens: H * B * T, sampleIds: new Uint32Array(H * B), lrs: [1e-3, 1e-3, 1e-3],
    hyper: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1 },
    compress: 'int8', codec: { block: 256, chunk: 4096, topk: 64 }, leaseMs: 1000,
  };
}

describe('round protocol', () => {
  it('round, delta and update pass the wire and their validators', () => {
    const t = validateRoundTask(wire(task()), model);
    expect(t.ok).toBe(true);
    const delta = new Float32Array(P).map((_, i) => Math.sin(i) * 1e-3);
    for (const c of ['none', 'fp16', 'int8', 'sparse'] as const) {
      const d = validateDelta(wire({ taskId: 'abc.1.1', round: 1, version: 1, tokens: 48, loss: 2.5, delta: encode(delta, c), timings: { totalMs: 5 } }), { paramCount: P });
      expect(d.ok, JSON.stringify(d)).toBe(true);
    }
    expect(validateUpdate(wire({ round: 1, fromVersion: 0, version: 1, step: 1, update: encode(delta, 'int8') }), P).ok).toBe(true);
  });

  it('refuses bad fields with named codes', () => {
    const delta = encode(new Float32Array(P), 'int8');
    const base = { taskId: 't', round: 1, version: 1, tokens: 4, loss: 1, delta, timings: { totalMs: 1 } };
    const code = (x: unknown, codecs?: Parameters<typeof validateDelta>[1]['codecs']) => {
      const r = validateDelta(wire(x), { paramCount: P, codecs });
      return r.ok ? 'ok' : r.code;
    };
    expect(code({ ...base, delta: encode(new Float32Array(P - 1), 'int8') })).toBe('BAD_SCHEMA'); // n mismatch
    expect(code({ ...base, delta: { ...delta, q: delta.q!.subarray(1) } })).toBe('BAD_LENGTH');
    expect(code({ ...base, delta: { ...delta, scales: new Float32Array(delta.scales!.length).fill(Infinity) } })).toBe('NON_FINITE');
    expect(code({ ...base, loss: -1 })).toBe('OUT_OF_RANGE');
    expect(code({ ...base, tokens: 1.5 })).toBe('BAD_SCHEMA');
    expect(code(base, ['sparse'])).toBe('BAD_SCHEMA'); // a codec the round did not ask for
    expect(code('x')).toBe('BAD_SCHEMA');
    const t = task();
    const r = (x: unknown) => {
      const v = validateRoundTask(wire(x), model);
      return v.ok ? 'ok' : v.code;
    };
    expect(r({ ...t, lrs: [1e-3] })).toBe('BAD_LENGTH');
    expect(r({ ...t, inputs: new Int32Array(t.inputs.length).fill(9999) })).toBe('OUT_OF_RANGE');
    expect(r({ ...t, H: 0 })).toBe('OUT_OF_RANGE');
    expect(r({ ...t, compress: 'zip' })).toBe('BAD_SCHEMA');
    expect(validateUpdate(wire({ round: 1, fromVersion: 1, version: 1, step: 1, update: delta }), P).ok).toBe(false);
  });
});
