// The DPO end-to-end test's preference set (issue 16): for prompts of the built-in task's
// addition TRAIN split (arith-rev seed 1; the held-out split stays unseen for exact match), the
// correct sum is chosen and an off-by-one sum (+1 or -1, seeded) rejected. One
// {"prompt","chosen","rejected"} JSON object per line, the format POST /api/preferences collects.
//   npx tsx tests/dpo/make-preferences.ts [--pairs 1200] [--seed 3] > prefs.jsonl

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { arithRevPairs } from '../../shared/data/index.ts';
import type { PreferenceRow } from '../../shared/data/preference-rows.ts';
import { Rng } from '../../shared/rng.ts';

export function offByOnePreferences(pairs: number, seed: number): PreferenceRow[] {
  const train = arithRevPairs(1, 200, 6000, ['addition']).train;
  if (pairs > train.length) throw new Error(`make-preferences: at most ${train.length} pairs, asked ${pairs}`);
  const rng = new Rng(seed);
  const order = Array.from({ length: train.length }, (_, i) => i);
  rng.shuffle(order);
  return order.slice(0, pairs).map((i) => {
    const { prompt, response } = train[i];
    const sum = Number(response);
    return { prompt, chosen: response, rejected: String(sum + (rng.int(2) === 0 ? 1 : -1)) };
  });
}

export function toJsonl(rows: PreferenceRow[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { pairs: { type: 'string' }, seed: { type: 'string' } } });
  process.stdout.write(toJsonl(offByOnePreferences(Number(values.pairs ?? 1200), Number(values.seed ?? 3))));
}
