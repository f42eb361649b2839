// Entry of the live dashboard (index.html). Everything arrives by push on the socket.io
// `/dashboard` namespace (shared/protocol/dashboard.ts): `snapshot` + `history` on connect, then
// `status`, `step`, `eval`, `worker`, `log`. Nothing polls the server.

import './styles.css';
import type { EvalPoint, HistoryPoint, LogEntry, StatusSnapshot, WorkerChange, WorkerRow } from '../../shared/protocol/dashboard.ts';
import { getJson } from './api.ts';
import { byId, setText } from './dom.ts';
import { EventLog } from './event-log.ts';
import { formatCount, formatInt, formatLoss, formatLr, formatRate } from './format.ts';
import { History } from './history.ts';
import { StepChart } from './charts.ts';
import { connectLive } from './live.ts';
import { legend, renderMemoryBars } from './memory-bars.ts';
import { markNav } from './nav.ts';
import { mountShare } from './share.ts';
import { renderWorkers } from './workers-table.ts';
import { WorkersPager } from './workers-pager.ts';
import type { WorkersPage } from '../../shared/protocol/dashboard.ts';
import { eventView, memoryBars, securityView, statusView, workerView, type TrustMap } from './view.ts';
import { renderSecurity } from './security-panel.ts';
import { dilocoView, renderDiloco } from './diloco-view.ts';
import { pipelinesView, renderPipelines, stageBarsByWorker } from './pipeline-view.ts';
import { clusterView, renderCluster } from './cluster-view.ts';
import type { MemoryBar } from './memory-bars.ts';
import { adminKick, mountAdmin } from './admin-panel.ts';
import { evalSamplesView, renderEvalSamples } from './eval-samples.ts';

markNav();

const history = new History();
const log = new EventLog(byId<HTMLOListElement>('event-log'));
const workers = new Map<string, WorkerRow>();
/** Trust per worker id from the last snapshot's security summary (the workers table's trust column). */
let trust: TrustMap = new Map();
/** Stage workers' bars from the last snapshot's pipelines (what they hold in their pipeline). */
let stageBars: ReadonlyMap<string, MemoryBar> = new Map();

const charts = [
  new StepChart({ container: byId('chart-loss'), title: 'Loss', series: [{ key: 'loss', label: 'train loss', color: '#2563eb' }, { key: 'evalLoss', label: 'eval loss', color: '#dc2626' }] }),
  new StepChart({ container: byId('chart-eval'), title: 'Eval accuracy (exact match)', series: [{ key: 'evalAccuracy', label: 'accuracy', color: '#16a34a' }], yRange: [0, 1], yFormat: (v) => `${(v * 100).toFixed(0)}%` }),
  new StepChart({ container: byId('chart-tps'), title: 'Tokens / s', series: [{ key: 'tokensPerSec', label: 'tokens/s', color: '#9333ea' }] }),
  new StepChart({ container: byId('chart-lr'), title: 'Learning rate', series: [{ key: 'lr', label: 'lr', color: '#ea580c' }], yFormat: (v) => v.toExponential(1) }),
];

function redrawCharts(): void {
  for (const c of charts) c.update(history);
  // How many loss points the chart holds, for tests and for people reading the DOM.
  byId('chart-loss').dataset.points = String(history.columns(['loss'])[1].filter((v) => v !== null).length);
}

// Paged, sorted, filtered (workers-pager.ts); with many workers the coordinator sends one page.
let liveSocket: { emit(ev: string, q: unknown): unknown } | null = null;
let pagedLive: number | null = null;
const pager = new WorkersPager(byId('workers'), { send: (q) => liveSocket?.emit('workers:query', q), onChange: () => drawWorkers() });

function drawWorkers(): void {
  const pageTrust = new Map([...(securityView({ trust: pager.remote?.trust ?? {} } as never)?.trust ?? [])]);
  const views = pager.paged ? [] : [...workers.values()].map((w) => workerView(w, trust));
  const shown = pager.rows(views, (pager.remote?.rows ?? []).map((w) => workerView(w, pageTrust)));
  renderWorkers(byId<HTMLTableSectionElement>('workers-body'), shown, { onKick: adminKick(), keepOrder: true });
  setText(byId('stat-workers'), pagedLive ?? views.filter((w) => !['dead', 'left', 'kicked'].includes(w.state)).length);
  renderMemoryBars(byId('memory-plan'), memoryBars(pager.paged ? shown : views, stageBars), 'No worker plans yet.');
}

function drawStatus(snap: StatusSnapshot): void {
  const s = statusView(snap);
  setText(byId('stat-step'), s.step === null ? '—' : formatInt(s.step));
  setText(byId('stat-epoch'), s.epoch === null ? '—' : String(s.epoch));
  setText(byId('stat-loss'), formatLoss(s.loss));
  const ev = s.evalLoss ?? history.latest('evalLoss');
  const acc = s.evalAccuracy ?? history.latest('evalAccuracy');
  setText(byId('stat-eval'), `${formatLoss(ev)}${acc === null ? '' : ` / ${(acc * 100).toFixed(1)}%`}`);
  setText(byId('stat-tps'), formatRate(s.tokensPerSec));
  setText(byId('stat-lr'), formatLr(s.lr));
  setText(byId('stat-samples'), s.samplesTrained === null ? '—' : formatInt(s.samplesTrained));
  byId('stat-samples').title = s.accounting;
  setText(byId('stat-model'), s.preset ? `${s.preset}${s.params === null ? '' : ` · ${formatCount(s.params)} params`}` : '—');
  setText(byId('stat-checkpoint'), s.checkpointStep === null ? 'none yet' : `step ${s.checkpointStep}`);
  byId('stat-checkpoint').title = s.checkpointFile;
  setText(byId('stat-run-state'), s.runState);
  byId('stat-run-state').dataset.state = s.runState;
  setText(byId('accounting'), s.accounting);
  setText(byId('stat-preferences'), s.preferences === null ? '—' : formatInt(s.preferences));
  // On connect (and after a reload) the latest evaluation's answers come with the snapshot.
  if (snap.eval?.samples?.length || snap.eval?.preferenceAccuracy !== undefined) renderEvalSamples(byId('eval-samples'), evalSamplesView(snap.eval));
  const sec = securityView(snap.security);
  renderSecurity(sec);
  renderDiloco(dilocoView(snap));
  const pipes = pipelinesView(snap);
  renderPipelines(pipes);
  renderCluster(clusterView(snap));
  stageBars = stageBarsByWorker(pipes);
  trust = sec?.trust ?? new Map();
  workers.clear();
  for (const w of snap.workers ?? []) workers.set(w.id, w);
  const wasPaged = pager.paged;
  pager.paged = snap.workersPaged !== undefined;
  pagedLive = snap.workersPaged?.live ?? null;
  if (pager.paged && !wasPaged) liveSocket?.emit('workers:query', pager.query);
  drawWorkers();
}

const handlers: Record<string, (payload: never) => void> = {
  snapshot: (s: StatusSnapshot) => drawStatus(s),
  status: (s: StatusSnapshot) => drawStatus(s),
  history: (h: HistoryPoint[]) => {
    if (Array.isArray(h) && history.add(h)) redrawCharts();
  },
  step: (p: HistoryPoint) => {
    if (history.add([p])) redrawCharts();
    // The per-step push is immediate, the status snapshot throttled to ~1/s: show the step's own
    // figures now (p.step is the index of the step that finished, so p.step + 1 steps are done).
    if (typeof p?.step === 'number') {
      setText(byId('stat-step'), formatInt(p.step + 1));
      setText(byId('stat-loss'), formatLoss(p.loss));
      setText(byId('stat-tps'), formatRate(p.tokensPerSec));
      setText(byId('stat-lr'), formatLr(p.lr));
    }
  },
  eval: (e: EvalPoint) => {
    if (history.add([{ step: e.step, evalLoss: e.loss, evalAccuracy: e.accuracy }])) redrawCharts();
    if (e?.samples?.length || e?.preferenceAccuracy !== undefined) renderEvalSamples(byId('eval-samples'), evalSamplesView(e));
  },
  worker: (c: WorkerChange) => {
    if (!c?.worker?.id) return;
    workers.set(c.worker.id, c.worker);
    drawWorkers();
  },
  log: (e: LogEntry) => log.add([eventView(e)]),
  'workers:page': (p: WorkersPage) => {
    if (!p || !Array.isArray(p.rows)) return;
    pager.remote = p;
    drawWorkers();
  },
};

let lastConn = '';
function setConn(state: string, detail?: string): void {
  const pill = byId('conn');
  pill.dataset.state = state;
  setText(pill, detail && state !== 'connected' ? `${state} (${detail})` : state);
  // Note connection changes in the log (once per change, not per reconnect attempt).
  if (state !== lastConn && state !== 'connecting') {
    log.add([{ time: Date.now(), kind: state === 'connected' ? 'info' : 'error', level: 'info', code: '', workerId: '', message: state === 'connected' ? 'dashboard connected to the coordinator' : `dashboard lost the coordinator${detail ? ` (${detail})` : ''}; reconnecting` }]);
  }
  lastConn = state;
}

byId('memory-legend').appendChild(legend());
// After an admin action, one GET of the status shows its effect at once (not a poll).
const refresh = (): void => {
  getJson<StatusSnapshot>('/api/status').then(drawStatus, () => undefined);
};
mountAdmin({ onChange: drawWorkers, afterAction: refresh });
mountShare();
liveSocket = connectLive({ onState: setConn, onEvent: (name, payload) => handlers[name]?.(payload as never) });
// "last seen" is relative to now: re-render it locally (this does not contact the server).
setInterval(drawWorkers, 5000);
