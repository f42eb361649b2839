// The memory simulator page: POST /api/simulate with the CLI's inputs, then show the verdict, the
// arithmetic behind it, and one bar per device (or device group) of the cluster plan.

import './styles.css';
import { PRESET_NAMES } from '../../shared/model/config.ts';
import { describeError, postJson } from './api.ts';
import { byId, clear, el, setText } from './dom.ts';
import { legend, renderMemoryBars } from './memory-bars.ts';
import { markNav } from './nav.ts';
import { arithmeticLines, churnLines, deviceBars, verdict, type SimulateRequest, type SimulateResult } from './sim-view.ts';
import { pipelinesView, renderPipelineList, simPipelineSource } from './pipeline-view.ts';

markNav();

const modelSel = byId<HTMLSelectElement>('sim-model');
for (const p of PRESET_NAMES) modelSel.appendChild(el('option', { attrs: { value: p } }, p));
modelSel.value = 'gpt2-medium';

function optionalInt(id: string, label: string): number | undefined {
  const v = byId<HTMLInputElement>(id).value.trim();
  if (v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${label} must be a positive whole number`);
  return n;
}

export function readRequest(): SimulateRequest {
  const paramsText = byId<HTMLInputElement>('sim-params').value.trim();
  const req: SimulateRequest = {
    mode: byId<HTMLSelectElement>('sim-mode').value as SimulateRequest['mode'],
    precision: byId<HTMLSelectElement>('sim-precision').value as SimulateRequest['precision'],
  };
  if (paramsText) {
    const n = Number(paramsText);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`parameter count must be a positive number (e.g. 7e9), got "${paramsText}"`);
    req.params = n;
  } else {
    req.model = modelSel.value;
  }
  const cluster = byId<HTMLInputElement>('sim-cluster').value.trim();
  if (cluster) req.cluster = cluster;
  const session = byId<HTMLInputElement>('sim-session').value.trim();
  const offline = byId<HTMLInputElement>('sim-offline').value.trim();
  if (offline && !session) throw new Error('churn: give the mean session length too (e.g. 4h)');
  if (session) {
    if (!cluster) throw new Error('churn needs a cluster');
    req.churn = { meanSession: session, ...(offline ? { meanOffline: offline } : {}) };
  }
  const batch = optionalInt('sim-batch', 'Micro-batch');
  const seq = optionalInt('sim-seq', 'Sequence length');
  if (batch !== undefined) req.batch = batch;
  if (seq !== undefined) req.seq = seq;
  return req;
}

function show(res: SimulateResult): void {
  byId('sim-result').hidden = false;
  const v = verdict(res);
  const vEl = byId('sim-verdict');
  setText(vEl, v.text);
  vEl.dataset.fits = String(v.fits);
  const arith = byId('sim-arith');
  clear(arith);
  for (const line of arithmeticLines(res)) arith.appendChild(el('div', {}, line));
  renderMemoryBars(byId('sim-bars'), deviceBars(res), 'No cluster given: add one above to see the per-device plan.');
  // The pipelines as the live dashboard draws them (estimated bubble and tokens/s), the first 6.
  const pipes = pipelinesView(simPipelineSource(res, 6));
  byId('sim-pipelines-box').hidden = pipes.length === 0;
  const total = res.cluster?.pipelines ?? 0;
  setText(byId('sim-pipelines-count'), total > pipes.length ? `${total} pipelines (the first ${pipes.length} drawn), estimated` : `${total} pipeline${total === 1 ? '' : 's'}, estimated`);
  renderPipelineList(byId('sim-pipelines'), pipes);
  const extra = byId('sim-extra');
  clear(extra);
  const churn = byId('sim-churn');
  churn.hidden = !res.churn;
  const cl = byId('sim-churn-lines');
  clear(cl);
  for (const line of churnLines(res)) cl.appendChild(el('div', {}, line));
  const shown = res.cluster?.assignments.length ?? 0;
  if (shown > 200) extra.appendChild(el('p', { className: 'note' }, `Showing the first 200 of ${shown} devices.`));
  const unassigned = res.cluster?.unassigned ?? [];
  if (unassigned.length > 0) {
    extra.appendChild(el('h3', {}, `Unassigned devices (${unassigned.length})`));
    const ul = el('ul', { testid: 'sim-unassigned' });
    for (const u of unassigned.slice(0, 50)) ul.appendChild(el('li', {}, `device ${u.device} (${u.spec}): ${u.reason}`));
    extra.appendChild(ul);
  }
}

byId('sim-legend').appendChild(legend());
byId<HTMLFormElement>('sim-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = byId('sim-error');
  setText(err, '');
  const btn = byId<HTMLButtonElement>('sim-submit');
  try {
    const req = readRequest();
    btn.disabled = true;
    show(await postJson<SimulateResult>('/api/simulate', req));
  } catch (e) {
    setText(err, describeError(e));
  } finally {
    btn.disabled = false;
  }
});
