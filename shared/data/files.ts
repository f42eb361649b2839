// User data: `--data file.txt` (pretraining on plain text) and `--data file.jsonl`
// (instruction pairs or text documents). Node-only (reads files); parsing is in parseDataBytes.
//
// Rules (the README and docs should quote these):
//  - The file must be non-empty valid UTF-8 (errors name the file and the line); a leading BOM is
//    dropped and CRLF line ends are accepted in .jsonl.
//  - .txt: the whole file's bytes are one token stream; windows of T+1 tokens with stride T
//    (one token of overlap, so every token is a target once); loss on every position; the last
//    window may be short (padded, mask 0). No EOS is added.
//  - .jsonl: one JSON object per line, blank lines skipped, extra fields ignored. Either every
//    line is {"prompt": string, "response": string} (instruction: loss on response + EOS) or
//    every line is {"text": string} (a document: its bytes + EOS, cut into windows like .txt).
//    Mixing the two shapes is an error naming the first line that differs.
//  - Too long: an instruction sample that does not fit T positions is REJECTED (error with its
//    line): truncating would drop its EOS and teach the model never to stop. Long text is split.
//  - Held-out: instruction files hold out a seeded random 5% of pairs (at most 200, at least 1
//    when there are 20 or more); text holds out the last 5% of windows (at most 200), so held-out
//    text never overlaps train text except the one shared boundary token.

import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { AppError } from '../errors.ts';
import { Rng } from '../rng.ts';
import { EOS_ID } from '../tokenizer.ts';
import { exactMatch } from './evaluate.ts';
import { checkSampleId, fnv1a, instructionRow, textRow } from './sequences.ts';
import type { Dataset, PromptPair, SampleSource, SequenceSample } from './types.ts';

export const HELD_OUT_FRACTION = 0.05;
export const HELD_OUT_MAX = 200;

export interface FileDataOptions {
  T: number;
  /** Seeds the held-out choice of instruction files. */
  seed: number;
}

function dataError(code: string, file: string, where: string, message: string, hint?: string): AppError {
  return new AppError(code, `data file ${file}${where}: ${message}`, 400, hint);
}

/** Load `path` (.txt or .jsonl) as a Dataset. */
export function loadDataFile(path: string, opts: FileDataOptions): Dataset {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw dataError('ERR_DATA_FILE', path, '', `cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
      'pass an existing .txt or .jsonl file to --data');
  }
  return parseDataBytes(bytes, path, opts);
}

/** Parse file content; `file` names it in errors and decides the format by extension. */
export function parseDataBytes(bytes: Uint8Array, file: string, opts: FileDataOptions): Dataset {
  const ext = extname(file).toLowerCase();
  if (ext !== '.txt' && ext !== '.jsonl') {
    throw dataError('ERR_DATA_FORMAT', file, '', `unsupported extension "${ext || '(none)'}"`,
      'allowed: .txt (plain text) or .jsonl ({"prompt","response"} or {"text"} per line)');
  }
  if (!Number.isInteger(opts.T) || opts.T < 2) throw new AppError('ERR_DATA_OPTIONS', `data: T must be an integer >= 2, got ${opts.T}`);
  if (bytes.length === 0) {
    throw dataError('ERR_DATA_EMPTY', file, '', 'file is empty', 'give it at least one sample');
  }
  const text = decodeUtf8OrThrow(bytes, file); // (TextDecoder drops a leading BOM)
  // A UTF-8 byte-order mark some editors write is not text: drop it from the token stream too.
  const body = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes;
  return ext === '.txt' ? textDataset(file, [body], opts.T, false) : parseJsonl(text, file, opts);
}

function decodeUtf8OrThrow(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // Find the first line that fails, to point the user at it.
    let line = 1;
    let start = 0;
    const fatal = new TextDecoder('utf-8', { fatal: true });
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 0x0a) {
        try {
          fatal.decode(bytes.subarray(start, i));
        } catch {
          break;
        }
        line++;
        start = i + 1;
      }
    }
    throw dataError('ERR_DATA_ENCODING', file, `:${line}`, 'not valid UTF-8', 're-save the file as UTF-8');
  }
}

function parseJsonl(text: string, file: string, opts: FileDataOptions): Dataset {
  const lines = text.split('\n');
  const pairs: PromptPair[] = [];
  const docs: Uint16Array[] = [];
  let shape: 'pair' | 'text' | undefined;
  let firstLine = 0;
  const enc = new TextEncoder();
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].replace(/\r$/, '');
    if (raw.trim() === '') continue;
    const where = `:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw dataError('ERR_DATA_JSON', file, where, `not valid JSON (${(e as Error).message})`,
        'each line must be one JSON object such as {"prompt":"2+2=","response":"4"} or {"text":"..."}');
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw dataError('ERR_DATA_FIELDS', file, where, 'expected a JSON object', 'use {"prompt","response"} or {"text"}');
    }
    const o = v as Record<string, unknown>;
    const lineShape = 'prompt' in o || 'response' in o ? 'pair' : 'text' in o ? 'text' : undefined;
    if (!lineShape) {
      throw dataError('ERR_DATA_FIELDS', file, where, `missing fields: expected "prompt" and "response", or "text"; got keys ${JSON.stringify(Object.keys(o))}`);
    }
    if (shape && lineShape !== shape) {
      throw dataError('ERR_DATA_FIELDS', file, where,
        `expected ${shape === 'pair' ? '{"prompt","response"}' : '{"text"}'} like line ${firstLine}, got ${lineShape === 'pair' ? '{"prompt","response"}' : '{"text"}'}`,
        'do not mix instruction pairs and text documents in one file');
    }
    if (!shape) { shape = lineShape; firstLine = i + 1; }
    if (lineShape === 'pair') {
      for (const k of ['prompt', 'response'] as const) {
        if (typeof o[k] !== 'string') {
          throw dataError('ERR_DATA_FIELDS', file, where, `"${k}" must be a string, got ${o[k] === undefined ? 'nothing' : typeof o[k]}`);
        }
      }
      const p = { prompt: o.prompt as string, response: o.response as string };
      if (p.prompt === '') throw dataError('ERR_DATA_FIELDS', file, where, '"prompt" is empty');
      try {
        instructionRow(Array.from(enc.encode(p.prompt)), Array.from(enc.encode(p.response)), opts.T);
      } catch (e) {
        throw dataError('ERR_DATA_TOO_LONG', file, where, (e as Error).message);
      }
      pairs.push(p);
    } else {
      if (typeof o.text !== 'string' || o.text === '') {
        throw dataError('ERR_DATA_FIELDS', file, where, '"text" must be a non-empty string');
      }
      const b = enc.encode(o.text);
      const withEos = new Uint16Array(b.length + 1);
      withEos.set(b);
      withEos[b.length] = EOS_ID;
      docs.push(withEos);
    }
  }
  if (!shape) throw dataError('ERR_DATA_EMPTY', file, '', 'no samples (only blank lines)');
  return shape === 'pair' ? pairDataset(file, pairs, opts) : textDataset(file, docs, opts.T, true);
}

function pairDataset(file: string, pairs: PromptPair[], opts: FileDataOptions): Dataset {
  const { T, seed } = opts;
  const n = pairs.length;
  const hold = n >= 20 ? Math.min(HELD_OUT_MAX, Math.max(1, Math.floor(n * HELD_OUT_FRACTION))) : 0;
  const order = Array.from({ length: n }, (_, i) => i);
  new Rng(seed).shuffle(order);
  const heldIdx = new Set(order.slice(0, hold));
  const train = pairs.filter((_, i) => !heldIdx.has(i));
  const held = pairs.filter((_, i) => heldIdx.has(i));
  const name = basename(file);
  const source = (list: PromptPair[], label: string): SampleSource => ({
    size: list.length,
    sample(id) {
      checkSampleId(id, list.length, label);
      const enc = new TextEncoder();
      return instructionRow(Array.from(enc.encode(list[id].prompt)), Array.from(enc.encode(list[id].response)), T);
    },
  });
  return {
    name,
    kind: 'instruction',
    T,
    ...source(train, name),
    fingerprint: fnv1a([name, String(T), String(seed), ...pairs.flatMap((p) => [p.prompt, p.response])]),
    heldOut: { ...source(held, `${name} held-out`), pairs: held },
    evaluate: (generate, evalOpts) => exactMatch(held, generate, evalOpts),
  };
}

/** Windows of T+1 tokens, stride T, over each stream; the last 5% of windows are held out. */
function textDataset(file: string, streams: ArrayLike<number>[], T: number, perDoc: boolean): Dataset {
  const windows: Array<[number, number]> = []; // [stream, start]
  streams.forEach((s, si) => {
    for (let start = 0; start + 1 < s.length; start += T) windows.push([si, start]);
  });
  if (windows.length === 0) {
    throw dataError('ERR_DATA_EMPTY', file, '', 'needs at least 2 tokens (bytes) of text to make one training position');
  }
  const hold = windows.length >= 20 ? Math.min(HELD_OUT_MAX, Math.max(1, Math.floor(windows.length * HELD_OUT_FRACTION))) : 0;
  const train = windows.slice(0, windows.length - hold);
  const held = windows.slice(windows.length - hold);
  const rowOf = (w: [number, number]): SequenceSample => {
    const s = streams[w[0]];
    const end = Math.min(w[1] + T + 1, s.length);
    const win = new Int32Array(end - w[1]);
    for (let i = 0; i < win.length; i++) win[i] = s[w[1] + i];
    return textRow(win, T);
  };
  const name = basename(file);
  return {
    name,
    kind: 'text',
    T,
    size: train.length,
    fingerprint: fnv1a([name, String(T), perDoc ? 'docs' : 'stream', ...streams]),
    sample(id) {
      checkSampleId(id, train.length, name);
      return rowOf(train[id]);
    },
    heldOut: {
      size: held.length,
      sample(id) {
        checkSampleId(id, held.length, `${name} held-out`);
        return rowOf(held[id]);
      },
    },
  };
}
