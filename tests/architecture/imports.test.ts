// The import graph of the project's own source, read by madge (the same resolver the bundlers use
// for `.ts` imports): no cycles anywhere, and the fixed layout holds — coordinator/, worker-web/
// and dashboard/ import shared/ and never each other; shared/ imports none of them.
// Type-only imports count: a cycle through types still ties two modules' designs together.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
interface MadgeResult {
  obj(): Record<string, string[]>;
  circular(): string[][];
  warnings(): { skipped: string[] };
}
const madge = require('madge') as (paths: string[], cfg: Record<string, unknown>) => Promise<MadgeResult>;

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SOURCE_DIRS = ['shared', 'coordinator', 'worker-web', 'dashboard', 'bench', 'tests'];
/** Which top-level folders each layer may import (besides itself and npm packages). */
const MAY_IMPORT: Record<string, string[]> = {
  shared: [],
  coordinator: ['shared'],
  'worker-web': ['shared'],
  dashboard: ['shared'],
};

async function graph(): Promise<MadgeResult> {
  return madge(SOURCE_DIRS, {
    baseDir: ROOT,
    fileExtensions: ['ts'],
    tsConfig: `${ROOT}/tsconfig.json`,
    excludeRegExp: [/node_modules/, /\.build\//, /dist\//],
  });
}

describe('import graph', () => {
  it('has no import cycle among the source files', async () => {
    const g = await graph();
    // Sanity: the graph really holds the project (a misconfigured resolver would see no edges).
    const files = Object.keys(g.obj());
    expect(files.length).toBeGreaterThan(150);
    expect(g.obj()['coordinator/coordinator.ts']?.length ?? 0).toBeGreaterThan(5);
    expect(g.circular().map((c) => c.join(' > '))).toEqual([]);
  }, 60_000);

  it('keeps the layout: coordinator, worker-web and dashboard import shared/ and never each other', async () => {
    const g = (await graph()).obj();
    const offences: string[] = [];
    for (const [file, deps] of Object.entries(g)) {
      const layer = file.split('/')[0]!;
      const allowed = MAY_IMPORT[layer];
      if (!allowed) continue;
      for (const dep of deps) {
        const target = dep.split('/')[0]!;
        if (target !== layer && SOURCE_DIRS.includes(target) && !allowed.includes(target)) offences.push(`${file} -> ${dep}`);
      }
    }
    expect(offences).toEqual([]);
  }, 60_000);
});
