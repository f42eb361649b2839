// The Pipelines panel (issue 12, docs/pipeline.md): per pipeline from StatusSnapshot.pipelines, a bar
// over the model's blocks [0, nLayer) cut into its stages (which worker holds which blocks, the
// embeddings E and the head H marked, micro-batches in flight per stage), the bubble and the
// measured tokens/s, and one memory bar per stage: weights / gradients / Adam / activations by the
// stage model the coordinator planned with (shared/memory/stage-memory.ts: 20 B/param on the
// stage's params, wte on both ends, + one micro-batch's activations and inputs for inFlight)
// against the worker's budget. pipelinesView() is pure (unit-tested); renderPipelines() writes text
// nodes only and sets widths through the CSSOM (dom.ts; strict CSP). The panel is created on first
// use after the memory plan and hidden while there are no pipelines. The simulator page draws its
// cluster plan's pipelines with the same view (simPipelineSource: estimated bubble and tokens/s).

import { byId, clear, el, setText } from './dom.ts';
import { formatInt, formatRate } from './format.ts';
import { renderMemoryBars, type MemoryBar } from './memory-bars.ts';
import { stageBreakdown, stageShape } from '../../shared/memory/stage-memory.ts';
import type { StatusSnapshot, WorkerRow } from '../../shared/protocol/dashboard.ts';
import type { SimulateResult } from '../../shared/memory/simulate.ts';

export interface StageSegment {
  workerId: string;
  from: number;
  to: number;
  embeddings: boolean;
  head: boolean;
  inFlight: number;
  /** Position on the bar, percent of the model's blocks. */
  leftPct: number;
  widthPct: number;
  /** "w3 · E + blocks 0–1" */
  label: string;
  /** "3 in flight" */
  flight: string;
}

export interface PipelineView {
  id: string;
  /** "3 stages · micro-batch 2 · 3 in flight" */
  summary: string;
  /** "40%" (or "—" before its first share) */
  bubble: string;
  tokensPerSec: string;
  nLayer: number;
  segments: StageSegment[];
  /** Per stage, in stage order; empty when the model config is unknown. */
  bars: MemoryBar[];
}

/** What the view reads: StatusSnapshot's pipelines, its workers' budgets and sequence length, the model. */
export interface PipelineSource {
  pipelines?: StatusSnapshot['pipelines'];
  workers?: Array<Pick<WorkerRow, 'id' | 'budgetBytes'> & { plan?: Partial<WorkerRow['plan']> }>;
  model?: Pick<StatusSnapshot['model'], 'config'>;
}
type Source = PipelineSource;

const int = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);
const fin = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function blocks(from: number, to: number): string {
  return to - from === 1 ? `block ${from}` : `blocks ${from}–${to - 1}`;
}

/** The panel's content; an empty list when the coordinator reports no pipelines. Malformed stages are skipped. */
export function pipelinesView(s: Source): PipelineView[] {
  const config = s.model?.config;
  const L = int(config?.nLayer);
  if (!config || !L || L < 1 || !Array.isArray(s.pipelines)) return [];
  const workers = new Map((s.workers ?? []).map((w) => [String(w.id), w]));
  const out: PipelineView[] = [];
  for (const p of s.pipelines) {
    if (!p || !Array.isArray(p.stages)) continue;
    const microBatch = int(p.microBatch);
    const segments: StageSegment[] = [];
    const bars: MemoryBar[] = [];
    for (const st of p.stages) {
      const from = int(st?.layers?.[0]);
      const to = int(st?.layers?.[1]);
      if (from === null || to === null || from < 0 || to > L || to <= from) continue;
      const workerId = String(st.workerId ?? '');
      const inFlight = int(st.inFlight) ?? int(p.inFlight) ?? 0;
      const embeddings = st.embeddings === true;
      const head = st.head === true;
      segments.push({
        workerId, from, to, embeddings, head, inFlight,
        leftPct: (100 * from) / L, widthPct: (100 * (to - from)) / L,
        label: `${workerId} · ${embeddings ? 'E + ' : ''}${blocks(from, to)}${head ? ' + H' : ''}`,
        flight: `${inFlight} in flight`,
      });
      const w = workers.get(workerId);
      const seqLen = int(w?.plan?.seqLen);
      if (microBatch && microBatch > 0 && seqLen && seqLen > 0) {
        bars.push({
          key: `${p.id}:${workerId}`,
          label: workerId,
          budgetBytes: fin(w?.budgetBytes) ?? fin(w?.plan?.budgetBytes) ?? 0,
          breakdown: stageBreakdown(config, stageShape(config, from, to), microBatch, seqLen, inFlight),
          note: `${p.id} ${embeddings ? 'E + ' : ''}${blocks(from, to)}${head ? ' + H' : ''}, ${microBatch} x ${seqLen} tokens, ${inFlight} in flight`,
        });
      }
    }
    const bubble = fin(p.bubble);
    const tps = fin(p.tokensPerSec);
    out.push({
      id: String(p.id),
      summary: `${segments.length} stage${segments.length === 1 ? '' : 's'} · micro-batch ${microBatch ?? '—'} · ${int(p.inFlight) ?? '—'} in flight`,
      bubble: bubble === null || tps === null || tps <= 0 ? '—' : `${(bubble * 100).toFixed(0)}%`,
      tokensPerSec: tps === null || tps <= 0 ? '—' : `${formatRate(tps)} tokens/s`,
      nLayer: L, segments, bars,
    });
  }
  return out;
}

/**
 * A simulated cluster plan (POST /api/simulate) in the live panel's shape: its first `max` pipelines,
 * devices as workers `device N`, the estimated bubble and tokens/s. Empty without a config or pipelines.
 */
export function simPipelineSource(r: SimulateResult, max = 20): PipelineSource {
  const c = r.cluster;
  if (!r.config || !c) return {};
  const byDevice = new Map(c.assignments.map((a) => [a.device, a]));
  const pipelines = c.units.filter((u) => u.kind === 'pipeline').slice(0, max).map((u) => {
    const stages = c.stages.filter((s) => s.pipeline === u.index).sort((a, b) => a.stage - b.stage);
    const inFlight = u.inFlight ?? stages.length;
    return {
      id: String(u.index), inFlight, microBatch: byDevice.get(stages[0]?.device)?.microBatch ?? 0,
      bubble: u.bubble ?? 0, tokensPerSec: u.tokensPerSec,
      stages: stages.map((s) => ({ workerId: `device ${s.device}`, layers: s.layerRange, embeddings: s.embeddings, head: s.head, inFlight })),
    };
  });
  const workers = c.stages.map((s) => {
    const a = byDevice.get(s.device)!;
    return { id: `device ${s.device}`, budgetBytes: a.memoryBytes, plan: { seqLen: a.seqLen } };
  });
  return { pipelines, workers, model: { config: r.config } };
}

/** Each stage worker's bar by worker id (for the cluster memory plan). */
export function stageBarsByWorker(list: PipelineView[]): Map<string, MemoryBar> {
  const m = new Map<string, MemoryBar>();
  for (const v of list) for (const b of v.bars) m.set(b.label, b);
  return m;
}

function pipelineBlock(v: PipelineView): HTMLElement {
  const track = el('div', { className: 'pipe-track', testid: 'pipe-track' });
  for (const s of v.segments) {
    const seg = el('div', {
      className: `pipe-seg${s.embeddings ? ' ends-e' : ''}${s.head ? ' ends-h' : ''}`, testid: 'pipe-stage',
      title: `${s.label}; ${s.flight}`,
      attrs: {
        'data-worker-id': s.workerId, 'data-from': String(s.from), 'data-to': String(s.to),
        'data-embeddings': String(s.embeddings), 'data-head': String(s.head), 'data-in-flight': String(s.inFlight),
      },
    }, el('span', { className: 'pipe-label' }, s.label), el('span', { className: 'pipe-flight' }, s.flight));
    seg.style.left = `${s.leftPct.toFixed(3)}%`;
    seg.style.width = `${s.widthPct.toFixed(3)}%`;
    track.appendChild(seg);
  }
  const mem = el('div', { className: 'pipe-mem', testid: 'pipe-mem' });
  renderMemoryBars(mem, v.bars, 'No stage plans (model config or sequence length unknown).');
  return el('div', { className: 'pipeline', testid: 'pipeline', attrs: { 'data-pipeline-id': v.id } },
    el('h3', {}, `Pipeline ${v.id}`, ' ', el('span', { className: 'note' }, v.summary)),
    el('p', { className: 'pipe-figs' },
      'Bubble ', el('span', { testid: 'pipe-bubble' }, v.bubble), ' · ', el('span', { testid: 'pipe-tps' }, v.tokensPerSec)),
    track,
    el('div', { className: 'pipe-scale' }, el('span', {}, 'block 0'), el('span', {}, `block ${formatInt(v.nLayer - 1)}`)),
    mem);
}

/** Draw `list` into `box` (the live panel's list, or the simulator's). */
export function renderPipelineList(box: HTMLElement, list: PipelineView[]): void {
  clear(box);
  for (const v of list) box.appendChild(pipelineBlock(v));
}

/** Fill (creating it once, after the memory plan's panel) the Pipelines panel; hidden without pipelines. */
export function renderPipelines(list: PipelineView[]): void {
  let panel = document.getElementById('pipelines');
  if (!panel) {
    if (list.length === 0) return;
    panel = el('section', { id: 'pipelines', className: 'panel', testid: 'pipelines' },
      el('h2', {}, 'Pipelines'),
      el('p', { className: 'note' }, 'Stage workers in chains over the model\'s blocks: E = token and position embeddings, H = final LayerNorm and LM head (its own copy of the tied wte). Memory per stage: 20 B/param on its parameters + one micro-batch\'s activations and the inputs it keeps for the micro-batches in flight.'),
      el('p', { id: 'pipelines-count', testid: 'pipelines-count' }),
      el('div', { id: 'pipelines-list' }));
    byId('memory-plan').closest('section')!.after(panel);
  }
  panel.hidden = list.length === 0;
  setText(byId('pipelines-count'), `${list.length} pipeline${list.length === 1 ? '' : 's'}`);
  renderPipelineList(byId('pipelines-list'), list);
}
