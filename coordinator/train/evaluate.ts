// Periodic evaluation on the held-out split, on the coordinator's CPU (reference backend):
// mean masked loss over up to `samples` held-out rows, and for instruction datasets exact-match
// accuracy of greedy completions (dataset.evaluate, KV-cache decoder), per task for the built-in
// task, with a few sample answers for the dashboard. `samples` defaults to the whole held-out split
// for the built-in task (200 pairs) and to 32 for a --data file. Small by design: it runs between
// steps, and yields to the event loop often so heartbeats and sockets stay served.

import { createCpuBackend, type CpuBackend } from '../../shared/model/cpu-backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { Dataset, EvalExample, TaskAccuracy } from '../../shared/data/index.ts';
import { buildMicroBatch } from '../../shared/data/index.ts';
import { generateTokens } from '../../shared/model/generate.ts';
import { EOS_ID, decode, encode } from '../../shared/tokenizer.ts';

const yieldNow = () => new Promise<void>((r) => setImmediate(r));

/** --eval-samples when not given and the data is a --data file. */
export const DEFAULT_FILE_EVAL_SAMPLES = 32;
/** Exact match at which the log says the model is ready to try. */
export const READY_ACCURACY = 0.95;

export interface EvalOutcome {
  loss: number;
  accuracy: number | null;
  rows: number;
  pairs: number;
  /** Per-task exact match (built-in task); [] otherwise. */
  tasks: TaskAccuracy[];
  /** The same few held-out prompts each time, with the model's answers. */
  samples: EvalExample[];
}

export class Evaluator {
  private backend: CpuBackend;
  /** Held-out rows/pairs per evaluation (resolved default, see the header). */
  readonly samples: number;
  /** Step at which exact match first reached READY_ACCURACY (null: not yet). */
  readyAt: number | null = null;

  constructor(
    private readonly model: ModelConfig,
    private readonly dataset: Dataset,
    samples: number | undefined,
  ) {
    this.samples = samples ?? (dataset.builtIn ? dataset.heldOut.size : DEFAULT_FILE_EVAL_SAMPLES);
    this.backend = createCpuBackend(model);
  }

  /**
   * The log line of an evaluation at `step` (0-based index of the last step trained), and, the
   * first time exact match reaches 95%, a second line saying the model can be tried now.
   */
  describe(step: number, r: EvalOutcome): { line: string; ready: string | null } {
    const parts = [`eval at step ${step}: loss ${r.loss.toFixed(4)}`];
    if (r.accuracy !== null) {
      parts.push(`exact match ${pct(r.accuracy)} of ${r.pairs} held-out`);
      if (r.tasks.length) parts.push(`(${r.tasks.map((t) => `${t.task} ${pct(t.accuracy)}`).join(', ')})`);
      const s = r.samples.find((x) => x.correct) ?? r.samples[0];
      if (s) parts.push(`e.g. ${JSON.stringify(s.prompt)} -> ${this.shown(s.prompt, s.output)}${s.correct ? '' : ` (want ${JSON.stringify(s.response)})`}`);
    }
    let ready: string | null = null;
    if (r.accuracy !== null && r.accuracy >= READY_ACCURACY && this.readyAt === null) {
      this.readyAt = step;
      const s = r.samples.find((x) => x.correct);
      ready = `the model answers ${pct(r.accuracy)} of held-out prompts exactly at step ${step}`
        + (s ? ` (${JSON.stringify(s.prompt)} -> ${this.shown(s.prompt, s.output)})` : '')
        + `: try it now in the dashboard's playground (/playground.html) or with \`npm run generate -- --prompt ${JSON.stringify(s?.prompt ?? '12+34=')}\``;
    }
    return { line: parts.join(', ').replace(', (', ' ('), ready };
  }

  /** An answer as logged: as written, and how it reads when the task writes it otherwise ("640" (= 46)). */
  private shown(prompt: string, output: string): string {
    const reads = this.dataset.readAnswer?.(prompt, output) ?? null;
    return JSON.stringify(output) + (reads === null ? '' : ` (= ${reads})`);
  }

  /**
   * Greedy completion of `prompt` with the KV-cache decoder, up to the row length, ended at EOS.
   * Yields to the event loop between tokens: evaluation must never starve heartbeats.
   */
  private async greedy(params: Float32Array, prompt: string): Promise<string> {
    const ids = encode(prompt);
    const maxTokens = Math.max(0, Math.min(this.dataset.T, this.model.contextLength) - ids.length);
    const it = generateTokens(this.model, params, ids, { maxTokens, eosId: EOS_ID, temperature: 0 });
    const out: number[] = [];
    for (;;) {
      const r = it.next();
      if (r.done) break;
      out.push(r.value);
      await yieldNow();
    }
    return decode(out);
  }

  async run(params: Float32Array): Promise<EvalOutcome> {
    await this.backend.setParams(params);
    const held = this.dataset.heldOut;
    const rows = Math.min(this.samples, held.size);
    let lossSum = 0;
    let tokens = 0;
    const chunk = 8;
    for (let s = 0; s < rows; s += chunk) {
      const ids = Array.from({ length: Math.min(chunk, rows - s) }, (_, i) => s + i);
      const r = await this.backend.forward(buildMicroBatch(held, ids));
      lossSum += r.loss * r.tokens;
      tokens += r.tokens;
      await yieldNow();
    }
    let accuracy: number | null = null;
    let pairs = 0;
    let tasks: TaskAccuracy[] = [];
    let samples: EvalExample[] = [];
    if (this.dataset.evaluate && held.pairs && held.pairs.length > 0) {
      const frozen = new Float32Array(params); // training may move on while we decode
      const res = await this.dataset.evaluate((p) => this.greedy(frozen, p), { limit: this.samples });
      accuracy = res.accuracy;
      pairs = res.total;
      tasks = res.tasks;
      samples = res.samples;
    }
    return { loss: tokens > 0 ? lossSum / tokens : 0, accuracy, rows, pairs, tasks, samples };
  }

  dispose(): void {
    this.backend.dispose();
  }
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}
