import { describe, expect, it } from 'vitest';
import { checkPreferenceRow, parsePreferenceJsonl, PREFERENCE_FIELD_MAX_CHARS } from '../../shared/data/preference-rows.ts';

const row = (o: object) => JSON.stringify({ prompt: 'p', chosen: 'a', rejected: 'b', ...o });

describe('preference rows', () => {
  it('parses rows, skips blank lines and CRLF, keeps step and createdAt', () => {
    const r = parsePreferenceJsonl(`${row({ step: 3, createdAt: '2026-01-01T00:00:00Z' })}\r\n\n${row({ prompt: 'q' })}\n`, 'f.jsonl');
    expect(r.rows).toEqual([
      { prompt: 'p', chosen: 'a', rejected: 'b', step: 3, createdAt: '2026-01-01T00:00:00Z' },
      { prompt: 'q', chosen: 'a', rejected: 'b' },
    ]);
    expect(r.warnings).toEqual([]);
  });

  it('names file:line and the field of a bad row', () => {
    expect(() => parsePreferenceJsonl(`${row({})}\n${row({ chosen: '' })}\n`, 'f.jsonl')).toThrow(/f\.jsonl:2: chosen must not be empty/);
    expect(() => parsePreferenceJsonl(`${row({ rejected: 'a' })}\n`, 'f.jsonl')).toThrow(/f\.jsonl:1: rejected equals chosen/);
    expect(() => checkPreferenceRow({ prompt: 'x'.repeat(PREFERENCE_FIELD_MAX_CHARS + 1), chosen: 'a', rejected: 'b' }, 'body'))
      .toThrow(/body: prompt has 4001 characters/);
    expect(() => checkPreferenceRow({ prompt: 'p', chosen: 1, rejected: 'b' }, 'body')).toThrow(/chosen must be a string, got number/);
  });

  it('a torn last line is skipped with a warning only when asked; a torn middle line is an error', () => {
    const torn = `${row({})}\n${row({ prompt: 'q' })}\n{"prompt":"r","cho`;
    expect(() => parsePreferenceJsonl(torn, 'prefs.jsonl')).toThrow(/prefs\.jsonl:3: not valid JSON/);
    const r = parsePreferenceJsonl(torn, 'prefs.jsonl', { tornLastLine: 'skip' });
    expect(r.rows.map((x) => x.prompt)).toEqual(['p', 'q']);
    expect(r.warnings[0]).toMatch(/prefs\.jsonl:3: skipped a torn last line/);
    expect(() => parsePreferenceJsonl(`{"prompt":\n${row({})}\n`, 'prefs.jsonl', { tornLastLine: 'skip' })).toThrow(/prefs\.jsonl:1/);
  });
});
