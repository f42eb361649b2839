import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDataFile, parseDataBytes } from '../../../shared/data/files.ts';
import { loadDataset } from '../../../shared/data/index.ts';
import { decode, encode, EOS_ID } from '../../../shared/tokenizer.ts';

const dir = mkdtempSync(join(tmpdir(), 'data-test-'));
const file = (name: string, content: string | Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};
const enc = (s: string) => new TextEncoder().encode(s);

describe('user data files', () => {
  it('.txt: windows of T+1 tokens with stride T cover every byte as a target once', () => {
    const T = 8;
    const text = Array.from({ length: 500 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    const ds = loadDataFile(file('corpus.txt', text), { T, seed: 1 });
    expect(ds.kind).toBe('text');
    const targets: number[] = [];
    for (let id = 0; id < ds.size; id++) {
      const r = ds.sample(id);
      for (let t = 0; t < T; t++) if (r.mask[t]) targets.push(r.targets[t]);
    }
    for (let id = 0; id < ds.heldOut.size; id++) {
      const r = ds.heldOut.sample(id);
      for (let t = 0; t < T; t++) if (r.mask[t]) targets.push(r.targets[t]);
    }
    expect(decode(targets)).toBe(text.slice(1));
    expect(ds.heldOut.size).toBe(3); // 63 windows -> 5% held out
    expect(ds.size + ds.heldOut.size).toBe(Math.ceil(499 / T));
  });

  it('.jsonl instruction pairs: loss on the response + EOS, held-out disjoint and seeded', () => {
    const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ prompt: `q${i}?`, response: `a${i}`, id: i }));
    const p = file('pairs.jsonl', lines.join('\n') + '\n\n');
    const ds = loadDataFile(p, { T: 12, seed: 3 });
    expect(ds.kind).toBe('instruction');
    expect(ds.size).toBe(38);
    expect(ds.heldOut.pairs!.length).toBe(2);
    const heldPrompts = new Set(ds.heldOut.pairs!.map((x) => x.prompt));
    for (let id = 0; id < ds.size; id++) {
      const r = ds.sample(id);
      const n = Array.from(r.mask).lastIndexOf(1) + 1;
      const prompt = decode(Array.from(r.inputs.subarray(0, r.mask.indexOf(1) + 1)));
      expect(heldPrompts.has(prompt)).toBe(false);
      expect(r.targets[n - 1]).toBe(EOS_ID);
    }
    expect(loadDataFile(p, { T: 12, seed: 3 }).heldOut.pairs).toEqual(ds.heldOut.pairs);
  });

  it('.jsonl text documents get an EOS and are split into windows', () => {
    const ds = loadDataFile(file('docs.jsonl', `{"text":"abcdefghij"}\n{"text":"xy"}\n`), { T: 4, seed: 0 });
    expect(ds.kind).toBe('text');
    const rows = Array.from({ length: ds.size }, (_, i) => ds.sample(i));
    // doc 1: 11 tokens -> windows at 0,4,8 ; doc 2: 3 tokens -> 1 window
    expect(ds.size).toBe(4);
    expect(Array.from(rows[2].targets.subarray(0, 2))).toEqual([...encode('j'), EOS_ID]);
    expect(Array.from(rows[3].inputs.subarray(0, 2))).toEqual(encode('xy'));
    expect(rows[3].targets[1]).toBe(EOS_ID);
  });

  it('a UTF-8 BOM is dropped and CRLF line ends are accepted', () => {
    const bom = new Uint8Array([0xef, 0xbb, 0xbf]);
    const txt = loadDataFile(file('bom.txt', new Uint8Array([...bom, ...enc('abc')])), { T: 4, seed: 0 });
    expect(Array.from(txt.sample(0).inputs.subarray(0, 2))).toEqual(encode('ab'));
    const jl = loadDataFile(file('bom.jsonl', new Uint8Array([...bom, ...enc('{"prompt":"p","response":"r"}\r\n{"prompt":"q","response":"s"}\r\n')])), { T: 4, seed: 0 });
    expect(jl.size).toBe(2);
  });

  it('bad files get an error naming the file and line, with what was expected', () => {
    const cases: Array<[string, string | Uint8Array, RegExp]> = [
      ['empty.txt', '', /empty\.txt: file is empty/],
      ['blank.jsonl', '\n\n', /blank\.jsonl: no samples/],
      ['badjson.jsonl', '{"prompt":"a","response":"b"}\n{oops\n', /badjson\.jsonl:2: not valid JSON/],
      ['missing.jsonl', '{"prompt":"a","response":"b"}\n{"prompt":"x"}\n', /missing\.jsonl:2: "response" must be a string, got nothing/],
      ['nofields.jsonl', '{"question":"a"}\n', /nofields\.jsonl:1: missing fields: expected "prompt" and "response", or "text"/],
      ['mixed.jsonl', '{"text":"a b"}\n\n{"prompt":"a","response":"b"}\n', /mixed\.jsonl:3: expected \{"text"\} like line 1/],
      ['array.jsonl', '[1,2]\n', /array\.jsonl:1: expected a JSON object/],
      ['long.jsonl', `{"prompt":"a","response":"b"}\n{"prompt":"${'x'.repeat(10)}","response":"${'y'.repeat(10)}"}\n`, /long\.jsonl:2: instruction sample needs 20 positions/],
      ['latin1.txt', new Uint8Array([...enc('ok\nfine\n'), 0x63, 0x61, 0x66, 0xe9, 0x0a]), /latin1\.txt:3: not valid UTF-8/],
      ['data.csv', 'a,b', /unsupported extension ".csv"/],
      ['one.txt', 'x', /needs at least 2 tokens/],
    ];
    for (const [name, content, re] of cases) {
      const p = file(name, content);
      expect(() => loadDataFile(p, { T: 16, seed: 0 }), name).toThrow(re);
      try {
        loadDataFile(p, { T: 16, seed: 0 });
      } catch (e) {
        expect((e as Error).message, name).toContain(p);
        expect((e as { code: string }).code, name).toMatch(/^ERR_DATA_/);
      }
    }
    expect(() => loadDataFile(join(dir, 'nope.txt'), { T: 16, seed: 0 })).toThrow(/nope\.txt: cannot read \(ENOENT\)/);
  });

  it('loadDataset picks the built-in task without --data and the file with it', () => {
    expect(loadDataset({ T: 32, seed: 1 }).name).toBe('arith-rev(seed=1)');
    const p = file('x.txt', 'hello world');
    const ds = loadDataset({ data: p, T: 4, seed: 1 });
    expect(ds.name).toBe('x.txt');
    expect(ds.fingerprint).not.toBe(parseDataBytes(enc('hello worlD'), 'x.txt', { T: 4, seed: 1 }).fingerprint);
  });
});
