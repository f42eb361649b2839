// Wire format of the activations (and their gradients) relayed between pipeline stages: a [rows,
// cols] float matrix, one row per position (cols = C), as fp32, fp16 (IEEE binary16, round to
// nearest even, shared/diloco/fp16.ts) or int8 with one absmax scale per row (x ~ q * scale,
// scale = max|x_row| / 127, q in -127..127). Bytes per value: 4, 2, 1 (+ 4 per row for int8).
// `data` is a Uint8Array so msgpack carries it as raw bytes; decoding copies it, so an unaligned
// slice of a received message is fine.

import { decodeHalf, encodeHalf } from '../diloco/fp16.ts';
import { AppError } from '../errors.ts';

export type ActivationDtype = 'fp32' | 'fp16' | 'int8';
export const ACTIVATION_DTYPES: readonly ActivationDtype[] = ['fp32', 'fp16', 'int8'];

export interface PackedActivations {
  dtype: ActivationDtype;
  rows: number;
  cols: number;
  data: Uint8Array;
  /** int8 only: one scale per row. */
  scales?: Float32Array;
}

const BYTES: Record<ActivationDtype, number> = { fp32: 4, fp16: 2, int8: 1 };

/** Wire bytes of a [rows, cols] matrix in `dtype` (data + scales). */
export function packedBytes(rows: number, cols: number, dtype: ActivationDtype): number {
  return rows * cols * BYTES[dtype] + (dtype === 'int8' ? 4 * rows : 0);
}

function bad(message: string, hint?: string): AppError {
  return new AppError('ERR_ACTIVATIONS', `activations: ${message}`, 400, hint);
}

function checkShape(rows: unknown, cols: unknown): void {
  if (!Number.isInteger(rows) || (rows as number) < 0 || !Number.isInteger(cols) || (cols as number) <= 0) {
    throw bad(`shape [${String(rows)}, ${String(cols)}] is not a matrix shape`, 'rows >= 0 and cols > 0 integers');
  }
}

export function packActivations(x: Float32Array, rows: number, cols: number, dtype: ActivationDtype): PackedActivations {
  checkShape(rows, cols);
  if (!ACTIVATION_DTYPES.includes(dtype)) throw bad(`unknown dtype "${String(dtype)}"`, `use one of ${ACTIVATION_DTYPES.join(', ')}`);
  if (!(x instanceof Float32Array) || x.length !== rows * cols) {
    throw bad(`pack: ${x?.length} values for a [${rows}, ${cols}] matrix`, 'pass a Float32Array of rows*cols values');
  }
  if (dtype === 'fp32') return { dtype, rows, cols, data: new Uint8Array(new Float32Array(x).buffer) };
  if (dtype === 'fp16') return { dtype, rows, cols, data: new Uint8Array(encodeHalf(x).buffer) };
  const q = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let m = 0;
    for (let i = o; i < o + cols; i++) {
      const a = Math.abs(x[i]);
      if (!(a <= m)) {
        if (!Number.isFinite(a)) {
          throw new AppError('ERR_ACTIVATIONS_NONFINITE', `activations: pack int8: value ${x[i]} at row ${r}, column ${i - o}`,
            400, 'the stage diverged; int8 cannot carry NaN/Inf (fp32/fp16 do)');
        }
        m = a;
      }
    }
    const s = m / 127;
    scales[r] = s;
    if (s === 0) continue;
    const inv = 1 / s;
    for (let i = o; i < o + cols; i++) q[i] = Math.max(-127, Math.min(127, Math.round(x[i] * inv)));
  }
  return { dtype, rows, cols, data: new Uint8Array(q.buffer), scales };
}

export function unpackActivations(p: PackedActivations): Float32Array {
  const v = checkPackedActivations(p, p?.rows, p?.cols);
  const n = v.rows * v.cols;
  // Own, aligned copy. Not v.data.slice(): a Node Buffer (msgpack `bin` decoded in Node) slices to a
  // view of its pooled frame, and `.buffer` at offset 0 would then read other bytes.
  const bytes = Uint8Array.prototype.slice.call(v.data);
  if (v.dtype === 'fp32') return new Float32Array(bytes.buffer, 0, n);
  if (v.dtype === 'fp16') return decodeHalf(new Uint16Array(bytes.buffer, 0, n));
  const q = new Int8Array(bytes.buffer, 0, n);
  const out = new Float32Array(n);
  for (let r = 0; r < v.rows; r++) {
    const s = v.scales![r];
    for (let i = r * v.cols, end = i + v.cols; i < end; i++) out[i] = q[i] * s;
  }
  return out;
}

/**
 * Runtime validation of a decoded message field: dtype, the expected shape, the data length, and
 * for int8 one finite, non-negative scale per row. Throws AppError ERR_ACTIVATIONS.
 */
export function checkPackedActivations(v: unknown, rows: number, cols: number): PackedActivations {
  checkShape(rows, cols);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('expected an object {dtype, rows, cols, data, scales?}');
  const o = v as Record<string, unknown>;
  const dtype = o.dtype as ActivationDtype;
  if (!ACTIVATION_DTYPES.includes(dtype)) throw bad(`unknown dtype "${String(o.dtype)}"`, `one of ${ACTIVATION_DTYPES.join(', ')}`);
  if (o.rows !== rows || o.cols !== cols) throw bad(`shape [${String(o.rows)}, ${String(o.cols)}], expected [${rows}, ${cols}]`);
  if (!(o.data instanceof Uint8Array)) throw bad('data must be a Uint8Array (raw bytes via the msgpack parser)');
  const want = rows * cols * BYTES[dtype];
  if (o.data.length !== want) throw bad(`${dtype} data has ${o.data.length} bytes, expected ${want} for [${rows}, ${cols}]`);
  if (dtype !== 'int8') {
    if (o.scales !== undefined) throw bad(`${dtype} carries no scales`);
    return { dtype, rows, cols, data: o.data };
  }
  if (!(o.scales instanceof Float32Array)) throw bad('int8 needs scales, a Float32Array with one scale per row');
  if (o.scales.length !== rows) throw bad(`int8 has ${o.scales.length} scales, expected one per row (${rows})`);
  for (let r = 0; r < rows; r++) {
    const s = o.scales[r];
    if (!(Number.isFinite(s) && s >= 0)) throw bad(`int8 scale of row ${r} is ${s}`, 'scales are finite and >= 0');
  }
  return { dtype, rows, cols, data: o.data, scales: o.scales };
}
