// safetensors, written and read by hand (https://github.com/huggingface/safetensors):
//   8 bytes little-endian u64 N | N bytes of JSON header (space-padded to 8-byte alignment) |
//   raw little-endian tensor data. Header: {"__metadata__": {str: str}, name: {dtype, shape,
//   data_offsets: [begin, end)}} with offsets relative to the data start, contiguous, no holes.

import { AppError } from '../../shared/errors.ts';
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits } from './fp16.ts';

export type StDtype = 'F32' | 'F16';
export const MAX_HEADER_BYTES = 100_000_000; // the reference library's limit

export interface StTensorIn {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface StTensorOut {
  name: string;
  dtype: string;
  shape: number[];
  /** Values converted to fp32 (F32, F16 and BF16 are supported). */
  data: Float32Array;
}

function err(code: string, where: string, message: string, hint?: string): AppError {
  return new AppError(code, `safetensors ${where}: ${message}`, 400, hint);
}

/** Serialize tensors (in the given order) as one safetensors file, each converted to `dtype`. */
export function writeSafetensors(tensors: StTensorIn[], dtype: StDtype, metadata: Record<string, string>): Uint8Array {
  const bytesPer = dtype === 'F32' ? 4 : 2;
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`writeSafetensors: ${t.name} shape ${JSON.stringify(t.shape)} != ${t.data.length} values (bug)`);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + n * bytesPer] };
    offset += n * bytesPer;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.length + offset);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const t of tensors) {
    if (dtype === 'F32') {
      for (let i = 0; i < t.data.length; i++, p += 4) dv.setFloat32(p, t.data[i], true);
    } else {
      for (let i = 0; i < t.data.length; i++, p += 2) {
        const v = t.data[i];
        const h = f32ToF16Bits(v);
        if ((h & 0x7c00) === 0x7c00 && Number.isFinite(v)) {
          throw new AppError('ERR_EXPORT_FP16_RANGE', `export: ${t.name}[${i}] = ${v} does not fit fp16 (max 65504)`, 400,
            'export with dtype f32');
        }
        dv.setUint16(p, h, true);
      }
    }
  }
  return out;
}

/** Parse and validate a safetensors file; `file` names it in errors. */
export function readSafetensors(bytes: Uint8Array, file: string): { metadata: Record<string, string>; tensors: Map<string, StTensorOut> } {
  if (bytes.length < 8) throw err('ERR_IMPORT_FORMAT', file, `file is ${bytes.length} bytes, too short for a header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (n < 2 || n > MAX_HEADER_BYTES || 8 + n > bytes.length) {
    throw err('ERR_IMPORT_FORMAT', file, `header length ${n} is invalid for a ${bytes.length}-byte file`, 'is this a safetensors file?');
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw err('ERR_IMPORT_FORMAT', file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw err('ERR_IMPORT_FORMAT', file, 'header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, StTensorOut>();
  const spans: Array<[number, number, string]> = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null) throw err('ERR_IMPORT_FORMAT', file, '__metadata__ is not an object');
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== 'string') throw err('ERR_IMPORT_FORMAT', file, `__metadata__.${k} is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const shapeOk = Array.isArray(t.shape) && t.shape.every((d) => Number.isInteger(d) && d >= 0);
    const offOk = Array.isArray(t.data_offsets) && t.data_offsets.length === 2 && t.data_offsets.every((d) => Number.isInteger(d) && d >= 0);
    if (typeof t !== 'object' || t === null || typeof t.dtype !== 'string' || !shapeOk || !offOk) {
      throw err('ERR_IMPORT_FORMAT', file, `tensor "${name}" needs dtype, shape and data_offsets`);
    }
    const shape = t.shape as number[];
    const [b, e] = t.data_offsets as number[];
    const per = t.dtype === 'F32' ? 4 : t.dtype === 'F16' || t.dtype === 'BF16' ? 2 : 0;
    if (!per) throw err('ERR_IMPORT_DTYPE', file, `tensor "${name}" has dtype ${t.dtype}`, 'supported: F32, F16, BF16');
    const count = shape.reduce((a, c) => a * c, 1);
    if (e < b || e > dataLen || e - b !== count * per) {
      throw err('ERR_IMPORT_FORMAT', file, `tensor "${name}" data_offsets [${b}, ${e}) do not match shape ${JSON.stringify(shape)} x ${per} bytes within ${dataLen} data bytes`);
    }
    spans.push([b, e, name]);
    const data = new Float32Array(count);
    const base = dataStart + b;
    if (per === 4) for (let i = 0; i < count; i++) data[i] = dv.getFloat32(base + 4 * i, true);
    else if (t.dtype === 'F16') for (let i = 0; i < count; i++) data[i] = f16BitsToF32(dv.getUint16(base + 2 * i, true));
    else for (let i = 0; i < count; i++) data[i] = bf16BitsToF32(dv.getUint16(base + 2 * i, true));
    tensors.set(name, { name, dtype: t.dtype, shape, data });
  }
  // The format forbids holes and overlaps: the spans must tile the data exactly.
  spans.sort((x, y) => x[0] - y[0]);
  let at = 0;
  for (const [b, e, name] of spans) {
    if (b !== at) throw err('ERR_IMPORT_FORMAT', file, `tensor "${name}" starts at ${b}, expected ${at} (hole or overlap)`);
    at = e;
  }
  if (at !== dataLen) throw err('ERR_IMPORT_FORMAT', file, `${dataLen - at} trailing bytes after the last tensor`);
  return { metadata, tensors };
}
