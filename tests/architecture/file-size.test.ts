// Small files with one job each: a source file over LIMIT lines must say in its header comment why
// it is long (a line containing "Why this file is long:"), so size is a decision, not an accident.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIRS = ['shared', 'coordinator', 'worker-web', 'dashboard', 'bench', 'tests'];
const LIMIT = 400;
const MARK = 'Why this file is long:';
/** Lines of the leading comment block searched for the mark. */
const HEADER_LINES = 40;

function* sourceFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.') || name === 'dist') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sourceFiles(p);
    else if (/\.(ts|wgsl)$/.test(name)) yield p;
  }
}

describe('file size', () => {
  it(`every source file over ${LIMIT} lines states why in its header`, () => {
    const unexplained: string[] = [];
    let seen = 0;
    for (const d of DIRS) {
      for (const file of sourceFiles(join(ROOT, d))) {
        seen++;
        const lines = readFileSync(file, 'utf8').split('\n');
        if (lines.length <= LIMIT) continue;
        if (!lines.slice(0, HEADER_LINES).some((l) => l.includes(MARK))) unexplained.push(`${relative(ROOT, file)} (${lines.length} lines)`);
      }
    }
    expect(seen).toBeGreaterThan(150);
    expect(unexplained).toEqual([]);
  });
});
