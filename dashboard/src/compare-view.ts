// The playground's Compare mode, as pure functions (no DOM; tests/dashboard/compare-view.test.ts):
// which two generation requests make a pair, what each button would store, whether a choice can be
// stored at all, and the texts shown. The page wiring is compare.ts.

export type PlaygroundMode = 'generate' | 'compare';
export type Choice = 'A' | 'B' | 'neither';

/** The request body of POST /api/generate that Compare sends (a subset of the playground's). */
export interface SampleRequest {
  prompt: string;
  maxTokens: number;
  temperature: number;
  seed: number;
}

export interface CompareInput {
  prompt: string;
  maxTokens: string;
  temperature: string;
  /** Blank: a fresh random seed each time. */
  seed: string;
}

/** The two samples on screen, with the prompt they continue. */
export interface ShownPair {
  prompt: string;
  a: string;
  b: string;
}

/** Largest seed /api/generate accepts. */
const SEED_MAX = 2 ** 32 - 1;

/** `#compare` opens the Compare mode (a link can point at it); anything else is Generate. */
export function modeFromHash(hash: string): PlaygroundMode {
  return hash.replace(/^#/, '') === 'compare' ? 'compare' : 'generate';
}

/**
 * The two requests of one comparison: the same prompt, length and temperature, seeds `base` and
 * `base + 1` (wrapping), so the samples differ by chance alone and each can be replayed through
 * /api/generate. Throws a sentence for the page when the input cannot make two different samples.
 */
export function compareRequests(input: CompareInput, randomSeed: () => number): [SampleRequest, SampleRequest] {
  const prompt = input.prompt;
  if (prompt.length === 0) throw new Error('enter a prompt');
  const maxTokens = Number(input.maxTokens);
  if (input.maxTokens.trim() === '' || !Number.isInteger(maxTokens) || maxTokens < 1) throw new Error('Max tokens must be a whole number ≥ 1');
  const temperature = Number(input.temperature);
  if (input.temperature.trim() === '' || !Number.isFinite(temperature) || temperature < 0) throw new Error('Temperature must be a number ≥ 0');
  if (temperature === 0) throw new Error('Temperature 0 is greedy: both samples would be the same. Use a temperature above 0');
  let base: number;
  if (input.seed.trim() === '') {
    base = randomSeed() >>> 0;
  } else {
    base = Number(input.seed);
    if (!Number.isInteger(base) || base < 0 || base > SEED_MAX) throw new Error(`Seed must be a whole number from 0 to ${SEED_MAX}, or blank for random`);
  }
  const other = base === SEED_MAX ? 0 : base + 1;
  return [
    { prompt, maxTokens, temperature, seed: base },
    { prompt, maxTokens, temperature, seed: other },
  ];
}

/**
 * Whether the pair can be stored, and if not, why. The stored rows need two non-empty, different
 * answers (shared/data/preference-rows.ts); "Neither" is always allowed (it stores nothing).
 */
export function choiceState(p: ShownPair): { canChoose: boolean; note: string } {
  if (p.a === p.b) return { canChoose: false, note: 'Both samples are the same: nothing to compare. Sample again.' };
  if (p.a.length === 0 || p.b.length === 0) {
    return { canChoose: false, note: `Sample ${p.a.length === 0 ? 'A' : 'B'} is empty (the model ended at once): a pair needs two answers. Sample again.` };
  }
  return { canChoose: true, note: 'Which continuation is better?' };
}

/** What a button stores: A or B as the chosen answer and the other as rejected; Neither stores nothing. */
export function preferenceBody(choice: Choice, p: ShownPair): { prompt: string; chosen: string; rejected: string } | null {
  if (choice === 'neither') return null;
  return choice === 'A' ? { prompt: p.prompt, chosen: p.a, rejected: p.b } : { prompt: p.prompt, chosen: p.b, rejected: p.a };
}

/** The line after a choice. */
export function choiceMessage(choice: Choice, count: number | null): string {
  if (choice === 'neither') return 'Skipped: nothing recorded.';
  return `Recorded: ${choice} is better${count === null ? '' : ` (${count} stored)`}.`;
}

/** The stored-count text ("—" when the server did not say). */
export function countText(count: number | null | undefined): string {
  if (typeof count !== 'number' || !Number.isFinite(count)) return '—';
  return count === 1 ? '1 pair' : `${count} pairs`;
}
