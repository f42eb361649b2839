// Runtime validators: every field's type, range, length and finiteness, with the named code.
import { describe, expect, it } from 'vitest';
import { firstNonFinite, validateHeartbeat, validateHello, validateParams, validateResult, validateTask } from '../../shared/protocol/validate.ts';
import { PRESETS } from '../../shared/model/config.ts';

const P = 10;
const result = (over: Record<string, unknown> = {}) => ({
  taskId: 't.0.1', step: 0, version: 0, loss: 2.5, tokens: 12, grads: new Float32Array(P), gradNorm: 0.1, nonFinite: 0, timings: { totalMs: 3 }, ...over,
});
const hello = (over: Record<string, unknown> = {}) => ({
  protocol: 1, backend: 'webgpu', adapter: { vendor: 'v', architecture: 'a', description: 'd', isSoftware: false }, limits: { maxBufferSize: 268435456 }, ...over,
});

describe('protocol validators', () => {
  it('accept well-formed messages', () => {
    expect(validateResult(result(), { paramCount: P })).toMatchObject({ ok: true });
    expect(validateHello(hello())).toMatchObject({ ok: true });
    expect(validateHeartbeat({ t: 1, state: 'computing' })).toMatchObject({ ok: true });
  });

  it('name the code for each defect', () => {
    const code = (r: { ok: boolean; code?: string }) => (r.ok ? 'ok' : r.code);
    const lim = { paramCount: P };
    expect(code(validateResult(null, lim))).toBe('BAD_SCHEMA');
    expect(code(validateResult(result({ grads: new Float32Array(P + 1) }), lim))).toBe('BAD_LENGTH');
    expect(code(validateResult(result({ grads: new Float64Array(P) }), lim))).toBe('BAD_SCHEMA');
    expect(code(validateResult(result({ grads: Object.assign(new Float32Array(P), { 3: Infinity }) }), lim))).toBe('NON_FINITE');
    expect(code(validateResult(result({ nonFinite: 2 }), lim))).toBe('NON_FINITE');
    expect(code(validateResult(result({ loss: NaN }), lim))).toBe('NON_FINITE');
    expect(code(validateResult(result({ loss: -0.5 }), lim))).toBe('OUT_OF_RANGE');
    expect(code(validateResult(result({ tokens: 1.5 }), lim))).toBe('BAD_SCHEMA');
    expect(code(validateResult(result({ step: -1 }), lim))).toBe('OUT_OF_RANGE');
    expect(code(validateResult(result({ taskId: 'x'.repeat(65) }), lim))).toBe('TOO_LARGE');
    expect(code(validateResult(result({ timings: { totalMs: -1 } }), lim))).toBe('OUT_OF_RANGE');
    expect(code(validateHello(hello({ protocol: 2 })))).toBe('PROTOCOL_VERSION');
    expect(code(validateHello(hello({ backend: 'tpu' })))).toBe('BAD_SCHEMA');
    expect(code(validateHello(hello({ name: 'n'.repeat(65) })))).toBe('TOO_LARGE');
    expect(code(validateHello(hello({ userCapBytes: -5 })))).toBe('OUT_OF_RANGE');
    expect(code(validateHello(hello({ adapter: { vendor: 1 } })))).toBe('BAD_SCHEMA');
    expect(code(validateHeartbeat({ t: 'now' }))).toBe('BAD_SCHEMA');
  });

  it('check what the coordinator sends against the model', () => {
    const model = PRESETS.tiny;
    const B = 2, T = 4;
    const task = (over: Record<string, unknown> = {}) => ({
      taskId: 'a', step: 0, version: 0, B, T, inputs: new Int32Array(B * T), targets: new Int32Array(B * T), mask: new Uint8Array(B * T), tokens: 0, sampleIds: new Uint32Array(B), leaseMs: 1000, ...over,
    });
    expect(validateTask(task(), model).ok).toBe(true);
    expect(validateTask(task({ inputs: new Int32Array(B * T).fill(model.vocabSize) }), model)).toMatchObject({ ok: false, code: 'OUT_OF_RANGE' });
    expect(validateTask(task({ T: model.contextLength + 1 }), model)).toMatchObject({ ok: false, code: 'OUT_OF_RANGE' });
    expect(validateTask(task({ mask: new Uint8Array(3) }), model)).toMatchObject({ ok: false, code: 'BAD_LENGTH' });
    expect(validateParams({ version: 0, step: 0, params: new Float32Array(5) }, 6)).toMatchObject({ ok: false, code: 'BAD_LENGTH' });
  });

  it('firstNonFinite finds NaN and both infinities', () => {
    expect(firstNonFinite(new Float32Array([1, 2, 3]))).toBe(-1);
    expect(firstNonFinite(new Float32Array([1, NaN]))).toBe(1);
    expect(firstNonFinite(new Float32Array([-Infinity]))).toBe(0);
  });
});
