// A minimal worker for coordinator tests: real socket.io-client with the msgpack parser, the CPU
// reference backend, the v1 protocol. Hooks let a test delay a result, go silent, or drop the
// connection mid-task. (The product worker is worker-web/; this one keeps tests independent of it.)

import { io, type Socket } from 'socket.io-client';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import { PROTOCOL_VERSION, type AckMsg, type HelloMsg, type ParamsMsg, type RejectMsg, type ResultMsg, type TaskMsg, type WaitMsg, type WelcomeMsg } from '../../shared/protocol/messages.ts';
import { validateParams, validateTask, validateWelcome } from '../../shared/protocol/validate.ts';

export interface TestWorkerOptions {
  memory?: number;
  name?: string;
  /** Before sending the result of `task`: return 'drop' to vanish (connection closed, no bye), a number to delay that many ms, or undefined. */
  beforeResult?: (task: TaskMsg, n: number) => 'drop' | number | undefined;
  /** Stop sending heartbeats (and results) after this many tasks. */
  silentAfter?: number;
  resumeId?: string;
  /** Change the result of the n-th task before it is sent (a lying worker). */
  alterResult?: (res: ResultMsg, n: number) => void;
  /** Called right after the n-th result was sent. */
  afterSend?: (task: TaskMsg, n: number) => void;
}

export interface TestWorker {
  socket: Socket;
  welcome: Promise<WelcomeMsg>;
  id(): string | undefined;
  tasks: TaskMsg[];
  acks: AckMsg[];
  rejects: RejectMsg[];
  waits: WaitMsg[];
  /** Results sent (task id -> the sample ids of that task). */
  sent: Map<string, number[]>;
  close(): void;
  bye(): void;
}

export function startTestWorker(url: string, o: TestWorkerOptions = {}): TestWorker {
  const socket = io(url, { parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true });
  const state = { id: undefined as string | undefined, version: -1, count: 0, silent: false, closed: false };
  let welcomeMsg: WelcomeMsg | undefined;
  let backend: ReturnType<typeof createCpuBackend> | undefined;
  const w: TestWorker = {
    socket,
    welcome: new Promise((resolve) => socket.once('welcome', resolve)),
    id: () => state.id,
    tasks: [],
    acks: [],
    rejects: [],
    waits: [],
    sent: new Map(),
    close() {
      state.closed = true;
      clearInterval(hb);
      socket.close();
    },
    bye() {
      state.closed = true;
      clearInterval(hb);
      socket.emit('bye', { reason: 'test' });
    },
  };
  let chain: Promise<void> = Promise.resolve();
  let hb: NodeJS.Timeout | undefined;

  socket.on('connect', () => {
    const hello: HelloMsg = {
      protocol: PROTOCOL_VERSION,
      backend: 'cpu',
      adapter: { vendor: 'test', architecture: 'cpu', description: o.name ?? 'test worker', isSoftware: true },
      limits: {},
      userCapBytes: o.memory ?? 2 ** 31,
      name: o.name,
      agent: 'test-worker/1',
      ...(o.resumeId ? { resumeId: o.resumeId } : {}),
    };
    socket.emit('hello', hello);
  });
  socket.on('welcome', (m: unknown) => {
    const v = validateWelcome(m);
    if (!v.ok) throw new Error(`test worker: bad welcome ${v.message}`);
    welcomeMsg = v.value;
    state.id = v.value.workerId;
    backend = createCpuBackend(v.value.model);
    hb = setInterval(() => {
      if (!state.silent && !state.closed) socket.emit('heartbeat', { t: Date.now(), state: 'idle' });
    }, v.value.heartbeatMs);
  });
  socket.on('params', (m: unknown) => {
    chain = chain.then(async () => {
      const v = validateParams(m, welcomeMsg!.paramCount);
      if (!v.ok) throw new Error(`test worker: bad params ${v.message}`);
      await backend!.setParams((v.value as ParamsMsg).params);
      state.version = v.value.version;
    });
  });
  socket.on('task', (m: unknown) => {
    chain = chain.then(async () => {
      if (state.silent || state.closed) return;
      const v = validateTask(m, welcomeMsg!.model);
      if (!v.ok) throw new Error(`test worker: bad task ${v.message}`);
      const t = v.value;
      w.tasks.push(t);
      const n = ++state.count;
      if (t.version !== state.version) throw new Error(`test worker: task at version ${t.version}, holding ${state.version}`);
      const g = await backend!.forwardBackward({ B: t.B, T: t.T, inputs: t.inputs, targets: t.targets, mask: t.mask });
      const action = o.beforeResult?.(t, n);
      if (action === 'drop') {
        state.closed = true;
        clearInterval(hb);
        socket.io.engine.close(); // abrupt: no bye, no disconnect packet
        return;
      }
      if (o.silentAfter !== undefined && n > o.silentAfter) {
        state.silent = true;
        return;
      }
      if (typeof action === 'number') await new Promise((r) => setTimeout(r, action));
      if (state.closed) return;
      const res: ResultMsg = {
        taskId: t.taskId, step: t.step, version: t.version, loss: g.loss, tokens: g.tokens, grads: g.grads,
        gradNorm: g.gradNorm, nonFinite: g.nonFinite, timings: g.timings,
      };
      o.alterResult?.(res, n);
      w.sent.set(t.taskId, Array.from(t.sampleIds));
      socket.emit('result', res);
      o.afterSend?.(t, n);
    });
  });
  socket.on('ack', (m: AckMsg) => w.acks.push(m));
  socket.on('reject', (m: RejectMsg) => w.rejects.push(m));
  socket.on('wait', (m: WaitMsg) => w.waits.push(m));
  return w;
}

/** Poll `cond` every 20 ms until true or `ms` passes (then throw with `what`). */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Like until() for an async condition (e.g. an HTTP poll); errors count as "not yet". */
export async function untilAsync(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** True when every result this worker sent has been answered (ack or reject). */
export function settled(w: TestWorker): boolean {
  const answered = new Set([...w.acks.map((a) => a.taskId), ...w.rejects.map((r) => r.taskId)]);
  return [...w.sent.keys()].every((id) => answered.has(id));
}
