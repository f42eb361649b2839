// A child process of `npm run loadtest`: `count` simulated workers, each a real socket.io client
// (msgpack parser, websocket) speaking the real protocol: hello, heartbeats, params, tasks, results
// with a valid synthetic gradient (no model compute: the coordinator is what is measured), bye.
// --mode diloco: the round protocol instead (params / update, round, delta, ack): the deltas come
// from round-deltas.ts (one real inner round per weights version and process, shared by its workers).
// What each worker was acknowledged for is recorded from the TASK it received: the sample ids are
// decoded from the rows' tokens (shared/data/synthetic.ts), cross-checked against task.sampleIds,
// and reported to the parent at the end; `discard` takes acknowledged tasks back out.
//
// argv[2]: JSON { url, count, first, computeMs, seed, mode }.

import { io, type Socket } from 'socket.io-client';
import { syntheticId } from '../../shared/data/synthetic.ts';
import { Decoder, Encoder } from '../../shared/protocol/parser.ts';
import { MAX_INCOMING_FRAME_BYTES, PROTOCOL_VERSION, type DiscardMsg, type HelloMsg, type ParamsMsg, type RejectMsg, type TaskMsg, type WaitMsg, type WelcomeMsg } from '../../shared/protocol/messages.ts';
import type { RoundTaskMsg, UpdateMsg } from '../../shared/protocol/round-messages.ts';
import { RoundDeltas } from './round-deltas.ts';

interface Opts { url: string; count: number; first: number; computeMs: number; seed: number; mode: 'sync' | 'diloco' }
const o = JSON.parse(process.argv[2]!) as Opts;

/** Wire bytes both ways, counted at the parser (what socket.io hands to / gets from the websocket). */
const wire = { sent: 0, received: 0 };
class CountingEncoder extends Encoder {
  override encode(p: Parameters<Encoder['encode']>[0]): Uint8Array[] {
    const out = super.encode(p);
    for (const b of out) wire.sent += b.byteLength;
    return out;
  }
}
class CountingDecoder extends Decoder {
  override add(chunk: unknown): void {
    if (chunk instanceof Uint8Array || chunk instanceof ArrayBuffer) wire.received += chunk.byteLength;
    super.add(chunk);
  }
}
const parser = { Encoder: CountingEncoder, Decoder: CountingDecoder, protocol: 5 };

/** One acknowledged task, as reported to the parent. */
export interface AckRecord { worker: number; step: number; taskId: string; ids: number[]; at: number }
/** One task received (diloco: what was leased, acknowledged or not; lost = leased, never acknowledged). */
export interface LeaseRecord { worker: number; step: number; ids: number[] }
export interface WorkerReport {
  welcomed: number;
  acks: AckRecord[];
  /** --mode diloco: every round task received. */
  leased: LeaseRecord[];
  /** --mode diloco: inner rounds this process computed (one per weights version and H). */
  roundsComputed: number;
  /** Time each step's first task reached this process. */
  firstTaskAt: Record<number, number>;
  rejected: number;
  rejectCodes: Record<string, number>;
  /** Tasks whose rows' decoded ids differ from task.sampleIds (must be 0). */
  idMismatches: number;
  finished: number;
  wire: { sent: number; received: number };
  errors: string[];
}

const report: WorkerReport = { welcomed: 0, acks: [], leased: [], roundsComputed: 0, firstTaskAt: {}, rejected: 0, rejectCodes: {}, idMismatches: 0, finished: 0, wire, errors: [] };
let paramCount = 0;
/** One synthetic gradient per process, perturbed per task (so no two results are byte-equal: the replay guard). */
let base: Float32Array | null = null;
let baseSumSq = 0;

function gradientFor(task: TaskMsg, worker: number): { grads: Float32Array; gradNorm: number } {
  if (!base || base.length !== paramCount) {
    base = new Float32Array(paramCount);
    let s = (o.seed * 2654435761) >>> 0;
    for (let i = 0; i < paramCount; i++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      base[i] = ((s / 2 ** 32) - 0.5) * 1e-3;
    }
    baseSumSq = 0;
    for (let i = 0; i < paramCount; i++) baseSumSq += base[i] * base[i];
  }
  // Unique first elements per (task, worker); the rest shared. Norm updated for the changed ones.
  const g = base;
  let sumSq = baseSumSq;
  let h = 2166136261;
  for (const ch of task.taskId) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  const uniq = [((h & 0xffff) / 0xffff - 0.5) * 1e-3, ((worker & 0xffff) / 0xffff - 0.5) * 1e-3, (task.step % 997) * 1e-6];
  for (let i = 0; i < uniq.length && i < g.length; i++) {
    sumSq -= g[i] * g[i];
    g[i] = uniq[i];
    sumSq += g[i] * g[i];
  }
  baseSumSq = sumSq;
  return { grads: g, gradNorm: Math.sqrt(Math.max(0, sumSq)) };
}

/** The sample ids of a task's rows, decoded from their tokens and cross-checked with its sampleIds. */
function rowIds(inputs: Int32Array, rows: number, T: number, sampleIds: Uint32Array): number[] {
  const ids: number[] = [];
  for (let b = 0; b < rows; b++) ids.push(syntheticId(inputs.subarray(b * T, b * T + 3)));
  if (ids.length !== sampleIds.length || ids.some((id, i) => id !== sampleIds[i])) report.idMismatches++;
  return ids;
}

/** --mode diloco: this process's published weights and deltas (created at the first `params`). */
let deltas: RoundDeltas | null = null;

function startWorker(index: number): Socket {
  const socket = io(o.url, { parser, transports: ['websocket'], reconnection: false, forceNew: true, timeout: 60_000, ...{ maxPayload: MAX_INCOMING_FRAME_BYTES } }); // ws's limit: see worker-client.ts workerSocketOptions
  let hb: NodeJS.Timeout | undefined;
  let welcome: WelcomeMsg | null = null;
  const sent = new Map<string, { step: number; ids: number[] }>();
  socket.on('connect', () => {
    const hello: HelloMsg = {
      protocol: PROTOCOL_VERSION,
      backend: 'cpu',
      adapter: { vendor: 'loadtest', architecture: 'synthetic', description: `loadtest worker ${index}`, isSoftware: true },
      // No GPU behind it: limits no preset's binding sizes hit (GPT-2's logits are 206 MB per row).
      limits: { maxBufferSize: 2 ** 34, maxStorageBufferBindingSize: 2 ** 34 },
      // Room for any preset (gpt2 needs ~2.5 GB at 20 bytes/param): a synthetic worker holds no model.
      userCapBytes: 2 ** 36,
      name: `load-${index}`,
      agent: 'loadtest/1',
    };
    socket.emit('hello', hello);
  });
  socket.on('connect_error', (e: Error) => {
    if (report.errors.length < 20) report.errors.push(`worker ${index}: connect_error ${e.message}`);
  });
  socket.on('welcome', (m: WelcomeMsg) => {
    welcome = m;
    paramCount = m.paramCount;
    report.welcomed++;
    // Heartbeats at the coordinator's interval, phases spread so 1,000 do not arrive together.
    const start = Math.floor(Math.random() * m.heartbeatMs);
    setTimeout(() => {
      hb = setInterval(() => socket.emit('heartbeat', { t: Date.now(), state: 'idle' }), m.heartbeatMs);
    }, start).unref();
  });
  // --mode diloco: the weights this worker holds (a round starts from exactly that version).
  let held = -1;
  socket.on('params', (m: ParamsMsg) => {
    if (o.mode !== 'diloco' || !welcome) return;
    deltas ??= new RoundDeltas(welcome.model);
    deltas.setParams(m.version, m.params);
    held = m.version;
  });
  socket.on('update', (u: UpdateMsg) => {
    if (!deltas || held !== u.fromVersion || !deltas.applyUpdate(u)) {
      if (report.errors.length < 20) report.errors.push(`worker ${index}: update ${u.fromVersion} -> ${u.version} while holding ${held}`);
      return;
    }
    held = u.version;
  });
  socket.on('round', (t: RoundTaskMsg) => {
    const now = Date.now();
    if (report.firstTaskAt[t.step] === undefined || now < report.firstTaskAt[t.step]) report.firstTaskAt[t.step] = now;
    const ids = rowIds(t.inputs, t.H * t.B, t.T, t.sampleIds);
    report.leased.push({ worker: index, step: t.step, ids });
    if (!deltas || held !== t.version) {
      if (report.errors.length < 20) report.errors.push(`worker ${index}: round ${t.round} at version ${t.version}, holding ${held}`);
      return;
    }
    const ready = deltas.deltaFor(t);
    const send = () => void ready.then((d) => {
      if (!socket.connected) return;
      sent.set(t.taskId, { step: t.step, ids });
      socket.emit('delta', { taskId: t.taskId, round: t.round, version: t.version, tokens: t.tokens, loss: d.loss, delta: d.packed, timings: { totalMs: o.computeMs } });
    }, (e: Error) => {
      if (report.errors.length < 20) report.errors.push(`worker ${index}: ${e.message}`);
    });
    if (o.computeMs > 0) setTimeout(send, o.computeMs * (0.5 + Math.random()));
    else send();
  });
  socket.on('task', (t: TaskMsg) => {
    const now = Date.now();
    if (report.firstTaskAt[t.step] === undefined || now < report.firstTaskAt[t.step]) report.firstTaskAt[t.step] = now;
    const ids = rowIds(t.inputs, t.B, t.T, t.sampleIds);
    const send = () => {
      if (!socket.connected || !welcome) return;
      const { grads, gradNorm } = gradientFor(t, index);
      sent.set(t.taskId, { step: t.step, ids });
      // emit() encodes synchronously: the shared gradient buffer may change right after.
      socket.emit('result', {
        taskId: t.taskId, step: t.step, version: t.version, loss: 2 + (index % 7) * 0.01, tokens: t.tokens, grads, gradNorm,
        nonFinite: 0, timings: { totalMs: o.computeMs },
      });
    };
    // Simulated compute: computeMs on average, uniformly 0.5x..1.5x (tabs differ), or none.
    if (o.computeMs > 0) setTimeout(send, o.computeMs * (0.5 + Math.random()));
    else setImmediate(send);
  });
  socket.on('ack', (a: { taskId: string; step: number }) => {
    const s = sent.get(a.taskId);
    if (!s) return;
    sent.delete(a.taskId);
    report.acks.push({ worker: index, step: s.step, taskId: a.taskId, ids: s.ids, at: Date.now() });
  });
  socket.on('discard', (d: DiscardMsg) => {
    const gone = new Set(d.taskIds);
    report.acks = report.acks.filter((a) => !(a.worker === index && gone.has(a.taskId)));
  });
  socket.on('reject', (r: RejectMsg) => {
    if (r.event !== 'result' && r.event !== 'delta') {
      if (report.errors.length < 20) report.errors.push(`worker ${index}: ${r.event} rejected ${r.code}: ${r.message}`);
      return;
    }
    report.rejected++;
    report.rejectCodes[r.code] = (report.rejectCodes[r.code] ?? 0) + 1;
    if (r.taskId) sent.delete(r.taskId);
  });
  socket.on('wait', (w: WaitMsg) => {
    if (w.code === 'finished') report.finished++;
    // A worker whose plan the coordinator refuses never gets work: say why, once per reason.
    else if (w.code === 'plan' && report.errors.length < 20 && !report.errors.some((e) => e.endsWith(w.reason))) {
      report.errors.push(`worker ${index}: wait (${w.code}): ${w.reason}`);
    }
  });
  socket.on('disconnect', () => clearInterval(hb));
  (socket as unknown as { stopHb: () => void }).stopHb = () => clearInterval(hb);
  return socket;
}

const sockets: Socket[] = [];
// Connect in small batches so 1,000 handshakes do not all land in one tick.
async function connectAll(): Promise<void> {
  for (let i = 0; i < o.count; i++) {
    sockets.push(startWorker(o.first + i));
    if (i % 25 === 24) await new Promise((r) => setTimeout(r, 20));
  }
}

process.on('message', (m: { op: string }) => {
  if (m.op === 'progress') process.send!({ op: 'progress', welcomed: report.welcomed, finished: report.finished, acks: report.acks.length, rejected: report.rejected });
  else if (m.op === 'stop') {
    for (const s of sockets) {
      (s as unknown as { stopHb: () => void }).stopHb();
      if (s.connected) s.emit('bye', { reason: 'loadtest done' });
    }
    setTimeout(() => {
      for (const s of sockets) s.close();
      report.roundsComputed = deltas?.computed ?? 0;
      process.send!({ op: 'report', report }, () => process.exit(0));
    }, 200);
  }
});
process.on('disconnect', () => process.exit(0));
void connectAll().then(() => process.send!({ op: 'started' }));
