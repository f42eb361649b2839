// Byte-level tokenizer: ids 0..255 are the raw UTF-8 bytes of the text (NOT GPT-2's BPE), and
// 256 is `<|endoftext|>`, used as end of sequence, as padding and as GPT-2's bos/eos id.
// Decoding never throws on a partial UTF-8 sequence: a model can emit any byte sequence, and a
// half-finished character must render as U+FFFD (whole-text decode) or be held back (streaming).

import { AppError } from './errors.ts';

export const BYTE_VOCAB = 256;
export const EOS_ID = 256;
export const VOCAB_SIZE = 257;
export const EOS_TEXT = '<|endoftext|>';

const utf8 = new TextEncoder();

export interface EncodeOptions {
  /** Map the literal text `<|endoftext|>` to EOS_ID (default false: it is encoded as its bytes). */
  allowSpecial?: boolean;
}

/** UTF-8 bytes of `text` as token ids (optionally with `<|endoftext|>` mapped to EOS_ID). */
export function encode(text: string, opts: EncodeOptions = {}): number[] {
  if (!opts.allowSpecial) return Array.from(utf8.encode(text));
  const out: number[] = [];
  const parts = text.split(EOS_TEXT);
  parts.forEach((part, i) => {
    if (i > 0) out.push(EOS_ID);
    for (const b of utf8.encode(part)) out.push(b);
  });
  return out;
}

export interface DecodeOptions {
  /** Drop EOS tokens instead of rendering them as `<|endoftext|>` (default false). */
  skipSpecial?: boolean;
}

function checkId(id: number, where: string): void {
  if (!Number.isInteger(id) || id < 0 || id >= VOCAB_SIZE) {
    throw new AppError(
      'ERR_TOKEN_RANGE',
      `${where}: token id ${String(id)} is outside the byte-level vocabulary 0..${VOCAB_SIZE - 1}`,
      400,
      'ids come from this tokenizer (bytes 0..255, <|endoftext|> = 256); check the model vocabSize is 257',
    );
  }
}

/** Decode ids to text. Invalid or incomplete UTF-8 becomes U+FFFD; never throws on byte content. */
export function decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
  // Runs of bytes are decoded in one call each (fast for long texts); EOS splits the runs.
  const td = new TextDecoder('utf-8', { fatal: false });
  const bytes = new Uint8Array(ids.length);
  let out = '';
  let n = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    checkId(id, 'decode');
    if (id === EOS_ID) {
      out += td.decode(bytes.subarray(0, n)) + (opts.skipSpecial ? '' : EOS_TEXT);
      n = 0;
    } else {
      bytes[n++] = id;
    }
  }
  return out + td.decode(bytes.subarray(0, n));
}

/**
 * Token-by-token decoder for streaming output: push(id) returns the text that is complete so
 * far, holding back the bytes of an unfinished multi-byte character until it completes.
 */
export class StreamDecoder {
  private td = new TextDecoder('utf-8', { fatal: false });
  private readonly skipSpecial: boolean;

  constructor(opts: DecodeOptions = {}) {
    this.skipSpecial = opts.skipSpecial ?? false;
  }

  push(id: number): string {
    checkId(id, 'StreamDecoder.push');
    if (id === EOS_ID) {
      // An EOS ends any pending partial character: flush it (as U+FFFD) before the marker.
      const pending = this.td.decode();
      return pending + (this.skipSpecial ? '' : EOS_TEXT);
    }
    return this.td.decode(new Uint8Array([id]), { stream: true });
  }

  /** Text of any bytes still held back (an unfinished character renders as U+FFFD). */
  flush(): string {
    return this.td.decode();
  }
}
