// The field checkers every protocol validator is written with (validate.ts, round.ts): each
// throws `Bad` with a named rejection code and the field's path; `run` turns that into a Checked.

import type { RejectCode } from './messages.ts';

export type Checked<T> = { ok: true; value: T } | { ok: false; code: RejectCode; message: string };

export class Bad extends Error {
  constructor(
    readonly code: RejectCode,
    message: string,
  ) {
    super(message);
  }
}

/** Longest string field unless a checker is told otherwise. */
export const MAX_STRING = 256;

export function obj(x: unknown, where: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x)) {
    throw new Bad('BAD_SCHEMA', `${where}: expected an object`);
  }
  return x as Record<string, unknown>;
}

type Obj = Record<string, unknown>;

export function str(o: Obj, k: string, where: string, max?: number): string;
export function str(o: Obj, k: string, where: string, max: number, optional: boolean): string | undefined;
export function str(o: Obj, k: string, where: string, max = MAX_STRING, optional = false): string | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string') throw new Bad('BAD_SCHEMA', `${where}.${k}: expected a string`);
  if (v.length > max) throw new Bad('TOO_LARGE', `${where}.${k}: longer than ${max} characters`);
  return v;
}

export function int(o: Obj, k: string, where: string, min?: number, max?: number): number;
export function int(o: Obj, k: string, where: string, min: number, max: number, optional: boolean): number | undefined;
export function int(o: Obj, k: string, where: string, min = 0, max = Number.MAX_SAFE_INTEGER, optional = false): number | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'number') throw new Bad('BAD_SCHEMA', `${where}.${k}: expected an integer`);
  if (!Number.isFinite(v)) throw new Bad('NON_FINITE', `${where}.${k}: not finite`);
  if (!Number.isInteger(v)) throw new Bad('BAD_SCHEMA', `${where}.${k}: expected an integer, got ${v}`);
  if (v < min || v > max) throw new Bad('OUT_OF_RANGE', `${where}.${k}: ${v} outside [${min}, ${max}]`);
  return v;
}

export function num(o: Obj, k: string, where: string, min?: number, max?: number): number;
export function num(o: Obj, k: string, where: string, min: number, max: number, optional: boolean): number | undefined;
export function num(o: Obj, k: string, where: string, min = -Infinity, max = Infinity, optional = false): number | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'number') throw new Bad('BAD_SCHEMA', `${where}.${k}: expected a number`);
  if (!Number.isFinite(v)) throw new Bad('NON_FINITE', `${where}.${k}: not finite`);
  if (v < min || v > max) throw new Bad('OUT_OF_RANGE', `${where}.${k}: ${v} outside [${min}, ${max}]`);
  return v;
}

export function typed<T extends ArrayBufferView>(
  o: Obj,
  k: string,
  where: string,
  ctor: { new (...a: any[]): T; name: string },
  length?: number,
): T {
  const v = o[k];
  if (!(v instanceof ctor)) {
    throw new Bad('BAD_SCHEMA', `${where}.${k}: expected a ${ctor.name} (raw typed array via the msgpack parser)`);
  }
  const len = (v as unknown as { length: number }).length;
  if (length !== undefined && len !== length) {
    throw new Bad('BAD_LENGTH', `${where}.${k}: length ${len}, expected ${length}`);
  }
  return v;
}

export function run<T>(f: () => T): Checked<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof Bad) return { ok: false, code: e.code, message: e.message };
    return { ok: false, code: 'BAD_SCHEMA', message: `invalid message: ${(e as Error).message}` };
  }
}
