// Held-out evaluation of --objective dpo (docs/dpo.md), on the coordinator's CPU between steps:
// over up to `samples` held-out pairs, the mean DPO loss, the preference accuracy (share of pairs
// whose policy log-prob of chosen exceeds that of rejected) and the mean implicit reward margin
// beta * (log-ratio of chosen - log-ratio of rejected), against the reference log-probs computed
// at start. When every prompt of the pairs is a prompt of the built-in task, also that task's
// exact match on its own held-out split (Evaluator), which preference tuning must not collapse.

import { arithAnswer, arithRevDataset, arithRevTaskOf, ARITH_REV_ANSWER_FORMATS, ARITH_REV_MAX_POSITIONS, type ArithRevAnswers, type ArithRevTask, type EvalExample, type TaskAccuracy } from '../../shared/data/index.ts';
import type { PreferenceDataset } from '../../shared/data/preference-data.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { createCpuBackend, type CpuBackend } from '../../shared/model/cpu-backend.ts';
import { pairFigures, preferenceSummary, type PairFigures } from '../../shared/model/dpo.ts';
import { Evaluator } from './evaluate.ts';
import type { ReferenceLogProbs } from './reference.ts';

const yieldNow = () => new Promise<void>((r) => setImmediate(r));
const PAIRS_PER_FORWARD = 16;

export interface PreferenceEvalOutcome {
  loss: number;
  preferenceAccuracy: number;
  rewardMargin: number;
  pairs: number;
  /** Exact match of the instruction task (null when the pairs are not of one). */
  accuracy: number | null;
  tasks: TaskAccuracy[];
  samples: EvalExample[];
}

/** The built-in task's tasks when every prompt belongs to it, else null. */
export function builtInTasksOf(ds: PreferenceDataset): ArithRevTask[] | null {
  const tasks = new Set<ArithRevTask>();
  for (const r of [...ds.train, ...ds.held]) {
    try {
      tasks.add(arithRevTaskOf(r.prompt));
    } catch {
      return null;
    }
  }
  return [...tasks];
}

/**
 * The answer format the pairs' chosen answers are written in (the built-in task's `--answers`): the
 * format under which most chosen arithmetic answers are the correct result (a model trained with
 * one format is judged in it), `fallback` when no arithmetic pair tells.
 */
export function answersOf(ds: PreferenceDataset, fallback: ArithRevAnswers): ArithRevAnswers {
  const hits = new Map<ArithRevAnswers, number>();
  for (const r of [...ds.train, ...ds.held]) {
    const m = /^(\d+)([+-])(\d+)=$/.exec(r.prompt);
    if (!m) continue;
    const value = m[2] === '+' ? Number(m[1]) + Number(m[3]) : Number(m[1]) - Number(m[3]);
    for (const f of ARITH_REV_ANSWER_FORMATS) {
      if (r.chosen === arithAnswer(value, m[2] === '+' ? 'addition' : 'subtraction', f)) hits.set(f, (hits.get(f) ?? 0) + 1);
    }
  }
  let best = fallback;
  for (const [f, n] of hits) if (n > (hits.get(best) ?? 0)) best = f;
  return best;
}

export class PreferenceEvaluator {
  private readonly backend: CpuBackend;
  /** Exact match of the built-in task the pairs are prompts of (null: none). */
  private readonly exact: Evaluator | null;
  readonly samples: number;

  constructor(
    private readonly model: ModelConfig,
    private readonly ds: PreferenceDataset,
    private readonly reference: ReferenceLogProbs,
    private readonly beta: number,
    opts: { samples?: number; seed: number; answers?: ArithRevAnswers },
  ) {
    this.backend = createCpuBackend(model);
    this.samples = Math.min(opts.samples ?? ds.heldOut.size, ds.heldOut.size);
    const tasks = builtInTasksOf(ds);
    this.exact = tasks && ds.T >= ARITH_REV_MAX_POSITIONS
      ? new Evaluator(model, arithRevDataset({ seed: opts.seed, T: ds.T, tasks, answers: answersOf(ds, opts.answers ?? 'plain') }), opts.samples ?? 200)
      : null;
  }

  /** One log line of an evaluation at `step`. */
  describe(step: number, r: PreferenceEvalOutcome): string {
    return `eval at step ${step}: preference accuracy ${(100 * r.preferenceAccuracy).toFixed(1)}% of ${r.pairs} held-out pairs, `
      + `reward margin ${r.rewardMargin.toFixed(4)}, dpo loss ${r.loss.toFixed(4)}`
      + (r.accuracy === null ? '' : `, exact match ${(100 * r.accuracy).toFixed(1)}%`);
  }

  async run(params: Float32Array): Promise<PreferenceEvalOutcome> {
    const frozen = new Float32Array(params); // training may move on meanwhile
    await this.backend.setParams(frozen);
    const figs: PairFigures[] = [];
    for (let s = 0; s < this.samples; s += PAIRS_PER_FORWARD) {
      const ids = Array.from({ length: Math.min(PAIRS_PER_FORWARD, this.samples - s) }, (_, i) => s + i);
      const batch = this.ds.pairBatch(ids, 'heldOut');
      const policy = await this.backend.sequenceLogProbs(batch);
      figs.push(pairFigures(policy, { batch, pairs: ids.length, ref: this.reference.heldOut.subarray(2 * s, 2 * s + 2 * ids.length), beta: this.beta }));
      await yieldNow();
    }
    const sum = preferenceSummary(figs, this.beta);
    const ex = this.exact ? await this.exact.run(frozen) : null;
    return {
      loss: sum.loss, preferenceAccuracy: sum.preferenceAccuracy, rewardMargin: sum.rewardMargin, pairs: sum.pairs,
      accuracy: ex?.accuracy ?? null, tasks: ex?.tasks ?? [], samples: ex?.samples ?? [],
    };
  }

  dispose(): void {
    this.backend.dispose();
    this.exact?.dispose();
  }
}
