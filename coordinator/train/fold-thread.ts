// A fold thread (started by fold-threads.ts through coordinator/threads/ts-worker.ts): takes
// accepted result gradients, either STAGED (a copy the main thread's finite scan wrote into this
// thread's memory: folded in place) or TRANSFERRED to it (the received frame's ArrayBuffer, no
// copy), and folds them into this thread's OWN float64 accumulator, `batch` per pass, with the SIMD
// kernels (shared/simd) when this runtime has them. The accumulator lives in a shared memory
// the main thread made, so at step end every thread can sum a parameter range of all of them.
// Progress and failure are published in a shared Int32Array (fold-threads.ts ctl slots) that the
// main thread waits on with Atomics.wait: the aggregator API stays synchronous.

import { parentPort, workerData } from 'node:worker_threads';
import { GradientKernels } from '../../shared/simd/gradient-kernels.ts';
import { foldPending } from './aggregate.ts';
import { CTL, type FoldThreadData, type FoldThreadRequest } from './fold-threads.ts';

const port = parentPort;
if (!port) throw new Error('fold-thread.ts runs as a worker thread (coordinator/train/fold-threads.ts)');
const data = workerData as FoldThreadData;
const ctl = new Int32Array(data.ctl);
const base = data.index * CTL.SLOTS;
const kernels = data.memory ? GradientKernels.create(data.paramCount, 'shared', data.memory) : null;
const acc = kernels ? kernels.acc : new Float64Array(data.accBuffer, 0, data.paramCount);
let pending: Array<{ g: Float32Array; t: number }> = [];

function fold(): void {
  if (kernels) kernels.fold(pending);
  else foldPending(acc, pending);
  const n = pending.length;
  pending = [];
  Atomics.add(ctl, base + CTL.FOLDED, n);
  Atomics.notify(ctl, base + CTL.FOLDED);
}

function done(seq: number): void {
  Atomics.store(ctl, base + CTL.SEQ, seq);
  Atomics.notify(ctl, base + CTL.SEQ);
}

function handle(m: FoldThreadRequest): void {
  switch (m.op) {
    case 'add':
      pending.push({ g: new Float32Array(m.buf, m.offset, m.length), t: m.tokens });
      if (pending.length >= data.batch) fold();
      return;
    case 'addStaged':
      // A copy the main thread's scan wrote into this memory: folded in place (no copy, no free).
      if (!kernels) throw new Error('a staged gradient reached a thread without the SIMD kernels (bug)');
      pending.push({ g: kernels.view(m.offset, data.paramCount), t: m.tokens });
      if (pending.length >= data.batch) fold();
      return;
    case 'flush':
      if (pending.length) fold();
      return done(m.seq);
    case 'zero':
      // Dropped, but counted: the main thread frees a staging slot once FOLDED passes its ticket.
      Atomics.add(ctl, base + CTL.FOLDED, pending.length);
      pending = [];
      acc.fill(0);
      return done(m.seq);
    case 'finish': {
      const out = new Float32Array(m.out);
      const accs = m.accs.map((b) => new Float64Array(b, 0, data.paramCount));
      const inv = m.inv;
      if (accs.length === 1) {
        const a0 = accs[0];
        for (let i = m.lo; i < m.hi; i++) out[i] = a0[i] * inv;
      } else if (accs.length === 2) {
        const a0 = accs[0], a1 = accs[1];
        for (let i = m.lo; i < m.hi; i++) out[i] = (a0[i] + a1[i]) * inv;
      } else {
        for (let i = m.lo; i < m.hi; i++) {
          let s = 0;
          for (const a of accs) s += a[i];
          out[i] = s * inv;
        }
      }
      return done(m.seq);
    }
    case 'fail':
      throw new Error('failure requested (tests)');
  }
}

port.on('message', (m: FoldThreadRequest) => {
  try {
    handle(m);
  } catch (e) {
    // Published before the thread dies: the main thread may be blocked in Atomics.wait, where no
    // 'error' event reaches it.
    port.postMessage({ error: (e as Error).message });
    Atomics.store(ctl, base + CTL.FAILED, 1);
    Atomics.notify(ctl, base + CTL.SEQ);
    Atomics.notify(ctl, base + CTL.FOLDED);
    throw e;
  }
});
Atomics.store(ctl, base + CTL.READY, 1);
Atomics.notify(ctl, base + CTL.READY);
