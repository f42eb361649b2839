// Samples -> fixed-length training rows, and rows -> a MicroBatch.
//
// Instruction row: tokens = [prompt bytes, response bytes, EOS]; inputs = tokens[0..n-2],
// targets = tokens[1..n-1]; mask = 1 exactly where the target is a response byte or the EOS, so
// the model is trained to answer, not to predict prompts. Rows are padded to T with EOS inputs
// and targets and mask 0. No BOS is prepended: generation feeds the bare prompt bytes too.

import type { MicroBatch } from '../backend.ts';
import { AppError } from '../errors.ts';
import { EOS_ID, encode } from '../tokenizer.ts';
import type { SampleSource, SequenceSample } from './types.ts';

export const PAD_ID = EOS_ID;

/** Build the padded row of an instruction sample. Throws ERR_SAMPLE_TOO_LONG if it does not fit T. */
export function instructionRow(prompt: number[], response: number[], T: number): SequenceSample {
  if (prompt.length === 0) {
    throw new AppError('ERR_SAMPLE_EMPTY_PROMPT', 'instruction sample has an empty prompt', 400,
      'give every sample a non-empty "prompt"');
  }
  const tokens = [...prompt, ...response, EOS_ID];
  const n = tokens.length - 1; // positions used
  if (n > T) {
    throw new AppError('ERR_SAMPLE_TOO_LONG',
      `instruction sample needs ${n} positions (prompt ${prompt.length} + response ${response.length} + EOS - 1) but T is ${T}`,
      400, 'shorten the sample or train with a longer context');
  }
  const row = emptyRow(T);
  for (let t = 0; t < n; t++) {
    row.inputs[t] = tokens[t];
    row.targets[t] = tokens[t + 1];
    // target index t+1 is a response byte or the EOS iff t+1 >= prompt.length
    row.mask[t] = t + 1 >= prompt.length ? 1 : 0;
  }
  return row;
}

/** Row of a text window of up to T+1 tokens: loss on every real position. */
export function textRow(window: ArrayLike<number>, T: number): SequenceSample {
  const n = window.length - 1;
  if (n < 1 || n > T) throw new Error(`textRow: window of ${window.length} tokens does not fit T=${T} (bug)`);
  const row = emptyRow(T);
  for (let t = 0; t < n; t++) {
    row.inputs[t] = window[t];
    row.targets[t] = window[t + 1];
    row.mask[t] = 1;
  }
  return row;
}

export function emptyRow(T: number): SequenceSample {
  return {
    inputs: new Int32Array(T).fill(PAD_ID),
    targets: new Int32Array(T).fill(PAD_ID),
    mask: new Uint8Array(T),
  };
}

/** Instruction row from text (UTF-8 bytes). */
export function pairRow(prompt: string, response: string, T: number): SequenceSample {
  return instructionRow(encode(prompt), encode(response), T);
}

/** Throws ERR_SAMPLE_ID unless 0 <= id < size. */
export function checkSampleId(id: number, size: number, where: string): void {
  if (!Number.isInteger(id) || id < 0 || id >= size) {
    throw new AppError('ERR_SAMPLE_ID', `${where}: sample id ${String(id)} outside 0..${size - 1}`, 400,
      'ids come from the epoch sampler of this dataset; was the dataset changed since the lease?');
  }
}

/** B rows (the given sample ids, in order) as one MicroBatch of T = the rows' length. */
export function buildMicroBatch(source: SampleSource, ids: ArrayLike<number>): MicroBatch {
  const B = ids.length;
  if (B === 0) throw new AppError('ERR_EMPTY_BATCH', 'buildMicroBatch: no sample ids given', 400);
  const rows: SequenceSample[] = [];
  for (let i = 0; i < B; i++) rows.push(source.sample(ids[i]));
  const T = rows[0].inputs.length;
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const mask = new Uint8Array(B * T);
  rows.forEach((r, b) => {
    if (r.inputs.length !== T) throw new Error(`buildMicroBatch: rows of different length (bug)`);
    inputs.set(r.inputs, b * T);
    targets.set(r.targets, b * T);
    mask.set(r.mask, b * T);
  });
  return { B, T, inputs, targets, mask };
}

/** FNV-1a 32-bit over strings, for dataset fingerprints (not cryptographic: it detects mix-ups). */
export function fnv1a(parts: Iterable<string | ArrayLike<number>>): string {
  let h = 0x811c9dc5;
  const mix = (b: number) => {
    h ^= b & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  };
  for (const p of parts) {
    if (typeof p === 'string') for (let i = 0; i < p.length; i++) { const c = p.charCodeAt(i); mix(c); mix(c >>> 8); }
    else for (let i = 0; i < p.length; i++) mix(p[i]);
    mix(0x1f);
  }
  return h.toString(16).padStart(8, '0');
}
