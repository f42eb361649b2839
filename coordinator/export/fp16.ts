// 16-bit conversions for export/import: IEEE binary16 is the one shared implementation
// (shared/diloco/fp16.ts: round to nearest even, as torch's .half() does); bf16 import is a
// 16-bit shift.

import { fromHalf, toHalf } from '../../shared/diloco/fp16.ts';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export const f32ToF16Bits: (x: number) => number = toHalf;
export const f16BitsToF32: (h: number) => number = fromHalf;

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}
