// Fault injection for tests, the chaos suite and curious users (`--fault`). Each fault is what a
// faulty or malicious volunteer could really do; the coordinator must detect or survive all of
// them. This module says WHAT each fault does (parsing, and pure functions of the gradient and a
// seeded Rng); fault-wrappers.ts carries them out by wrapping the worker's seams.
//
//   none        honest worker
//   sign-flip   gradient negated (BTARD's sign-flip attack); norm unchanged, so only direction checks catch it
//   scale:K     gradient multiplied by K (K != 0, finite); norm reported honestly as |K| x norm
//   nan         ~1% of entries set to NaN while the worker LIES: nonFinite reported 0, norm of the rest
//   random      gradient replaced by Gaussian noise of the same L2 norm (a lazy worker that skips compute)
//   stale       keeps training on the first parameters it received (reports that old version) and
//               replays its previous result message before each new one
//   garbage     before each honest result, sends malformed messages from a catalog (wrong types,
//               truncated tensors, bad ids, out-of-range numbers, unknown events)
//   slow:MS     waits MS ms before sending each result (a straggler); a pipeline stage computes each
//               hop MS ms longer (a slow device)
// Attackers that try not to be caught (issue 17):
//   bias:EPS    adds EPS to every gradient entry (a small consistent push; norm reported honestly)
//   collude:GROUP[:NORM]  every worker of GROUP sends the SAME crafted update for a parameter
//               version: a direction seeded by (GROUP, version), norm NORM (default 1), so
//               redundancy and "agrees with the others" rules see a consensus; loss reported honestly
//   sleeper:N:KIND  honest for its first N results (through probation), then KIND (a gradient fault:
//               sign-flip, scale:K, nan, random, bias:EPS, collude:GROUP)
//   sybil:KIND  KIND (any of the above but sybil), and after every ban it rejoins under a fresh
//               identity (no resume id) instead of leaving

import { AppError } from '../../shared/errors.ts';
import { l2Norm } from '../../shared/optim/clip.ts';
import { Rng } from '../../shared/rng.ts';

export type FaultSpec =
  | { kind: 'none' }
  | { kind: 'sign-flip' }
  | { kind: 'scale'; factor: number }
  | { kind: 'nan' }
  | { kind: 'random' }
  | { kind: 'stale' }
  | { kind: 'garbage' }
  | { kind: 'slow'; ms: number }
  | { kind: 'bias'; eps: number }
  | { kind: 'collude'; group: string; norm: number }
  | { kind: 'sleeper'; after: number; then: FaultSpec }
  | { kind: 'sybil'; then: FaultSpec };

/** Faults that change only the gradient (what a sleeper can turn into). */
export const GRADIENT_FAULTS: ReadonlySet<FaultKind> = new Set(['sign-flip', 'scale', 'nan', 'random', 'bias', 'collude']);

export type FaultKind = FaultSpec['kind'];
export const FAULT_FORMS = 'none|sign-flip|scale:K|nan|random|stale|garbage|slow:MS|bias:EPS|collude:GROUP[:NORM]|sleeper:N:KIND|sybil:KIND';

/** Parses a --fault value; throws AppError ERR_WORKER_FAULT with the accepted forms. */
export function parseFault(text: string): FaultSpec {
  const t = text.trim();
  const bad = (why: string): never => {
    throw new AppError('ERR_WORKER_FAULT', `--fault "${text}": ${why}`, 400, `use one of ${FAULT_FORMS}`);
  };
  switch (t) {
    case 'none':
    case 'sign-flip':
    case 'nan':
    case 'random':
    case 'stale':
    case 'garbage':
      return { kind: t };
  }
  const composite = /^(sleeper|sybil|collude):(.*)$/.exec(t);
  if (composite) return parseComposite(composite[1], composite[2], bad);
  const m = /^(scale|slow|bias):(.*)$/.exec(t);
  if (!m) return bad('unknown fault');
  if (!/^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i.test(m[2])) return bad(`"${m[2]}" is not a number`);
  const v = Number(m[2]);
  if (m[1] === 'scale') {
    if (!Number.isFinite(v) || v === 0) return bad('scale factor must be finite and non-zero');
    return { kind: 'scale', factor: v };
  }
  if (m[1] === 'bias') {
    if (!Number.isFinite(v) || v === 0 || Math.abs(v) > 1) return bad('bias must be finite, non-zero and at most 1 in size');
    return { kind: 'bias', eps: v };
  }
  if (!Number.isInteger(v) || v < 0 || v > 3_600_000) return bad('slow delay must be an integer number of ms in [0, 3600000]');
  return { kind: 'slow', ms: v };
}

function parseComposite(kind: string, rest: string, bad: (why: string) => never): FaultSpec {
  if (kind === 'collude') {
    const m = /^([a-z0-9-]{1,32})(?::(.*))?$/i.exec(rest);
    if (!m) return bad('collude needs a group name of 1-32 letters, digits or dashes');
    const norm = m[2] === undefined ? 1 : Number(m[2]);
    if (m[2] !== undefined && !/^(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i.test(m[2])) return bad(`collude norm "${m[2]}" is not a number`);
    if (!Number.isFinite(norm) || norm <= 0) return bad('collude norm must be finite and positive');
    return { kind: 'collude', group: m[1], norm };
  }
  if (kind === 'sleeper') {
    const m = /^(\d{1,7}):(.+)$/.exec(rest);
    if (!m) return bad('sleeper needs N:KIND, e.g. sleeper:10:sign-flip');
    const then = parseFault(m[2]);
    if (!GRADIENT_FAULTS.has(then.kind)) return bad(`a sleeper turns into a gradient fault (${[...GRADIENT_FAULTS].join(', ')}), not ${then.kind}`);
    return { kind: 'sleeper', after: Number(m[1]), then };
  }
  const then = parseFault(rest);
  if (then.kind === 'sybil' || then.kind === 'none') return bad('sybil needs a fault to carry out, e.g. sybil:sleeper:2:sign-flip');
  return { kind: 'sybil', then };
}

export function formatFault(f: FaultSpec): string {
  if (f.kind === 'scale') return `scale:${f.factor}`;
  if (f.kind === 'slow') return `slow:${f.ms}`;
  if (f.kind === 'bias') return `bias:${f.eps}`;
  if (f.kind === 'collude') return f.norm === 1 ? `collude:${f.group}` : `collude:${f.group}:${f.norm}`;
  if (f.kind === 'sleeper') return `sleeper:${f.after}:${formatFault(f.then)}`;
  if (f.kind === 'sybil') return `sybil:${formatFault(f.then)}`;
  return f.kind;
}

export interface GradientReport {
  grads: Float32Array;
  gradNorm: number;
  nonFinite: number;
}

/**
 * Applies a gradient fault in place and returns what the faulty worker reports. Faults that do
 * not touch the gradient return it unchanged.
 */
export function corruptGradient(f: FaultSpec, r: GradientReport, rng: Rng, version = 0): GradientReport {
  const g = r.grads;
  switch (f.kind) {
    case 'bias':
      for (let i = 0; i < g.length; i++) g[i] += f.eps;
      return { grads: g, gradNorm: l2Norm(g), nonFinite: r.nonFinite };
    case 'collude': {
      // Same seed for every member of the group at this version: bit-identical updates.
      const shared = new Rng(fnv32(`${f.group}.${version}`));
      for (let i = 0; i < g.length; i++) g[i] = shared.normal();
      const n = l2Norm(g);
      for (let i = 0; i < g.length; i++) g[i] *= f.norm / n;
      return { grads: g, gradNorm: l2Norm(g), nonFinite: 0 };
    }
    case 'sign-flip':
      for (let i = 0; i < g.length; i++) g[i] = -g[i];
      return { grads: g, gradNorm: r.gradNorm, nonFinite: r.nonFinite };
    case 'scale':
      for (let i = 0; i < g.length; i++) g[i] *= f.factor;
      return { grads: g, gradNorm: l2Norm(g), nonFinite: r.nonFinite };
    case 'nan': {
      const n = Math.max(1, Math.floor(g.length / 100));
      for (let k = 0; k < n; k++) g[rng.int(g.length)] = NaN;
      // The norm of the finite entries (not clip.ts's l2Norm, which would be NaN): the lie.
      let s = 0;
      for (let i = 0; i < g.length; i++) if (Number.isFinite(g[i])) s += g[i] * g[i];
      return { grads: g, gradNorm: Math.sqrt(s), nonFinite: 0 };
    }
    case 'random': {
      const target = Number.isFinite(r.gradNorm) && r.gradNorm > 0 ? r.gradNorm : 1;
      for (let i = 0; i < g.length; i++) g[i] = rng.normal();
      const n = l2Norm(g);
      const k = n > 0 ? target / n : 0;
      for (let i = 0; i < g.length; i++) g[i] *= k;
      return { grads: g, gradNorm: l2Norm(g), nonFinite: 0 };
    }
    default:
      return r;
  }
}

/** 32-bit FNV-1a of a string (the colluders' shared seed). */
function fnv32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export interface GarbageMessage {
  /** What kind of malformation, for logs and chaos counters. */
  label: string;
  event: string;
  payload: unknown;
}

/**
 * Malformed variants of an honest `result` payload (field names as the protocol defines them:
 * taskId, step, version, loss, tokens, grads as a Float32Array, gradNorm, nonFinite). `count` messages are
 * drawn from the catalog, rotating so every kind is exercised.
 */
export function garbageMessages(
  honest: Record<string, unknown>,
  resultEvent: string,
  count: number,
  rng: Rng,
  startAt = 0,
): GarbageMessage[] {
  const grad = honest.grads instanceof Float32Array ? honest.grads : new Float32Array(0);
  const catalog: Array<() => GarbageMessage> = [
    () => ({ label: 'not-an-object', event: resultEvent, payload: 'hello' }),
    () => ({ label: 'missing-grads', event: resultEvent, payload: without(honest, 'grads') }),
    () => ({ label: 'grads-as-bytes', event: resultEvent, payload: { ...honest, grads: new Uint8Array(grad.buffer, grad.byteOffset, Math.max(0, grad.byteLength - 3)) } }),
    () => ({ label: 'grads-truncated', event: resultEvent, payload: { ...honest, grads: grad.slice(0, grad.length >>> 1) } }),
    () => ({ label: 'grads-as-string', event: resultEvent, payload: { ...honest, grads: 'AAAA' } }),
    () => ({ label: 'loss-nan', event: resultEvent, payload: { ...honest, loss: NaN } }),
    () => ({ label: 'tokens-negative', event: resultEvent, payload: { ...honest, tokens: -5 } }),
    () => ({ label: 'tokens-huge', event: resultEvent, payload: { ...honest, tokens: 2 ** 40 } }),
    () => ({ label: 'unknown-task', event: resultEvent, payload: { ...honest, taskId: `bogus-${rng.nextU32()}` } }),
    () => ({ label: 'task-id-wrong-type', event: resultEvent, payload: { ...honest, taskId: { $gt: '' } } }),
    () => ({ label: 'future-version', event: resultEvent, payload: { ...honest, version: 1e9 } }),
    () => ({ label: 'grad-norm-negative', event: resultEvent, payload: { ...honest, gradNorm: -1 } }),
    () => ({ label: 'unknown-event', event: 'x-not-an-event', payload: { junk: true } }),
    () => ({ label: 'random-bytes', event: resultEvent, payload: randomBytes(rng, 64) }),
    () => ({ label: 'array-payload', event: resultEvent, payload: [1, 2, 3] }),
  ];
  const out: GarbageMessage[] = [];
  for (let k = 0; k < count; k++) out.push(catalog[(startAt + k) % catalog.length]());
  return out;
}

export const GARBAGE_KINDS = 15;

function without(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const c = { ...o };
  delete c[key];
  return c;
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rng.nextU32() & 255;
  return b;
}
