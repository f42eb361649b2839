import { describe, expect, it } from 'vitest';
import { Rng } from '../../shared/rng.ts';
import { decode, encode, EOS_ID, EOS_TEXT, StreamDecoder, VOCAB_SIZE } from '../../shared/tokenizer.ts';

describe('byte-level tokenizer', () => {
  it('ids are the UTF-8 bytes; vocab is 257 with EOS 256', () => {
    expect(VOCAB_SIZE).toBe(257);
    expect(EOS_ID).toBe(256);
    expect(encode('A')).toEqual([65]);
    expect(encode('é')).toEqual([0xc3, 0xa9]);
    expect(encode('€😀')).toEqual([0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80]);
  });

  it('round-trips text including multi-byte characters', () => {
    for (const s of ['', 'hello', '12+34=46', 'naïve café — 日本語 😀']) expect(decode(encode(s))).toBe(s);
  });

  it('maps <|endoftext|> only when allowed, and renders or skips it on decode', () => {
    expect(encode(`a${EOS_TEXT}b`, { allowSpecial: true })).toEqual([97, EOS_ID, 98]);
    expect(encode(EOS_TEXT)).toHaveLength(EOS_TEXT.length);
    expect(decode([97, EOS_ID, 98])).toBe(`a${EOS_TEXT}b`);
    expect(decode([97, EOS_ID, 98], { skipSpecial: true })).toBe('ab');
  });

  it('never throws on partial or invalid UTF-8', () => {
    expect(decode([0xe2, 0x82])).toBe('\uFFFD');
    expect(decode([0xff, 65])).toBe('\uFFFDA');
    expect(decode([0xf0, 0x9f, EOS_ID])).toBe(`\uFFFD${EOS_TEXT}`);
  });

  it('rejects ids outside the vocabulary with a named error', () => {
    expect(() => decode([257])).toThrow(/ERR_TOKEN_RANGE|outside the byte-level vocabulary/);
    expect(() => decode([-1])).toThrow(/outside/);
  });

  it('stream decoder holds back an incomplete character until it completes', () => {
    const d = new StreamDecoder();
    const ids = encode('a😀b');
    const pieces = ids.map((id) => d.push(id));
    expect(pieces).toEqual(['a', '', '', '', '😀', 'b']);
    expect(d.flush()).toBe('');
    const d2 = new StreamDecoder();
    expect(d2.push(0xe2)).toBe('');
    expect(d2.flush()).toBe('\uFFFD');
  });

  it('whole-text decode equals the concatenated stream on random byte sequences (seeded)', () => {
    const rng = new Rng(12);
    for (let trial = 0; trial < 200; trial++) {
      const ids = Array.from({ length: rng.int(20) }, () => (rng.int(10) === 0 ? EOS_ID : rng.int(2) ? 0x80 + rng.int(0x80) : rng.int(0x80)));
      const d = new StreamDecoder();
      const streamed = ids.map((id) => d.push(id)).join('') + d.flush();
      expect(streamed).toBe(decode(ids));
    }
  });
});
