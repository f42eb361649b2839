// Chaos harness: a real coordinator (child process, so it can be kill -9'd) and real Node workers
// (child processes, `worker-web/node/main.ts --backend cpu --fault F`) on loopback. A scenario
// trains the tiny preset for a few steps while the harness kills workers, starts new ones, freezes
// one (SIGSTOP: a hung tab), kills the coordinator at random moments, plants a torn checkpoint,
// and fuzzes the socket endpoint with malformed messages. Samples trained / lost / doubled are
// counted independently (accounting.ts): from what each worker was acknowledged for (its --trace
// file), decoded from self-describing rows on this side; the coordinator's own counters and its
// final checkpoint's ledger are then compared with that count and must agree. Other figures come
// from the coordinator's status, its checkpoint files (re-verified here) and the exit codes.
// A scenario with `mode: 'diloco'` trains in DiLoCo rounds (steps = rounds): the same kills,
// attackers on deltas, and the round accounting of accounting.ts countRounds().
// Why this file is long: one scenario runner with its process, kill and fuzz helpers; the pieces
// share the scenario's state (children, ports, run directory) and are used nowhere else.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import { readCheckpoint } from '../../coordinator/checkpoint/format.ts';
import { listCheckpoints } from '../../coordinator/checkpoint/store.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { garbageMessages } from '../../worker-web/client/faults.ts';
import { Rng } from '../../shared/rng.ts';
import { buildMicroBatch, loadDataFile } from '../../shared/data/index.ts';
import { TRACE_HEAD } from '../../worker-web/client/trace.ts';
import { countIndependently, countRounds, decodeSampleId, parseTrace, writeChaosData, type Restart } from './accounting.ts';
import { attackerOutcome, type AttackerOutcome } from './attackers.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const ADMIN = 'chaos-admin-token';

export interface Scenario {
  name: string;
  /** Honest workers. */
  honest: number;
  /** One worker per entry, with that --fault (<= 25% of all workers). */
  attackers: string[];
  steps: number;
  globalBatch: number;
  aggregate?: 'mean' | 'trimmed-mean' | 'centered-clip';
  verifyRate?: number;
  /** kill -9 of the coordinator, at random steps; it is restarted on the same port and run dir. */
  coordinatorKills?: number;
  /** kill -9 of random honest workers mid-task; each is replaced by a new worker. */
  workerKills?: number;
  /** SIGSTOP one honest worker for longer than dead-after, then SIGCONT (it must rejoin by itself). */
  freeze?: boolean;
  /** Malformed messages sent by raw socket.io clients. */
  fuzz?: number;
  /** Fuzzing connections open at once (each under the per-connection rate limit; default 1). */
  fuzzParallel?: number;
  /** Attackers are expected to be banned (default true; false for a bias below the verify tolerance, which cannot be told from float error). */
  expectBans?: boolean;
  /** Before each restart, write a torn checkpoint newer than the newest valid one. */
  plantTorn?: boolean;
  seed?: number;
  /**
   * Judge the final loss against the clean run (default true). Robust rules' results depend on
   * how each step was split into tasks, which depends on timing: two clean trimmed-mean runs landed
   * 6% apart, so their rows are reported, not judged.
   */
  judgeLoss?: boolean;
  /**
   * A task not returned within this many ms is re-leased (default 1500: tiny tasks take ~0.1 s;
   * diloco 15000: a round is H of them, and a lease always missed is never measured).
   */
  leaseMs?: number;
  /** Give up after this long. */
  timeoutMs?: number;
  /** --mode diloco: `steps` are rounds of `innerSteps` (default 4) micro-batches of 4 rows per worker. */
  mode?: 'sync' | 'diloco';
  innerSteps?: number;
  compress?: 'none' | 'fp16' | 'int8' | 'sparse';
}

export interface AttackerFigure {
  fault: string;
  name: string;
  banned: boolean;
  /** Identities of this worker that were banned (a Sybil has several). */
  bans: number;
  /** How it was caught: rejection codes it drew, and the ban reason. */
  detectedBy: string;
  /** What it got through (attackers.ts), from its own trace. */
  outcome: AttackerOutcome;
}

export interface ChaosFigures {
  scenario: string;
  mode: 'sync' | 'diloco';
  aggregate: string;
  verifyRate: number;
  judgeLoss: boolean;
  expectBans: boolean;
  workersStarted: number;
  workersKilled: number;
  workersJoined: number;
  frozen: number;
  coordinatorKills: number;
  coordinatorCrashes: number;
  checkpointsWritten: number;
  checkpointsCorrupt: number;
  tornPlanted: number;
  tornSkipped: number;
  samplesExpected: number;
  /** Independent count (accounting.ts): from the workers' acknowledgements, decoded here. */
  samplesTrained: number;
  samplesLost: number;
  samplesDoubled: number;
  /** Acknowledged rows that did not decode to a sample id (must be 0). */
  samplesUndecodable: number;
  /** Steps whose independent sample count is not the global batch ("step: n"). */
  badSteps: string[];
  /** The coordinator's own books, compared with the independent count. */
  coordinator: { samplesTrained: number; doubled: number; ledger: number | null };
  /** Every coordinator figure equals the independent one. */
  countsAgree: boolean;
  /** Re-computations run, and those triggered by an unusual result rather than sampling. */
  verified: number;
  unusual: number;
  malformedSent: number;
  malformedAnswered: number;
  attackers: AttackerFigure[];
  finalLoss: number | null;
  evalLoss: number | null;
  stepsDone: number;
  seconds: number;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** node + tsx loader, no npx shim (one process per child: kill -9 hits the real one). */
function tsNode(script: string, args: string[], log: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (b: Buffer) => {
    log.push(b.toString());
    if (log.length > 400) log.splice(0, log.length - 400);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return child;
}

class Coordinator {
  child: ChildProcess | null = null;
  expectedExit = false;
  crashes = 0;
  readonly log: string[] = [];

  constructor(
    readonly port: number,
    readonly runDir: string,
    readonly args: string[],
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.expectedExit = false;
    const child = tsNode('coordinator/main.ts', ['--port', String(this.port), '--host', '127.0.0.1', '--run-dir', this.runDir, ...this.args], this.log);
    this.child = child;
    child.once('exit', (code, sig) => {
      if (!this.expectedExit) {
        this.crashes++;
        this.log.push(`coordinator exited unexpectedly: code ${code} signal ${sig}`);
      }
    });
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      if (child.exitCode !== null) throw new Error(`coordinator exited at start:\n${this.log.join('').slice(-2000)}`);
      try {
        const r = await fetch(this.url + '/healthz');
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error('coordinator did not start within 60 s');
  }

  kill9(): void {
    this.expectedExit = true;
    this.child?.kill('SIGKILL');
  }

  async waitExit(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise((r) => c.once('exit', r));
  }

  async stop(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.expectedExit = true;
    this.child.kill('SIGTERM');
    const done = this.waitExit();
    const t = setTimeout(() => this.child?.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(t);
  }

  async status(): Promise<StatusSnapshot | null> {
    try {
      const r = await fetch(this.url + '/api/status', { signal: AbortSignal.timeout(5000) });
      return r.ok ? ((await r.json()) as StatusSnapshot) : null;
    } catch {
      return null;
    }
  }
}

interface WorkerProc {
  name: string;
  fault: string;
  child: ChildProcess;
  log: string[];
  killed: boolean;
}

/** `parallel` fuzzing loops at once (each its own connections), then one oversized message. */
async function fuzz(url: string, count: number, rng: Rng, parallel = 1): Promise<[number, number]> {
  const share = (k: number) => Math.floor(count / parallel) + (k < count % parallel ? 1 : 0);
  const parts = await Promise.all(Array.from({ length: parallel }, (_, k) => fuzzLoop(url, share(k), new Rng(rng.nextU32()))));
  let [sent, answered] = parts.reduce(([a, b], [x, y]) => [a + x, b + y], [0, 0]);
  // One message over the size limit: the transport closes the connection.
  const big = io(url, { parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((r) => big.once("connect", () => r()));
  const closed = new Promise<boolean>((res) => {
    big.once('disconnect', () => res(true));
    setTimeout(() => res(false), 5000);
  });
  big.emit('result', { taskId: 'huge', grads: new Float32Array(8 << 20) });
  sent++;
  if (await closed) answered++;
  big.close();
  return [sent, answered];
}

/** Malformed messages on raw connections, 8 per connection: returns [sent, answered with reject or disconnect]. */
async function fuzzLoop(url: string, count: number, rng: Rng): Promise<[number, number]> {
  let sent = 0;
  let answered = 0;
  const perConnection = 8;
  while (sent < count) {
    // The fuzzer runs while the schedule kills and restarts the coordinator: retry a refused
    // connection for a while (the restarted coordinator listens on the same port).
    let s = io(url, { parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true });
    for (let attempt = 0; ; attempt++) {
      const ok = await new Promise<boolean>((res) => {
        s.once('connect', () => res(true));
        s.once('connect_error', () => res(false));
        setTimeout(() => res(false), 5000);
      });
      if (ok) break;
      s.close();
      if (attempt >= 60) throw new Error('fuzzer could not connect for 30 s');
      await sleep(500);
      s = io(url, { parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true });
    }
    let rejects = 0;
    let disconnected = false;
    s.on('reject', () => rejects++);
    s.on('disconnect', () => (disconnected = true));
    // Half the connections stay unwelcomed (NOT_WELCOMED), the rest say hello first.
    const welcomed = sent % (2 * perConnection) >= perConnection;
    if (welcomed) {
      s.emit('hello', { protocol: 1, backend: 'cpu', adapter: { vendor: 'fuzz', architecture: 'x', description: '<script>alert(1)</script>', isSoftware: true }, limits: {}, userCapBytes: 2 ** 30, name: 'fuzzer' });
      await sleep(100);
    }
    const honest = { taskId: `fuzz-${rng.nextU32()}`, step: 0, version: 0, loss: 1, tokens: 4, grads: new Float32Array(16), gradNorm: 0, nonFinite: 0, timings: { totalMs: 1 } };
    const n = Math.min(perConnection, count - sent);
    const batch = garbageMessages(honest, 'result', n, rng, sent);
    let sentHere = 0;
    for (const g of batch) {
      if (disconnected) break;
      (s.emit as (e: string, ...a: unknown[]) => void)(g.event, g.payload);
      sentHere++;
      await sleep(20);
    }
    const deadline = Date.now() + 3000;
    while (rejects < sentHere && !disconnected && Date.now() < deadline) await sleep(20);
    sent += sentHere;
    answered += disconnected ? sentHere : Math.min(rejects, sentHere);
    s.close();
    if (sentHere === 0) sent += n; // the connection was refused outright: those count as answered
    if (sentHere === 0) answered += n;
  }
  return [sent, answered];
}

export async function runScenario(sc: Scenario, say: (s: string) => void = () => {}): Promise<ChaosFigures> {
  const t0 = Date.now();
  const rng = new Rng(sc.seed ?? 7);
  const runDir = mkdtempSync(join(tmpdir(), `chaos-${sc.name.replace(/[^a-z0-9]+/gi, '-')}-`));
  // Self-describing data and the workers' traces live beside the run dir, not in it.
  const auditDir = mkdtempSync(join(tmpdir(), 'chaos-audit-'));
  const dataFile = join(auditDir, 'data.jsonl');
  const DATA_SIZE = 1000; // 5% held out: 950 train samples, more than any run takes (no epoch wrap)
  const diloco = sc.mode === 'diloco';
  const H = sc.innerSteps ?? 4;
  // Diloco: every worker that ever joins may take H x 4 rows a round.
  const most = diloco ? sc.steps * (sc.honest + sc.attackers.length + (sc.workerKills ?? 0)) * H * 4 : sc.steps * sc.globalBatch;
  if (most > 900) throw new Error(`chaos: up to ${most} samples exceed one epoch of the audit data`);
  writeChaosData(dataFile, DATA_SIZE, 1);
  const restarts: Restart[] = [];
  const port = await freePort();
  const args = [
    '--data', dataFile, '--seq-len', '16',
    '--preset', 'tiny', '--global-batch', String(sc.globalBatch), '--max-steps', String(sc.steps), '--seed', '1',
    // Diloco: --lr is the inner AdamW rate of every worker's H steps; at 1e-2 an honest round with
    // fresh moments can overshoot its own data (the loss score's blind spot:
    // coordinator/security/delta-judge.ts), so rounds train at the rate the benches use.
    '--lr', diloco ? '3e-3' : '1e-2', '--min-lr', diloco ? '3e-4' : '1e-3', '--warmup-steps', '3', '--checkpoint-every', '2', '--keep-checkpoints', '100',
    '--eval-every', String(sc.steps), '--eval-samples', '64', '--lease-ms', String(sc.leaseMs ?? (diloco ? 15_000 : 1500)), '--heartbeat-ms', '300',
    '--dead-after-ms', '2000', '--max-micro-batch', '4', '--admin-token', ADMIN, '--log-level', process.env.CHAOS_KEEP ? 'info' : 'warn',
    '--aggregate', sc.aggregate ?? 'mean', '--verify-rate', String(sc.verifyRate ?? 0.1),
    ...(diloco ? ['--mode', 'diloco', '--inner-steps', String(H), '--compress', sc.compress ?? 'int8', '--round-grace-ms', '1000', '--min-workers', String(sc.honest)] : []),
  ];
  const coord = new Coordinator(port, runDir, args);
  const workers: WorkerProc[] = [];
  let started = 0;
  const spawnWorker = (fault: string, name: string): WorkerProc => {
    const log: string[] = [];
    const child = tsNode('worker-web/node/main.ts', ['--url', coord.url, '--backend', 'cpu', '--fault', fault, '--name', name, '--seed', String(++started), '--quiet',
      '--trace', join(auditDir, `${name}.jsonl`)], log);
    const w: WorkerProc = { name, fault, child, log, killed: false };
    child.once('exit', (code, sig) => {
      if (sig !== 'SIGKILL') say(`  worker ${name} exited (code ${code}, signal ${sig}): ${log.join('').trim().split('\n').slice(-3).join(' / ').slice(0, 400)}`);
    });
    workers.push(w);
    return w;
  };
  const fig: ChaosFigures = {
    scenario: sc.name, mode: sc.mode ?? 'sync', aggregate: sc.aggregate ?? 'mean', verifyRate: sc.verifyRate ?? 0.1, judgeLoss: sc.judgeLoss ?? true, expectBans: sc.expectBans ?? true, workersStarted: 0, workersKilled: 0, workersJoined: 0, frozen: 0, coordinatorKills: 0, coordinatorCrashes: 0,
    checkpointsWritten: 0, checkpointsCorrupt: 0, tornPlanted: 0, tornSkipped: 0, samplesExpected: sc.steps * sc.globalBatch, samplesTrained: 0,
    samplesLost: 0, samplesDoubled: 0, samplesUndecodable: 0, badSteps: [], coordinator: { samplesTrained: 0, doubled: 0, ledger: null }, countsAgree: false, verified: 0, unusual: 0, malformedSent: 0, malformedAnswered: 0, attackers: [], finalLoss: null, evalLoss: null,
    stepsDone: 0, seconds: 0,
  };
  const banned = new Map<string, string>(); // worker name -> reason
  const bannedIds = new Map<string, string>(); // banned id -> worker name
  const codesByName = new Map<string, Set<string>>();
  const banById = new Map<string, string>(); // every banned id seen -> reason
  const observe = (s: StatusSnapshot) => {
    const nameOf = new Map(s.workers.map((w) => [w.id, w.name ?? w.id]));
    for (const b of s.security?.banned ?? []) {
      banById.set(b.id, b.reason);
      const name = nameOf.get(b.id) ?? bannedIds.get(b.id) ?? b.id;
      banned.set(name, b.reason);
      bannedIds.set(b.id, name);
    }
    for (const w of s.workers) {
      const set = codesByName.get(w.name ?? w.id) ?? new Set<string>();
      for (const [code, n] of Object.entries(w.rejectedByCode)) if (n > 0) set.add(code);
      codesByName.set(w.name ?? w.id, set);
    }
  };

  try {
    await coord.start();
    for (let i = 0; i < sc.honest; i++) spawnWorker('none', `honest-${i}`);
    sc.attackers.forEach((f, i) => spawnWorker(f, `attacker-${i}-${f.replace(/[^a-z0-9]/gi, '')}`));
    // Chaos schedule: at which step each action fires (spread over the run, seeded).
    const at = (k: number) => Array.from({ length: k }, (_, i) => Math.max(1, Math.floor(((i + 1) * sc.steps) / (k + 1)) + rng.int(2) - 1));
    const coordKillSteps = at(sc.coordinatorKills ?? 0);
    // Worker kills between the coordinator kills (offset by a third of the spacing).
    const workerKillSteps = at(sc.workerKills ?? 0).map((x) => Math.min(sc.steps - 2, x + Math.max(1, Math.floor(sc.steps / (3 * ((sc.workerKills ?? 0) + 1))))));
    let freezeStep = sc.freeze ? Math.max(1, Math.floor(sc.steps / 3)) : -1;
    let fuzzed = !(sc.fuzz && sc.fuzz > 0);
    let lastStep = -1;
    let fuzzing: Promise<void> = Promise.resolve();
    const deadline = t0 + (sc.timeoutMs ?? 600_000);
    for (;;) {
      if (Date.now() > deadline) throw new Error(`scenario ${sc.name}: timed out at step ${lastStep}\n${coord.log.join('').slice(-3000)}`);
      const s = await coord.status();
      if (!s) {
        await sleep(200);
        continue;
      }
      observe(s);
      lastStep = s.step;
      if (s.finished && s.eval && s.eval.step === sc.steps - 1) break;
      if (!fuzzed && s.step >= 1) {
        // The fuzzer runs beside the schedule, not before it: awaited here it took longer than a
        // short run on a quiet machine, so the kills below were never reached.
        fuzzed = true;
        fuzzing = fuzz(coord.url, sc.fuzz!, new Rng(rng.nextU32()), sc.fuzzParallel ?? 1).then(([sent, answered]) => {
          [fig.malformedSent, fig.malformedAnswered] = [sent, answered];
          say(`  fuzz: ${sent} malformed messages, ${answered} answered`);
        });
      }
      if (workerKillSteps.length && s.step >= workerKillSteps[0]) {
        workerKillSteps.shift();
        // A worker that holds a lease right now: killed mid-task.
        const busy = new Set(s.workers.filter((w) => w.state === 'computing').map((w) => w.name));
        const honest = workers.filter((w) => w.fault === 'none' && !w.killed && w.child.exitCode === null);
        const victim = honest.find((w) => busy.has(w.name)) ?? honest[rng.int(honest.length)];
        if (victim) {
          // Kill it just after a task reached it (its trace is written synchronously, in socket
          // order): every ack before that task is then in its trace, and its answer to this task
          // cannot have been acknowledged. Killed at any other moment, an ack in flight would be
          // trained by the coordinator but missing from the worker's own account.
          await freshTask(join(auditDir, `${victim.name}.jsonl`), 10_000);
          victim.child.kill('SIGKILL');
          victim.killed = true;
          fig.workersKilled++;
          const nw = spawnWorker('none', `${victim.name}-r${fig.workersKilled}`);
          fig.workersJoined++;
          say(`  step ${s.step}: kill -9 worker ${victim.name} (mid-task: ${busy.has(victim.name)}), started ${nw.name}`);
        }
      }
      if (freezeStep >= 0 && s.step >= freezeStep) {
        const honest = workers.filter((w) => w.fault === 'none' && !w.killed && w.child.exitCode === null);
        const victim = honest[0];
        if (victim) {
          victim.child.kill('SIGSTOP');
          say(`  step ${s.step}: SIGSTOP ${victim.name} (hung tab) for 4 s`);
          setTimeout(() => victim.child.kill('SIGCONT'), 4000);
          fig.frozen++;
        }
        freezeStep = -1;
      }
      if (coordKillSteps.length && s.step >= coordKillSteps[0]) {
        coordKillSteps.shift();
        // A random moment inside the step (0..400 ms after we saw it begin).
        await sleep(rng.int(400));
        coord.kill9();
        await coord.waitExit();
        fig.coordinatorKills++;
        say(`  step ~${s.step}: kill -9 coordinator`);
        if (sc.plantTorn) {
          // What a crash mid-write could leave if the write were not atomic: a newer, truncated file.
          const newest = listCheckpoints(runDir)[0];
          const step = (newest?.step ?? 0) + 1;
          writeFileSync(join(runDir, `ckpt-${String(step).padStart(9, '0')}.vtc`), Buffer.from('VTCK torn write'));
          writeFileSync(join(runDir, `ckpt-${String(step).padStart(9, '0')}.vtc.tmp-99999`), Buffer.alloc(1000));
          fig.tornPlanted++;
        }
        const logFrom = coord.log.length;
        const startedAt = Date.now();
        await coord.start();
        const r = await coord.status();
        if (!r) throw new Error('restarted coordinator gave no status');
        restarts.push({ startedAt, resumedStep: r.step });
        // The restarted coordinator must say it skipped the torn file (main.ts prints a WARNING).
        if (sc.plantTorn && /corrupt checkpoint skipped/i.test(coord.log.slice(logFrom).join(''))) fig.tornSkipped++;
        say(`  restarted at step ${r?.step}`);
      }
      await sleep(150);
    }
    await fuzzing;
    const s = (await coord.status())!;
    observe(s);
    fig.stepsDone = s.step;
    fig.coordinator.samplesTrained = s.samplesTrained;
    fig.coordinator.doubled = s.accounting.doubled;
    fig.verified = s.security?.verified ?? 0;
    fig.unusual = (s.security?.counters as Record<string, number> | undefined)?.unusual ?? 0;
    fig.finalLoss = s.loss;
    fig.evalLoss = s.eval?.loss ?? null;
    await coord.stop();
    // Re-verify every checkpoint the coordinator wrote (checksums), and the newest one's ledger:
    // every sample of each epoch it covers trained exactly once.
    const planted = new Set<string>();
    let owedAtEnd = new Set<number>();
    for (const { file } of listCheckpoints(runDir)) {
      try {
        const d = readCheckpoint(file);
        fig.checkpointsWritten++;
        // The final checkpoint's coverage ledger (bitsets per epoch): the coordinator's record.
        if (d.meta.step === sc.steps) fig.coordinator.ledger = d.meta.ledger.epochs.reduce((a, e) => a + e.count, 0);
        // Diloco: the rows it still owes (returned by workers that missed a round) when it ended.
        if (d.meta.step === sc.steps && d.meta.diloco) owedAtEnd = sampleLabels(dataFile, d.meta.diloco.owed.map(([, id]) => id));
      } catch {
        planted.add(file);
      }
    }
    // Corrupt files that are not the ones we planted would be the coordinator's fault.
    fig.checkpointsCorrupt = Math.max(0, planted.size - fig.tornPlanted);
    fig.coordinatorCrashes = coord.crashes;
    fig.workersStarted = started;
    // The independent count, then the coordinator's books against it.
    const traces = workers.map((w) => join(auditDir, `${w.name}.jsonl`)).map((f) => (existsSync(f) ? parseTrace(readFileSync(f, 'utf8')) : []));
    const rounds = diloco ? countRounds(traces, restarts, sc.steps, owedAtEnd) : null;
    const ind = rounds ?? countIndependently(traces, restarts, sc.steps, sc.globalBatch);
    if (rounds) fig.samplesExpected = rounds.handed;
    fig.samplesTrained = ind.trained;
    fig.samplesLost = ind.lost;
    fig.samplesDoubled = ind.doubled;
    fig.samplesUndecodable = ind.undecodable;
    fig.badSteps = ind.badSteps;
    fig.countsAgree = fig.coordinator.samplesTrained === ind.trained && fig.coordinator.doubled === ind.doubled && fig.coordinator.ledger === ind.trained;
    workers.forEach((w, i) => {
      if (w.fault === 'none') return;
      // Its identities from its own trace (welcomes): a worker banned and gone before a status
      // poll saw it listed is still matched to its ban.
      const ids = new Set(traces[i].flatMap((e) => (e.ev === 'welcome' ? [e.workerId] : [])));
      const reason = banned.get(w.name) ?? [...ids].map((id) => banById.get(id)).find((r) => r !== undefined);
      const codes = [...(codesByName.get(w.name) ?? [])].join(',');
      const bans = Math.max([...bannedIds.values()].filter((n) => n === w.name).length, [...ids].filter((id) => banById.has(id)).length);
      fig.attackers.push({ fault: w.fault, name: w.name, banned: reason !== undefined, bans, detectedBy: `${codes}${reason ? ` | ${reason}` : ''}`, outcome: attackerOutcome(w.fault, traces[i], ind.folded[i]) });
    });
  } finally {
    for (const w of workers) {
      if (w.child.exitCode === null) {
        w.child.kill('SIGCONT');
        w.child.kill('SIGKILL');
      }
    }
    await coord.stop().catch(() => {});
    if (coord.child && coord.child.exitCode === null) coord.child.kill('SIGKILL');
    // CHAOS_KEEP=1 keeps the run dir and the workers' traces for a post-mortem.
    if (process.env.CHAOS_KEEP) {
      writeFileSync(join(auditDir, 'coordinator.log'), coord.log.join(''));
      say(`  kept: run dir ${runDir}, traces and coordinator.log ${auditDir}`);
    }
    else {
      rmSync(runDir, { recursive: true, force: true });
      rmSync(auditDir, { recursive: true, force: true });
    }
  }
  fig.seconds = Math.round((Date.now() - t0) / 1000);
  return fig;
}

export function lossDelta(f: ChaosFigures, clean: ChaosFigures): number | null {
  if (f.evalLoss === null || clean.evalLoss === null) return null;
  return (f.evalLoss - clean.evalLoss) / clean.evalLoss;
}

/** The clean run with the same aggregator and mode (robust rules train differently even without attackers). */
export function cleanFor(f: ChaosFigures, rows: ChaosFigures[]): ChaosFigures {
  return rows.find((r) => r.scenario.startsWith('clean') && r.aggregate === f.aggregate && r.mode === f.mode) ?? rows[0];
}

/** The chaos table, one row per scenario; losses against the clean run of the same aggregator. */
export function formatTable(rows: ChaosFigures[], cleanRows: ChaosFigures[] = rows): string {
  const head = ['scenario', 'workers killed/joined', 'frozen', 'samples once/lost/doubled', 'coord kills survived', 'ckpt valid/corrupt (torn skipped/planted)', 'malformed sent/answered', 'coord crashes', 'attackers banned', 'eval loss (vs clean)', 's'];
  const lines = rows.map((f) => {
    const d = lossDelta(f, cleanFor(f, cleanRows));
    const att = f.attackers.length ? f.attackers.map((a) => `${a.fault}:${a.banned ? 'banned' : 'not banned'}`).join(' ') : '-';
    return [
      f.scenario,
      `${f.workersKilled}/${f.workersJoined}`,
      String(f.frozen),
      `${f.samplesTrained}/${f.samplesLost}/${f.samplesDoubled}`,
      String(f.coordinatorKills),
      `${f.checkpointsWritten}/${f.checkpointsCorrupt} (${f.tornSkipped}/${f.tornPlanted})`,
      `${f.malformedSent}/${f.malformedAnswered}`,
      String(f.coordinatorCrashes),
      att,
      `${f.evalLoss?.toFixed(4) ?? '-'}${d === null ? '' : ` (${d >= 0 ? '+' : ''}${(100 * d).toFixed(2)}%)`}${f.judgeLoss ? '' : ' info'}`,
      String(f.seconds),
    ];
  });
  const all = [head, ...lines];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const fmt = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
  return [fmt(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...lines.map(fmt)].join('\n');
}

/**
 * The self-describing labels ("#NNNN") of dataset rows given by the coordinator's ids (its data set
 * holds the training rows only, so its ids are not the labels): the rows are built here from the
 * data file as the coordinator builds them (--seq-len 16, --seed 1) and read like a trace's heads.
 */
function sampleLabels(dataFile: string, ids: number[]): Set<number> {
  const ds = loadDataFile(dataFile, { T: 16, seed: 1 });
  const out = new Set<number>();
  for (const id of ids) {
    const b = buildMicroBatch(ds, [id]);
    const label = decodeSampleId(Array.from(b.inputs.subarray(0, TRACE_HEAD)));
    if (label === null) throw new Error(`chaos: dataset row ${id} has no sample label`);
    out.add(label);
  }
  return out;
}

/** Resolves once the trace file's last event is a task newer than its content now (or after `ms`). */
async function freshTask(traceFile: string, ms: number): Promise<void> {
  const read = () => (existsSync(traceFile) ? readFileSync(traceFile, 'utf8') : '');
  const before = read().length;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const text = read();
    if (text.length > before) {
      const last = text.trimEnd().split('\n').at(-1) ?? '';
      if (last.includes('"ev":"task"')) return;
    }
    await sleep(2);
  }
}
