// The /worker page: renders what its Web Worker (engine-worker.ts) reports and forwards the
// volunteer's choices to it. No computation here, so the tab stays responsive. Every string that
// comes from the device, the coordinator or the volunteer is written with textContent, never
// innerHTML (adapter descriptions and names are attacker-controlled).

import { parseBytes, formatBytes } from '../../shared/memory/units.ts';
import { TRAIN_BYTES_PER_PARAM } from '../../shared/memory/rules.ts';
import type { WorkerStats } from '../client/worker-client.ts';
import type { DeviceDescription } from '../client/engine-host.ts';
import type { PageToWorker, WorkerToPage } from './messages.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`worker page: element #${id} is missing from index.html`);
  return el as T;
};
const text = (id: string, v: string | number | undefined | null) => {
  $(id).textContent = v === undefined || v === null || v === '' ? '-' : String(v);
};

const startBtn = $<HTMLButtonElement>('start');
const stopBtn = $<HTMLButtonElement>('stop');
const capInput = $<HTMLInputElement>('memory-cap');
const nameInput = $<HTMLInputElement>('worker-name');
const pauseHidden = $<HTMLInputElement>('pause-hidden');
const cpuOptin = $<HTMLInputElement>('cpu-optin');
const joinInput = $<HTMLInputElement>('join-token');
const joinRefused = $('join-refused');

const params = new URLSearchParams(location.search);
// `?coordinator=URL[,URL...]`: another coordinator, or several processes of one run (--redis),
// tried in turn after a lost connection. Unusable entries are skipped; none left: our origin.
const coordinatorUrls: string[] = [];
for (const entry of (params.get('coordinator') ?? '').split(',')) {
  try {
    const u = new URL(entry.trim());
    if (u.protocol === 'http:' || u.protocol === 'https:') coordinatorUrls.push(u.origin);
  } catch {
    /* skipped */
  }
}
if (coordinatorUrls.length === 0) coordinatorUrls.push(location.origin);
const coordinatorUrl = coordinatorUrls[0];

// A share link for a closed cluster carries its join token as `?join=`. It only fills the input:
// the token is never written to the log, the status or the page's text.
const joinParam = params.get('join');
if (joinParam) joinInput.value = joinParam.slice(0, 128);

/** What the volunteer typed as join token (trimmed), or undefined when empty. */
function readJoinToken(): string | undefined {
  const t = joinInput.value.trim().slice(0, 128);
  return t === '' ? undefined : t;
}

/** Why the coordinator refused us, in words; the token itself is never shown. */
function refusalMessage(code: string, hadToken: boolean): string {
  switch (code) {
    case 'UNAUTHORIZED':
      return hadToken
        ? 'The coordinator refused the join token: this cluster is closed and the token is wrong. Check it with the organiser and start again.'
        : 'This cluster is closed: it needs a join token. Enter the token the organiser gave you (or open their share link) and start again.';
    case 'PROTOCOL_VERSION':
      return 'The coordinator speaks another protocol version than this page: reload the page.';
    case 'BANNED':
      return 'The coordinator has banned this worker (its results failed the checks).';
    default:
      return `The coordinator refused this worker (${code}).`;
  }
}

let startedWithToken = false;

const engine = new Worker(new URL('./engine-worker.ts', import.meta.url), { type: 'module', name: 'engine' });
const send = (m: PageToWorker): void => engine.postMessage(m);

let device: DeviceDescription | undefined;
let useCpu = false;
let running = false;
let pausedForHidden = false;

function setPageState(s: string): void {
  document.body.dataset.state = s;
}

function setError(msg: string): void {
  $('error').textContent = msg;
}

function log(level: string, msg: string): void {
  const li = document.createElement('li');
  li.className = level;
  li.textContent = `${new Date().toLocaleTimeString()} ${msg}`;
  const ol = $('log');
  ol.appendChild(li);
  while (ol.childElementCount > 200) ol.firstElementChild?.remove();
  ol.scrollTop = ol.scrollHeight;
}

/** The cap the volunteer typed, in bytes; undefined if empty; null (and an error shown) if unreadable. */
function readCap(): number | undefined | null {
  const v = capInput.value.trim();
  if (v === '') return undefined;
  try {
    return parseBytes(v, 'memory cap');
  } catch (e) {
    return null;
  }
}

function renderCapPreview(): void {
  const cap = readCap();
  if (cap === null) {
    text('cap-preview', 'Cannot read that size: use e.g. 1GiB, 512MiB or 2GB.');
    return;
  }
  const probed = device?.probedBytes;
  const budget = Math.min(cap ?? Infinity, probed ?? Infinity);
  if (!Number.isFinite(budget)) {
    $('cap-preview').textContent = '';
    return;
  }
  const holds = Math.floor(budget / TRAIN_BYTES_PER_PARAM);
  text('cap-preview', `Budget ${formatBytes(budget)}: trains a model of up to ${holds.toLocaleString('en-US')} parameters ` +
    `(${TRAIN_BYTES_PER_PARAM} bytes each).`);
}

function renderDevice(backend: string, d: DeviceDescription): void {
  device = d;
  text('backend', backend === 'cpu' ? 'CPU (reference backend)' : 'WebGPU');
  text('adapter-vendor', d.adapter.vendor);
  text('adapter-architecture', d.adapter.architecture);
  text('adapter-description', d.adapter.description);
  text('adapter-software', backend === 'cpu' ? 'CPU' : d.adapter.isSoftware ? 'software adapter (slow, ~100x below a GPU)' : 'hardware GPU');
  text('probed-memory', d.probedBytes ? formatBytes(d.probedBytes) : 'unknown');
  text('max-buffer', d.limits.maxBufferSize ? formatBytes(d.limits.maxBufferSize) : '-');
  renderCapPreview();
}

function renderStats(s: WorkerStats): void {
  text('state', s.state);
  text('detail', s.detail);
  text('worker-id', s.workerId);
  text('step', s.step);
  text('tasks-done', s.tasksDone);
  text('accepted', s.accepted);
  text('rejected', s.rejected);
  text('rejected-codes', Object.entries(s.rejectedByCode).map(([k, v]) => `${k}: ${v}`).join(', '));
  text('last-loss', s.lastLoss === undefined ? undefined : s.lastLoss.toFixed(4));
  text('tokens-per-sec', s.tasksDone ? s.tokensPerSec.toFixed(1) : undefined);
  text('gpu-time', `${(s.gpuMs / 1000).toFixed(1)} s`);
  text('reconnects', s.reconnects);
  text('device-losses', s.deviceLosses);
  if (s.plan) {
    const p = s.plan;
    text('plan-role', p.role);
    text('plan-budget', formatBytes(p.budgetBytes));
    text('plan-params', p.trainableParams.toLocaleString('en-US'));
    text('plan-microbatch', p.microBatch ? `${p.microBatch} x ${p.seqLen} tokens` : '-');
    text('plan-reason', p.reason);
    const ul = $('plan-breakdown');
    ul.replaceChildren();
    for (const [k, v] of Object.entries(p.breakdown ?? {})) {
      if (typeof v !== 'number') continue;
      const li = document.createElement('li');
      li.dataset.part = k;
      li.textContent = `${k}: ${formatBytes(v)}`;
      ul.appendChild(li);
    }
  }
  if (s.paramCount) text('model-params', s.paramCount.toLocaleString('en-US'));
  if (s.state !== 'stopped') setPageState(s.state === 'idle' || s.state === 'computing' ? 'running' : s.state);
}

engine.onmessage = (ev: MessageEvent<WorkerToPage>) => {
  const m = ev.data;
  switch (m.type) {
    case 'device':
      if (m.ok) {
        renderDevice(m.backend, m.device);
        text('webgpu-status', m.backend === 'cpu' ? 'Using the CPU.' : m.device.adapter.isSoftware
          ? 'WebGPU found, but on a software adapter: it works, slowly.' : 'WebGPU found.');
        startBtn.disabled = running;
        setPageState('ready');
      } else if (m.backend === 'webgpu') {
        showNoWebGpu(`WebGPU is exposed but no usable adapter was found: ${m.error}`);
      } else {
        setError(`CPU mode failed: ${m.error}`);
      }
      return;
    case 'stats':
      renderStats(m.stats);
      return;
    case 'log':
      log(m.level, m.msg);
      return;
    case 'trace':
      // The audit trace (?trace=1): handed to whatever the embedding auditor installed (a test's
      // exposed function); the page itself shows nothing of it.
      (window as unknown as { __workerTrace?: (e: unknown) => void }).__workerTrace?.(m.event);
      return;
    case 'stopped':
      running = false;
      startBtn.disabled = !device;
      stopBtn.disabled = true;
      text('state', 'stopped');
      text('detail', m.reason);
      if (m.refused) {
        joinRefused.dataset.code = m.refused;
        joinRefused.textContent = refusalMessage(m.refused, startedWithToken);
        joinRefused.hidden = false;
      }
      setPageState('stopped');
      return;
  }
};
engine.onerror = (ev) => {
  setError(`The engine worker failed: ${ev.message}`);
  setPageState('error');
};

function showNoWebGpu(reason: string): void {
  $('no-webgpu').hidden = false;
  text('no-webgpu-reason', reason);
  text('webgpu-status', 'WebGPU is not available here.');
  setPageState('no-webgpu');
}

cpuOptin.addEventListener('change', () => {
  useCpu = cpuOptin.checked;
  device = undefined;
  startBtn.disabled = true;
  if (useCpu) send({ type: 'probe', cpu: true });
});

capInput.addEventListener('input', renderCapPreview);

startBtn.addEventListener('click', () => {
  setError('');
  const cap = readCap();
  if (cap === null) {
    setError(`Memory cap "${capInput.value}" is not a size: use e.g. 1GiB, 512MiB or 2GB, or leave it empty.`);
    return;
  }
  const name = nameInput.value.trim().replace(/[\u0000-\u001f\u007f]/g, '').slice(0, 64);
  const joinToken = readJoinToken();
  startedWithToken = joinToken !== undefined;
  joinRefused.hidden = true;
  joinRefused.textContent = '';
  delete joinRefused.dataset.code;
  running = true;
  startBtn.disabled = true;
  stopBtn.disabled = false;
  setPageState('starting');
  send({ type: 'start', url: coordinatorUrl, urls: coordinatorUrls, cpu: useCpu, capBytes: cap, name: name || undefined, joinToken, trace: new URLSearchParams(location.search).get('trace') === '1' });
});

stopBtn.addEventListener('click', () => {
  stopBtn.disabled = true;
  send({ type: 'stop', reason: 'stopped by the volunteer' });
});

document.addEventListener('visibilitychange', () => {
  if (!running) return;
  if (document.hidden && pauseHidden.checked) {
    pausedForHidden = true;
    send({ type: 'pause' });
  } else if (!document.hidden && pausedForHidden) {
    pausedForHidden = false;
    send({ type: 'resume' });
  }
});
pauseHidden.addEventListener('change', () => {
  if (!pauseHidden.checked && pausedForHidden) {
    pausedForHidden = false;
    send({ type: 'resume' });
  }
});

// Closing the tab: say bye so the lease goes back to the pool at once (the socket closing when the
// worker dies would also be noticed, but later).
window.addEventListener('pagehide', () => {
  if (running) send({ type: 'stop', reason: 'tab closed' });
});

if (params.get('backend') === 'cpu') {
  cpuOptin.checked = true;
  useCpu = true;
  send({ type: 'probe', cpu: true });
} else if (!('gpu' in navigator)) {
  showNoWebGpu('This browser does not expose WebGPU (navigator.gpu is missing).');
} else {
  send({ type: 'probe', cpu: false });
}
