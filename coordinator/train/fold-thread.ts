// A fold thread (started by fold-pool.ts through coordinator/threads/ts-worker.ts): takes result
// gradients TRANSFERRED to it (the received frame's ArrayBuffer, no copy), scans each once for
// NaN/Inf while measuring its sum of squares (and, when asked, its SHA-256 for the replay guard),
// holds it until the coordinator has judged it, then folds accepted ones into this thread's OWN
// float64 accumulator (a SharedArrayBuffer, up to FOLD_BATCH results per pass). At step end each
// thread sums a parameter range of every thread's accumulator into the shared output.

import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { firstNonFinite } from '../../shared/protocol/validate.ts';
import type { FoldReply, FoldRequest } from './fold-pool.ts';
import { FOLD_BATCH, foldPending } from './aggregate.ts';

const port = parentPort;
if (!port) throw new Error('fold-thread.ts runs as a worker thread (coordinator/train/fold-pool.ts)');
const acc = new Float64Array((workerData as { acc: SharedArrayBuffer }).acc);
const held = new Map<number, Float32Array>();
let pending: Array<{ g: Float32Array; t: number; id: number }> = [];
const returnBuffers = (workerData as { returnBuffers?: boolean }).returnBuffers === true;

/**
 * Sum of squares with two independent accumulators over the two halves (the one-accumulator loop
 * of validate.ts waits for each add; this runs ~1.5x faster here out of cache). Finite iff every
 * value is (see validate.ts sumOfSquares: 2^31 squares of finite float32 stay finite).
 */
function sumOfSquares2(a: Float32Array): number {
  const h = a.length >> 1;
  const lo = a.subarray(0, h);
  const hi = a.subarray(h, 2 * h);
  let s0 = 0;
  let s1 = 0;
  for (let i = 0; i < lo.length; i++) {
    s0 += lo[i] * lo[i];
    s1 += hi[i] * hi[i];
  }
  if (a.length & 1) s1 += a[a.length - 1] * a[a.length - 1];
  return s0 + s1;
}

function fold(): void {
  const p = pending;
  foldPending(acc, p);
  pending = [];
  for (const x of p) giveBack(x.g);
}

function reply(r: FoldReply, g?: Float32Array): void {
  port!.postMessage(r);
  if (g) giveBack(g);
}

/** Benchmarks reuse their frames: the buffer goes back once nothing here reads it any more. */
function giveBack(g: Float32Array): void {
  if (returnBuffers) port!.postMessage({ op: 'buffer', id: 0, buf: g.buffer }, [g.buffer as ArrayBuffer]);
}

port.on('message', (m: FoldRequest) => {
  switch (m.op) {
    case 'check': {
      const g = new Float32Array(m.buf, m.offset, m.length);
      const ss = sumOfSquares2(g);
      if (!Number.isFinite(ss)) {
        const index = firstNonFinite(g);
        reply({ op: 'checked', id: m.id, ok: false, index, value: String(g[index]) }, g);
        return;
      }
      held.set(m.id, g);
      const digest = m.digest ? createHash('sha256').update(new Uint8Array(g.buffer, g.byteOffset, g.byteLength)).digest('base64') : undefined;
      reply({ op: 'checked', id: m.id, ok: true, norm: Math.sqrt(ss), ...(digest !== undefined ? { digest } : {}) });
      return;
    }
    case 'fold': {
      const g = held.get(m.id);
      if (!g) throw new Error(`fold-thread: fold of unknown result ${m.id} (bug)`);
      held.delete(m.id);
      // Acknowledged as counted at once: folding waits for FOLD_BATCH results (or a flush), and
      // this thread handles messages in order, so a later flush/finish sees it folded.
      reply({ op: 'folded', id: m.id });
      if (m.tokens > 0) pending.push({ g, t: m.tokens, id: m.id });
      else giveBack(g);
      if (pending.length >= FOLD_BATCH) fold();
      return;
    }
    case 'drop': {
      const g = held.get(m.id);
      held.delete(m.id);
      reply({ op: 'dropped', id: m.id }, g);
      return;
    }
    case 'flush':
      if (pending.length) fold();
      reply({ op: 'flushed', id: m.id });
      return;
    case 'zero':
      if (pending.length) throw new Error('fold-thread: zero with results not folded (bug)');
      acc.fill(0);
      reply({ op: 'zeroed', id: m.id });
      return;
    case 'finish': {
      const out = new Float32Array(m.out);
      const accs = m.accs.map((b) => new Float64Array(b));
      const inv = m.inv;
      if (accs.length === 2) {
        const a0 = accs[0], a1 = accs[1];
        for (let i = m.lo; i < m.hi; i++) out[i] = (a0[i] + a1[i]) * inv;
      } else {
        for (let i = m.lo; i < m.hi; i++) {
          let s = 0;
          for (const a of accs) s += a[i];
          out[i] = s * inv;
        }
      }
      reply({ op: 'finished', id: m.id });
      return;
    }
    case 'fail':
      throw new Error('fold-thread: failure requested (tests)');
  }
});
