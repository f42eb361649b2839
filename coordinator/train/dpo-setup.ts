// Wiring of --objective dpo for startCoordinator (docs/dpo.md): the preference data (`--data
// FILE.jsonl`, or `--data preferences` = the run dir's collected preferences.jsonl, whose torn last
// line is skipped with a warning), the frozen reference's log-probs (reference.ts), the trainer's
// switch to pair leases, and the held-out preference evaluator.

import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { loadPreferenceFile, type PreferenceDataset } from '../../shared/data/preference-data.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';
import type { CoordinatorConfig } from '../config.ts';
import { importForTraining } from '../export/import.ts';
import { PREFERENCES_FILE } from '../preferences/store.ts';
import { PreferenceEvaluator } from './preference-eval.ts';
import { PreferenceTraining } from './preference-training.ts';
import { computeReference, type ReferenceLogProbs } from './reference.ts';
import type { Trainer } from './trainer.ts';

/** `--data preferences` or a path: the pairs, every row validated (file:line errors, exit 2). */
export function loadPreferenceData(config: CoordinatorConfig, runDir: string, T: number): PreferenceDataset {
  const collected = config.data === 'preferences';
  const path = collected ? join(runDir, PREFERENCES_FILE) : resolve(config.data!);
  return loadPreferenceFile(path, { T, seed: config.seed, collected });
}

/** The reference weights: `init` = the run's starting weights (never a checkpoint of it), or an export. */
function referenceParams(config: CoordinatorConfig, model: ModelConfig): { params: Float32Array; source: string } {
  if (config.reference !== 'init') {
    const dir = resolve(config.reference);
    return { params: importForTraining(dir, model).params, source: dir };
  }
  if (config.initFrom !== undefined) {
    const dir = resolve(config.initFrom);
    return { params: importForTraining(dir, model).params, source: `init (${dir})` };
  }
  return { params: initParameters(model, config.seed), source: `init (seeded, seed ${config.seed})` };
}

export async function setUpPreferenceTraining(
  config: CoordinatorConfig, model: ModelConfig, trainer: Trainer, ds: PreferenceDataset, log: Logger,
): Promise<{ reference: ReferenceLogProbs; evaluator: PreferenceEvaluator | null }> {
  for (const w of ds.warnings) log.warn(w);
  const ref = referenceParams(config, model);
  const reference = await computeReference(model, ref.params, ds, ref.source);
  log.info({ pairs: ds.size, heldOut: ds.heldOut.size, reference: reference.source, ms: reference.ms },
    `dpo: reference log-probs of ${ds.size + ds.heldOut.size} pairs computed in ${reference.ms} ms`);
  trainer.usePreferences(new PreferenceTraining(ds, reference, config.dpoBeta));
  // Fewer than 20 pairs hold none out (preference-data.ts): nothing to evaluate on.
  if (config.evalEvery > 0 && ds.heldOut.size === 0) log.warn(`dpo: ${ds.size} pairs, none held out (20 or more are needed): no preference evaluation`);
  const evaluator = config.evalEvery > 0 && ds.heldOut.size > 0
    ? new PreferenceEvaluator(model, ds, reference, config.dpoBeta, { samples: config.evalSamples, seed: config.seed, answers: config.answers })
    : null;
  return { reference, evaluator };
}
