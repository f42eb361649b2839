// Our exported tokenizer.json, read by Hugging Face's own tokenizer implementation
// (@huggingface/tokenizers, the one transformers.js uses): it must give exactly our ids.
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { tokenizerConfigJson, tokenizerJson } from '../../coordinator/export/hf-files.ts';
import { decode, encode, EOS_ID } from '../../shared/tokenizer.ts';

describe('tokenizer.json in Hugging Face tokenizers.js', () => {
  const tok = new Tokenizer(tokenizerJson() as never, tokenizerConfigJson(64) as never);

  it('encodes text to the raw UTF-8 bytes and <|endoftext|> to 256, and decodes back', () => {
    const texts = ['12+34=', 'rev cat=', 'Hello world  two  spaces\n\tand tab', 'naïve café — 日本語 😀', ' leading', '\u0000\u007f\u00ad'];
    for (const t of texts) {
      const ids = Array.from(tok.encode(t, { add_special_tokens: false }).ids as number[]);
      expect(ids, t).toEqual(encode(t));
      expect(tok.decode(ids, { skip_special_tokens: false })).toBe(t);
    }
    const withEos = Array.from(tok.encode('a<|endoftext|>b', { add_special_tokens: false }).ids as number[]);
    expect(withEos).toEqual([97, EOS_ID, 98]);
    expect(tok.decode(withEos, { skip_special_tokens: false })).toBe(decode(withEos));
  });

  it('code points across the whole Unicode range encode byte for byte', () => {
    const seen = new Set<number>();
    let text = '';
    for (let c = 0; c <= 0x10ffff; c += c < 0x800 ? 1 : 331) {
      if (c >= 0xd800 && c <= 0xdfff) continue; // surrogates are not characters
      text += String.fromCodePoint(c);
      if (text.length > 2000 || c + 331 > 0x10ffff) {
        const ids = Array.from(tok.encode(text, { add_special_tokens: false }).ids as number[]);
        expect(ids).toEqual(encode(text));
        ids.forEach((b) => seen.add(b));
        text = '';
      }
    }
    // every byte that valid UTF-8 can contain was exercised (0xC0, 0xC1, 0xF5..0xFF never occur)
    expect(seen.size).toBe(256 - 13);
  });
});
