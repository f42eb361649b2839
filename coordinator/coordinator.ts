// startCoordinator(config): the whole coordinator in-process (tests start it on port 0) and the
// body of `npm start` (main.ts). Wires config -> dataset, trainer (resumed from the newest valid
// checkpoint), socket.io worker hub + dashboard namespace (msgpack parser), express API, metrics,
// periodic evaluation and checkpoints.

import express from 'express';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { Server } from 'socket.io';
import { loadDataset, type Dataset } from '../shared/data/index.ts';
import { AppError } from '../shared/errors.ts';
import { presetConfig } from '../shared/model/config.ts';
import { msgpackParser } from '../shared/protocol/parser.ts';
import type { EvalPoint, StatusSnapshot } from '../shared/protocol/dashboard.ts';
import { ensureRunDir, loadNewestValid, saveCheckpoint } from './checkpoint/store.ts';
import { importForTraining } from './export/import.ts';
import { exportRouter } from './export/routes.ts';
import { checkpointLoader } from './generation/checkpoints.ts';
import { GenerationLimiter } from './generation/generate.ts';
import { validateConfig, type CoordinatorConfig, type CoordinatorConfigInput } from './config.ts';
import { adminRouter } from './http/admin-routes.ts';
import { apiRouter } from './http/api-routes.ts';
import type { CoordinatorContext } from './http/context.ts';
import { errorHandler, notFound } from './http/errors.ts';
import { generateRouter, type GenerateContext } from './http/generate-routes.ts';
import { metricsRouter } from './http/metrics.ts';
import { openaiRouter } from './http/openai-routes.ts';
import { preferencesRouter } from './http/preferences.ts';
import { simulateRouter } from './http/simulate-routes.ts';
import { staticRouter } from './http/static.ts';
import { attachDashboard } from './server/dashboard-ns.ts';
import { EventBus } from './server/events.ts';
import { WorkerHub } from './server/hub.ts';
import { maxMessageBytes } from './server/message-size.ts';
import { originGuard } from './security/origin.ts';
import { loadBans } from './security/ban-file.ts';
import { PreferenceStore } from './preferences/store.ts';
import { Evaluator } from './train/evaluate.ts';
import { Trainer } from './train/trainer.ts';
import { dilocoStatus, RoundTrainer } from './train/round-trainer.ts';
import { loadPreferenceData, setUpPreferenceTraining } from './train/dpo-setup.ts';
import type { PreferenceEvaluator } from './train/preference-eval.ts';
import { ClusterPort } from './cluster/cluster-port.ts';
import { GatewayBus } from './cluster/gateway-bus.ts';
import { GatewayTrainer } from './cluster/gateway-trainer.ts';
import { ClusterNode } from './cluster/node.ts';
import { openRedis } from './cluster/redis.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The built-in task's rows are at most 15 positions; 16 keeps them cheap. */
const DEFAULT_TASK_SEQ_LEN = 16;

export interface StartOptions {
  /** A pino logger (default: one at config.logLevel on stdout). */
  logger?: Logger;
  /** Called with the dataset instead of loading config.data (tests: self-describing data). */
  dataset?: (T: number, seed: number) => Dataset;
}

export interface CoordinatorHandle {
  url: string;
  port: number;
  adminToken: string;
  adminTokenGenerated: boolean;
  config: CoordinatorConfig;
  ctx: CoordinatorContext;
  trainer: Trainer;
  hub: WorkerHub;
  bus: EventBus;
  /** Resume information: the checkpoint file used, and corrupt ones skipped. */
  resumedFrom: string | null;
  /** Where the starting parameters came from: a checkpoint, an `--init-from` export, or the seeded init. */
  initSource: InitSource;
  skippedCheckpoints: Array<{ file: string; error: string }>;
  /** Stop: notice to workers, optional final checkpoint, close sockets and HTTP. */
  close(opts?: { checkpoint?: boolean }): Promise<void>;
}

export type InitSource =
  | { kind: 'checkpoint'; path: string; step: number }
  | { kind: 'export'; path: string; exportStep: number; dtype: string }
  | { kind: 'seed'; seed: number };

/** For the start banner and log: "resumed from ...", "initialized from ...", "seeded init ...". */
export function describeInitSource(s: InitSource): string {
  switch (s.kind) {
    case 'checkpoint': return `resumed from ${s.path} at step ${s.step}`;
    case 'export': return `initialized from ${s.path} (export of step ${s.exportStep}, ${s.dtype})`;
    case 'seed': return `seeded init (seed ${s.seed})`;
  }
}

function publicConfig(c: CoordinatorConfig): Record<string, unknown> {
  const { adminToken: _a, joinToken: _j, ...rest } = c;
  return rest;
}

export async function startCoordinator(input: CoordinatorConfigInput | CoordinatorConfig, opts: StartOptions = {}): Promise<CoordinatorHandle> {
  const config = validateConfig(input);
  const log = opts.logger ?? pino({ level: config.logLevel, base: { svc: 'coordinator' } });
  const model = presetConfig(config.preset);
  const seqLen = config.seqLen ?? (config.data || opts.dataset ? model.contextLength : Math.min(DEFAULT_TASK_SEQ_LEN, model.contextLength));
  if (seqLen > model.contextLength) {
    throw new AppError('ERR_CONFIG', `coordinator config: --seq-len ${seqLen} exceeds the ${config.preset} context length ${model.contextLength}`, 400, `use --seq-len <= ${model.contextLength}`);
  }
  const runDir = resolve(config.runDir);
  ensureRunDir(runDir);
  // --objective dpo: pairs (a bad row: ERR_PREFERENCE_ROW naming file:line, exit 2), checked before anything starts.
  const preferences = config.objective === 'dpo' && !opts.dataset ? loadPreferenceData(config, runDir, seqLen) : null;
  // --redis: this process is one of several sharing the run (coordinator/cluster/, docs/scale.md).
  // Its trainer is a gateway's (slices leased by the leader); the leader's trainer, checkpoints
  // and evaluation live in the ClusterNode while this process holds the lease.
  const redis = config.redis ? await openRedis(config.redis, 'vt-coordinator') : null;
  const dataset = opts.dataset ? opts.dataset(seqLen, config.seed) : preferences ?? loadDataset({ data: config.data, T: seqLen, seed: config.seed, answers: config.answers });
  const trainer = redis ? new GatewayTrainer(config, model, dataset) : new Trainer(config, model, dataset);
  const rounds = config.mode === 'diloco' ? new RoundTrainer(trainer, config) : null;
  trainer.onFoldFailure = (message) => {
    log.error({ message }, 'fold thread failed: the step is redone with the mean folded in the event loop');
    bus.logEntry({ level: 'error', kind: 'info', message: `fold thread failed (${message}); the step's accepted work is redone, folds run in the event loop from now on` });
  };

  let resumedFrom: string | null = null;
  let skipped: Array<{ file: string; error: string }> = [];
  let lastCheckpoint: StatusSnapshot['checkpoint'] = null;
  const bus = new EventBus();
  // Collected preference pairs outlive restarts and --no-resume (they are people's choices, not
  // model state). A torn last line is set aside with a warning; a bad row elsewhere stops the start.
  const prefs = PreferenceStore.open(runDir);
  for (const w of prefs.warnings) {
    log.warn({ file: prefs.store.file }, w);
    bus.logEntry({ level: 'warn', kind: 'resume', message: w });
  }
  if (config.resume && !redis) {
    const r = loadNewestValid(runDir);
    skipped = r.skipped;
    for (const s of skipped) {
      log.warn({ file: s.file }, `skipping corrupt checkpoint: ${s.error}`);
      bus.logEntry({ level: 'warn', kind: 'resume', message: `corrupt checkpoint skipped: ${s.file}` });
    }
    if (r.found) {
      if (!rounds && r.found.data.meta.diloco) {
        throw new AppError('ERR_CHECKPOINT_MISMATCH', `checkpoint ${r.found.file} was written in --mode diloco; this run is --mode sync`, 400, 'start with the same --mode, or use another --run-dir');
      }
      trainer.restore(r.found.data, r.found.file);
      rounds?.restore(r.found.data, r.found.file);
      resumedFrom = r.found.file;
      lastCheckpoint = { step: r.found.data.meta.step, file: r.found.file, at: Date.parse(r.found.data.meta.createdAt) || Date.now() };
      log.info({ file: r.found.file, step: trainer.step }, 'resumed from checkpoint');
      bus.logEntry({ level: 'info', kind: 'resume', message: `resumed from ${r.found.file} at step ${trainer.step}` });
    }
  }
  let initSource: InitSource = resumedFrom ? { kind: 'checkpoint', path: resumedFrom, step: trainer.step } : { kind: 'seed', seed: config.seed };
  if (config.initFrom !== undefined && !redis) {
    const dir = resolve(config.initFrom);
    if (resumedFrom) {
      // The run's own checkpoint is newer than any export it started from: a restart continues.
      log.info({ initFrom: dir, checkpoint: resumedFrom }, '--init-from ignored: the run dir has a checkpoint (use --no-resume to start from the export)');
    } else {
      // Names/shapes vs the parameter table and config.json vs --preset (ERR_IMPORT_*: exit code 2).
      const m = importForTraining(dir, model);
      trainer.loadInitialParams(m.params, dir);
      initSource = { kind: 'export', path: dir, exportStep: m.step, dtype: m.dtype };
    }
  }
  if (initSource.kind !== 'checkpoint') {
    log.info({ initSource }, describeInitSource(initSource));
    bus.logEntry({ level: 'info', kind: 'resume', message: describeInitSource(initSource) });
  }

  let dpoEval: PreferenceEvaluator | null = null;
  if (preferences) dpoEval = (await setUpPreferenceTraining(config, model, trainer, preferences, log)).evaluator;

  const adminTokenGenerated = config.adminToken === undefined;
  const adminToken = config.adminToken ?? randomBytes(18).toString('base64url');
  const evaluator = config.evalEvery > 0 && !preferences && !redis ? new Evaluator(model, dataset, config.evalSamples) : null;
  const evals: EvalPoint[] = [];
  const startedAt = Date.now();

  const app = express();
  app.disable('x-powered-by');
  const http = createServer(app);
  const io = new Server(http, {
    parser: msgpackParser,
    maxHttpBufferSize: maxMessageBytes(trainer.paramCount),
    transports: ['websocket'],
    // Browsers: same origin or --allowed-origins only (coordinator/security/origin.ts).
    allowRequest: originGuard(config.allowedOrigins.split(',').map((o) => o.trim()).filter(Boolean)),
    // Many clients: liveness is the workers' own heartbeats (--heartbeat-ms, --dead-after-ms), so
    // engine.io pings only catch dead TCP connections (25 s, socket.io's default, instead of 5 s:
    // 1,000 workers made 200 pings/s); tensors are binary and incompressible: no per-message deflate.
    pingInterval: 25_000,
    pingTimeout: Math.max(5_000, config.deadAfterMs),
    perMessageDeflate: false,
  });

  const checkpointNow = (reason: string): { step: number; file: string } => {
    const t0 = Date.now();
    const data = (rounds ?? trainer).snapshot({ preset: config.preset, config: publicConfig(config) });
    const file = saveCheckpoint(runDir, data, config.keepCheckpoints); // throws ERR_CHECKPOINT_WRITE, previous ones intact
    lastCheckpoint = { step: data.meta.step, file, at: Date.now() };
    log.info({ file, step: data.meta.step, reason, ms: Date.now() - t0 }, 'checkpoint written');
    bus.emit('checkpoint', { step: data.meta.step, file, ms: Date.now() - t0 });
    bus.logEntry({ level: 'info', kind: 'checkpoint', message: `checkpoint at step ${data.meta.step} (${reason}): ${file}` });
    return { step: data.meta.step, file };
  };

  const afterStep = async (): Promise<void> => {
    const done = trainer.step;
    if (dpoEval && (done % config.evalEvery === 0 || trainer.finished)) {
      const r = await dpoEval.run(trainer.params);
      const e: EvalPoint = { step: done - 1, loss: r.loss, accuracy: r.accuracy, t: Date.now(), tasks: r.tasks, samples: r.samples, preferenceAccuracy: r.preferenceAccuracy, rewardMargin: r.rewardMargin, pairs: r.pairs };
      evals.push(e);
      trainer.noteEval(r.loss, r.accuracy);
      const line = dpoEval.describe(e.step, r);
      log.info({ step: e.step, dpoLoss: r.loss, preferenceAccuracy: r.preferenceAccuracy, rewardMargin: r.rewardMargin, accuracy: r.accuracy }, line);
      bus.emit('eval', e);
      bus.logEntry({ level: 'info', kind: 'eval', message: line });
    }
    if (evaluator && (done % config.evalEvery === 0 || trainer.finished)) {
      const r = await evaluator.run(trainer.params);
      const e: EvalPoint = { step: done - 1, loss: r.loss, accuracy: r.accuracy, t: Date.now(), tasks: r.tasks, samples: r.samples };
      evals.push(e);
      trainer.noteEval(r.loss, r.accuracy);
      const said = evaluator.describe(e.step, r); // one actionable line per eval; `ready` once at 95%
      log.info({ step: e.step, evalLoss: r.loss, accuracy: r.accuracy, tasks: r.tasks }, said.line);
      if (said.ready) log.info({ step: e.step, accuracy: r.accuracy }, said.ready);
      bus.emit('eval', e);
      bus.logEntry({ level: 'info', kind: 'eval', message: said.line });
      if (said.ready) bus.logEntry({ level: 'info', kind: 'eval', message: said.ready });
    }
    if (!redis && ((config.checkpointEvery > 0 && done % config.checkpointEvery === 0) || trainer.finished)) {
      try {
        checkpointNow(trainer.finished ? 'max-steps' : 'periodic');
      } catch (e) {
        log.error({ err: e }, 'checkpoint failed; training continues, the previous checkpoint stays valid');
        bus.logEntry({ level: 'error', kind: 'checkpoint', message: (e as Error).message });
      }
    }
  };

  // Bans outlive restarts (and --no-resume: a fresh model does not make a liar honest). A damaged
  // ban list is reported and replaced at the next ban, never a reason not to start.
  const bans = loadBans(runDir);
  if (bans.warning) {
    log.warn({ file: bans.file }, bans.warning);
    bus.logEntry({ level: 'warn', kind: 'resume', message: bans.warning });
  } else if (bans.bans.length) {
    log.info({ file: bans.file, bans: bans.bans.length }, 'ban list loaded');
  }
  let clusterPort: ClusterPort | null = null;
  // A gateway (--redis) starts its slices with whoever is there: --min-workers counts the whole
  // cluster's workers, and its gate is the uplink's (coordinator/cluster/uplink.ts).
  const hub = new WorkerHub({ io, trainer, config: redis ? { ...config, minWorkers: 1 } : config, ...(redis ? { stages: false } : {}), preset: config.preset, seqLen, bus: redis ? new GatewayBus(bus) : bus, log: redis ? log.child({ role: 'gateway' }) : log, hooks: { afterStep }, bans: { file: bans.file, loaded: bans.bans }, ...(rounds ? { rounds } : {}),
    ...(redis ? { port: (gw, workers) => (clusterPort = new ClusterPort(gw, workers)) } : {}) });
  let cluster: ClusterNode | null = null;

  const status = (): StatusSnapshot => (cluster ? cluster.status(localStatus()) : localStatus());
  const localStatus = (): StatusSnapshot => {
    const last = trainer.history.at(-1);
    const ev = evals.at(-1);
    return {
      step: trainer.step,
      epoch: trainer.epoch,
      version: trainer.version,
      loss: trainer.lastLoss,
      lr: trainer.lr(),
      samplesTrained: trainer.samplesTrained,
      tokensTrained: trainer.tokensTrained,
      mode: config.mode,
      objective: config.objective,
      ...(rounds ? { round: trainer.step, diloco: dilocoStatus(rounds, hub.gateway.wire.snapshot()) } : {}),
      wire: hub.gateway.wire.snapshot(),
      tokensPerSec: last?.tokensPerSec ?? 0,
      paused: hub.paused,
      finished: trainer.finished,
      workers: [...hub.workers.byId.values()].map((w) => hub.workers.row(w)),
      pipelines: hub.stages?.status() ?? [],
      checkpoint: lastCheckpoint,
      model: { preset: config.preset, params: trainer.paramCount, config: model },
      eval: ev ? {
        step: ev.step, loss: ev.loss, accuracy: ev.accuracy, tasks: ev.tasks, samples: ev.samples,
        ...(ev.preferenceAccuracy !== undefined ? { preferenceAccuracy: ev.preferenceAccuracy, rewardMargin: ev.rewardMargin, pairs: ev.pairs } : {}),
      } : null,
      task: { name: dataset.name, builtIn: dataset.builtIn === true, examplePrompts: dataset.examplePrompts ?? [], ...(dataset.answerNote ? { answerNote: dataset.answerNote } : {}) },
      accounting: trainer.accounting(),
      globalBatch: config.globalBatch,
      uptimeSec: Math.round((Date.now() - startedAt) / 1000),
      security: hub.security.summary(),
      preferences: { count: prefs.store.count },
    };
  };

  const ctx: CoordinatorContext = {
    config,
    preset: config.preset,
    seqLen,
    trainer,
    hub,
    bus,
    adminToken,
    runDir,
    status,
    evals: () => cluster?.evals ?? evals,
    getModel: () => ({ config: model, params: trainer.params, step: trainer.step }),
    checkpointNow: (reason) => (cluster ? cluster.checkpointNow(reason) : checkpointNow(reason)),
    cluster: () => cluster,
  };
  const detachDashboard = attachDashboard(io, bus, status, () => trainer.history, () => evals,
    { all: () => hub.workers.byId.values(), live: () => hub.workers.connected().length, row: (w) => hub.workers.row(w) });

  // No global body parser: our routes take no bodies; colleagues' routers parse their own.
  app.use(apiRouter(ctx));
  app.use(adminRouter(ctx));
  app.use(metricsRouter(ctx));
  mountModelRouters(app, ctx, log);
  app.use(preferencesRouter({ store: prefs.store, step: () => trainer.step, perMinute: config.preferenceRate, log,
    onRecorded: (count) => bus.emit('preference', { count }) }));
  app.use(staticRouter(REPO_ROOT));
  app.use(notFound);
  app.use(errorHandler(log));

  await new Promise<void>((res, rej) => {
    http.once('error', (e: NodeJS.ErrnoException) =>
      rej(new AppError('ERR_LISTEN', `coordinator: cannot listen on ${config.host}:${config.port} (${e.code ?? e.message})`, 500,
        e.code === 'EADDRINUSE' ? 'another process uses this port: pick another --port (0 = any free port)' : 'check --host and --port')));
    http.listen(config.port, config.host, () => res());
  });
  const port = (http.address() as AddressInfo).port;
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${shownHost}:${port}`;
  log.info({ url, preset: config.preset, params: trainer.paramCount, dataset: dataset.name, step: trainer.step, init: describeInitSource(initSource) }, 'coordinator listening');
  if (redis) {
    cluster = new ClusterNode({ io, redis, config, model, dataset, seqLen, runDir, runName: config.runName ?? basename(runDir), url, log, bus, trainer: trainer as GatewayTrainer, hub, port: clusterPort! });
    await cluster.start();
    log.info({ run: config.runName ?? basename(runDir), process: cluster.id }, 'joined the cluster run');
  }

  let closed = false;
  const close = async (o: { checkpoint?: boolean } = {}): Promise<void> => {
    if (closed) return;
    closed = true;
    await cluster?.close(o);
    hub.shutdown();
    if (o.checkpoint && !cluster) {
      try {
        checkpointNow('shutdown');
      } catch (e) {
        log.error({ err: e }, 'final checkpoint failed; the previous checkpoint stays valid');
      }
    }
    detachDashboard();
    evaluator?.dispose();
    dpoEval?.dispose();
    // Verification threads stop; results still waiting for a verdict are dropped with their sockets.
    await hub.close();
    await prefs.store.close(); // appends in flight finish (and are answered) first
    await trainer.close(); // fold threads (--fold-threads)
    io.disconnectSockets(true);
    await new Promise<void>((res) => io.close(() => res()));
    http.closeAllConnections?.();
  };

  return { url, port, adminToken, adminTokenGenerated, config, ctx, trainer, hub, bus, resumedFrom, initSource, skippedCheckpoints: skipped, close };
}

/**
 * The generation, OpenAI, export and simulator routers. Their contexts: getModel() (live
 * parameters), loadCheckpoint(name) from the run dir, and a bounded generation limiter.
 */
function mountModelRouters(app: express.Express, ctx: CoordinatorContext, log: Logger): void {
  const genCtx: GenerateContext = {
    getModel: ctx.getModel,
    loadCheckpoint: checkpointLoader(ctx.runDir),
    limiter: new GenerationLimiter({ concurrency: 2, queue: 8, timeoutMs: 30_000 }),
    modelName: `gpt2-webgpu-${ctx.preset}`,
    log,
  };
  app.use(generateRouter(genCtx));
  app.use(openaiRouter(genCtx));
  app.use(exportRouter({ getModel: ctx.getModel, log }));
  app.use(simulateRouter(log));
}
