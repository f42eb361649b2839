// The pass/fail verdict of `npm run bench:kernels`: which subjects ran, and every reason the run
// cannot count as a pass. A benchmark that exits 0 while our engine failed to build, or while a
// requested peer was absent or wrong, would report speeds of nothing; so each of those is a
// failure line, and any failure line makes the exit code 1.

/** Per shape and subject: sampled elements right, wrong (or work skipped), or the subject threw. */
export type Check = 'ok' | 'MISMATCH' | 'FAILED';

/** What the verdict reads of a matmul row. */
export interface CheckedRow {
  check: Record<string, Check>;
  /** Subjects left out of this shape because their last rate predicts a run over --max-run-ms. */
  skipped: string[];
}

/** Requested subjects: null when it started, else why it is not available. `ours` is always requested. */
export type Requested = Record<string, string | null>;

export interface Verdict {
  /** One line per subject (requested or not) saying what it ran. */
  ran: Record<string, string>;
  failures: string[];
}

export function matmulVerdict(rows: CheckedRow[], requested: Requested): Verdict {
  const ran: Record<string, string> = {};
  const failures: string[] = [];
  for (const [peer, unavailable] of Object.entries(requested)) {
    if (unavailable) {
      ran[peer] = unavailable;
      failures.push(`${peer} ${unavailable}`);
      continue;
    }
    const n = (v: Check) => rows.filter((r) => r.check[peer] === v).length;
    const ok = n('ok');
    const wrong = n('MISMATCH');
    const failed = n('FAILED');
    const skipped = rows.filter((r) => r.skipped.includes(peer)).length;
    // A shape where a started subject has neither a check nor a skip was silently dropped.
    const missing = rows.length - ok - wrong - failed - skipped;
    ran[peer] = `matmul: ${ok} ok, ${wrong} wrong, ${failed} failed, ${skipped} skipped as too slow (of ${rows.length})`;
    if (wrong) failures.push(`${peer} computed ${wrong} matmul shape(s) wrong`);
    if (failed) failures.push(`${peer} failed on ${failed} matmul shape(s)`);
    if (missing) failures.push(`${peer} has no result for ${missing} matmul shape(s)`);
    if (rows.length && skipped === rows.length) failures.push(`${peer} ran no matmul shape (all skipped as too slow)`);
  }
  for (const peer of ['tfjs', 'jax']) if (!(peer in requested)) ran[peer] = 'not requested';
  return { ran, failures };
}

/** What the verdict reads of the step figures: each subject's time (null: it did not run). */
export interface StepOutcome {
  oursMs: number | null;
  tfjsMs: number | null;
  jaxMs: number | null;
  lossesAgree: boolean | null;
}

/** Adds the step's part to a matmul verdict (in place). */
export function stepVerdict(step: StepOutcome, requested: Requested, ran: Record<string, string>, failures: string[]): void {
  const ms: Record<string, number | null> = { ours: step.oursMs, tfjs: step.tfjsMs, jax: step.jaxMs };
  for (const [peer, unavailable] of Object.entries(requested)) {
    if (unavailable) continue;
    ran[peer] += ms[peer] === null ? '; step: FAILED' : '; step: ran';
    if (ms[peer] === null) failures.push(`${peer} training step did not run (see notes)`);
  }
  if (step.lossesAgree === false) failures.push('step losses disagree with the CPU reference');
}
