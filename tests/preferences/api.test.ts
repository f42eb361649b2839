// The preference-collection API against the real coordinator (tiny preset, in-process, port 0) and
// its run directory on disk: every figure is read back over HTTP or from the file, never from the
// store's own counters.
//  - bad input: a 400 (413, 415) naming the field, and nothing stored (file absent, count 0);
//  - a row records the trainer's step at the time (a CPU worker trains 2 steps first), persists
//    across a coordinator restart on the same run dir, and pages; the .jsonl download equals the rows;
//  - concurrent POSTs are written one at a time: every line whole, counts 1..N each once;
//  - a torn last line (written here, as a crash would leave it) is skipped with a logged warning,
//    its bytes are saved beside the file, and the next append is readable;
//  - per-client rate limit (a second client address is unaffected);
//  - disk full (a real tmpfs): 507 ERR_PREFERENCES_WRITE, the file byte-identical, later appends fine.
import { afterAll, describe, expect, it } from 'vitest';
import express from 'express';
import { execFileSync } from 'node:child_process';
import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { preferencesRouter } from '../../coordinator/http/preferences.ts';
import { PreferenceStore } from '../../coordinator/preferences/store.ts';
import { parsePreferenceJsonl, type PreferenceRow } from '../../shared/data/preference-rows.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { createNodeHost } from '../../worker-web/node/host.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A coordinator whose log lines are kept (JSON objects) so tests can read its warnings. */
async function start(runDir: string, extra: Record<string, unknown> = {}): Promise<{ c: CoordinatorHandle; logs: Array<{ level: number; msg: string }> }> {
  const logs: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s)) });
  const c = await startCoordinator({ preset: 'tiny', port: 0, host: '127.0.0.1', runDir, checkpointEvery: 0, evalEvery: 0, globalBatch: 8, maxMicroBatch: 8, preferenceRate: 6000, ...extra }, { logger });
  cleanups.push(() => c.close());
  return { c, logs };
}

async function post(url: string, body: unknown, opts: { raw?: boolean; type?: string } = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}/api/preferences`, {
    method: 'POST',
    headers: { 'content-type': opts.type ?? 'application/json' },
    body: opts.raw ? (body as string) : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: res.status, json };
}

async function getJson(url: string): Promise<{ status: number; json: any }> {
  const res = await fetch(url);
  return { status: res.status, json: await res.json() };
}

/** Every stored row over HTTP, page by page (pages of 3: the paging is exercised on the way). */
async function allRows(url: string): Promise<PreferenceRow[]> {
  const rows: PreferenceRow[] = [];
  for (;;) {
    const p = (await getJson(`${url}/api/preferences?offset=${rows.length}&limit=3`)).json;
    rows.push(...p.rows);
    if (p.rows.length === 0 || rows.length >= p.count) return rows;
  }
}

const pair = (i: number) => ({ prompt: `${i}+1=`, chosen: String(i + 1), rejected: String(i + 2) });

describe('POST/GET /api/preferences', () => {
  it('bad input: 400 (or 413/415) naming the field; nothing is stored', async () => {
    const runDir = tempDir('prefs-bad-');
    const { c } = await start(runDir);
    const ok = { prompt: 'p', chosen: 'a', rejected: 'b' };
    const cases: Array<[unknown, number, string, RegExp, { raw?: boolean; type?: string }?]> = [
      [{ chosen: 'a', rejected: 'b' }, 400, 'ERR_PREFERENCE_ROW', /prompt must be a string, got nothing/],
      [{ ...ok, prompt: '' }, 400, 'ERR_PREFERENCE_ROW', /prompt must not be empty/],
      [{ ...ok, chosen: 5 }, 400, 'ERR_PREFERENCE_ROW', /chosen must be a string, got number/],
      [{ prompt: 'p', chosen: 'a' }, 400, 'ERR_PREFERENCE_ROW', /rejected must be a string, got nothing/],
      [{ ...ok, rejected: 'a' }, 400, 'ERR_PREFERENCE_ROW', /rejected equals chosen/],
      [{ ...ok, chosen: 'x'.repeat(4001) }, 400, 'ERR_PREFERENCE_ROW', /chosen has 4001 characters, at most 4000/],
      [{ ...ok, step: 7 }, 400, 'ERR_BAD_REQUEST', /unknown field\(s\) "step"/],
      [{ ...ok, createdAt: '2020-01-01T00:00:00Z', extra: 1 }, 400, 'ERR_BAD_REQUEST', /unknown field\(s\) "createdAt", "extra"/],
      [[ok], 400, 'ERR_BAD_REQUEST', /body must be a JSON object/],
      ['{"prompt": "p", ', 400, 'ERR_BAD_JSON', /not valid JSON/, { raw: true }],
      ['', 400, 'ERR_PREFERENCE_ROW', /prompt must be a string, got nothing/, { raw: true }],
      [JSON.stringify(ok), 415, 'ERR_BAD_REQUEST', /body must be JSON \(got text\/plain/, { raw: true, type: 'text/plain' }],
      [{ ...ok, prompt: 'y'.repeat(200_000) }, 413, 'ERR_TOO_LARGE', /too large \(128 kB max\)/],
    ];
    for (const [body, status, code, message, opts] of cases) {
      const r = await post(c.url, body, opts);
      expect({ status: r.status, code: r.json?.error?.code }, JSON.stringify(body).slice(0, 80)).toEqual({ status, code });
      expect(r.json.error.message).toMatch(message);
    }
    for (const [q, name] of [['offset=-1', 'offset'], ['limit=abc', 'limit'], ['limit=0', 'limit'], ['offset=1&offset=2', 'offset']]) {
      const r = await getJson(`${c.url}/api/preferences?${q}`);
      expect(r.status).toBe(400);
      expect(r.json.error.message).toMatch(new RegExp(`GET /api/preferences: ${name} must`));
    }
    expect((await getJson(`${c.url}/api/preferences`)).json).toEqual({ count: 0, offset: 0, limit: 50, rows: [] });
    expect(existsSync(join(runDir, 'preferences.jsonl'))).toBe(false);
    const dl = await fetch(`${c.url}/api/preferences.jsonl`);
    expect(await dl.text()).toBe('');
    expect((await getJson(`${c.url}/api/status`)).json.preferences).toEqual({ count: 0 });
  });

  it('records the trainer step, persists across a restart on the same run dir, pages, and downloads the same rows', async () => {
    const runDir = tempDir('prefs-run-');
    const first = await start(runDir, { maxSteps: 2 });
    const w = new WorkerClient({ url: first.c.url, host: await createNodeHost('cpu'), name: 'prefs', seed: 1, log: () => {} });
    await w.start();
    cleanups.push(() => w.stop('done'));
    const end = Date.now() + 60_000;
    while (!(await getJson(`${first.c.url}/api/status`)).json.finished && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    await w.stop('done');
    const step = (await getJson(`${first.c.url}/api/status`)).json.step;
    expect(step).toBe(2);

    const t0 = Date.now();
    const sent = [0, 1, 2, 3, 4].map(pair);
    sent[4] = { prompt: 'ünïcødé ✓ "quoted"\n', chosen: 'line1\nline2\t{}', rejected: '\u0000 nul and emoji 🎉' };
    for (const [i, p] of sent.entries()) {
      const r = await post(first.c.url, p);
      expect(r.status).toBe(201);
      expect(r.json.count).toBe(i + 1);
      expect(r.json.row).toMatchObject({ ...p, step: 2 });
      expect(Date.parse(r.json.row.createdAt)).toBeGreaterThanOrEqual(t0 - 1000);
    }
    expect((await getJson(`${first.c.url}/api/status`)).json.preferences).toEqual({ count: 5 });
    await first.c.close({ checkpoint: true });

    // Restart on the same run dir: the rows are back (and the model resumed at step 2).
    const second = await start(runDir);
    const back = await allRows(second.c.url);
    expect(back.map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected }))).toEqual(sent);
    expect(back.every((r) => r.step === 2)).toBe(true);
    expect((await getJson(`${second.c.url}/api/status`)).json.preferences).toEqual({ count: 5 });
    const more = await post(second.c.url, pair(5));
    expect(more.json).toMatchObject({ count: 6, row: { ...pair(5), step: 2 } });

    // Paging: a window, a window past the end, and a limit above the cap.
    expect((await getJson(`${second.c.url}/api/preferences?offset=2&limit=2`)).json).toMatchObject({ count: 6, offset: 2, limit: 2, rows: back.slice(2, 4) });
    expect((await getJson(`${second.c.url}/api/preferences?offset=6`)).json).toMatchObject({ count: 6, rows: [] });
    expect((await getJson(`${second.c.url}/api/preferences?limit=100000`)).json.limit).toBe(500);

    // The download is the file, and its rows are exactly the API's.
    const dl = await fetch(`${second.c.url}/api/preferences.jsonl`);
    expect(dl.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    expect(dl.headers.get('content-disposition')).toBe('attachment; filename="preferences.jsonl"');
    const text = await dl.text();
    expect(text).toBe(readFileSync(join(runDir, 'preferences.jsonl'), 'utf8'));
    expect(parsePreferenceJsonl(text, 'download', { tornLastLine: 'error' }).rows).toEqual(await allRows(second.c.url));
  });

  it('concurrent POSTs are written one at a time: every line whole, each count once', async () => {
    const runDir = tempDir('prefs-conc-');
    const { c } = await start(runDir);
    const N = 24;
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => post(c.url, { prompt: `q${i}`, chosen: 'c'.repeat(1000 + i), rejected: `r${i}` })));
    expect(answers.map((a) => a.status)).toEqual(Array(N).fill(201));
    expect(answers.map((a) => a.json.count).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    const onDisk = parsePreferenceJsonl(readFileSync(join(runDir, 'preferences.jsonl'), 'utf8'), 'file', { tornLastLine: 'error' }).rows;
    expect(onDisk.map((r) => r.prompt).sort()).toEqual(Array.from({ length: N }, (_, i) => `q${i}`).sort());
    // The count a request got is its row's position in the file.
    for (const a of answers) expect(onDisk[a.json.count - 1].prompt).toBe(a.json.row.prompt);
  });

  it('a torn last line is skipped with a warning, its bytes saved aside, and the next append is readable', async () => {
    const runDir = tempDir('prefs-torn-');
    const good = [pair(1), pair(2)].map((p, i) => JSON.stringify({ ...p, step: 3, createdAt: `2026-01-0${i + 1}T00:00:00.000Z` })).join('\n') + '\n';
    const torn = '{"prompt":"7+1=","chosen":"8","rej';
    writeFileSync(join(runDir, 'preferences.jsonl'), good + torn);
    const { c, logs } = await start(runDir);
    const warned = logs.filter((l) => l.level === 40 && /torn/.test(l.msg));
    expect(warned.map((l) => l.msg).join('\n')).toMatch(/preferences\.jsonl:3: skipped a torn last line/);
    expect(warned.map((l) => l.msg).join('\n')).toMatch(new RegExp(`${torn.length} bytes were saved to .*preferences\\.torn-.*\\.jsonl`));
    const aside = readdirSync(runDir).filter((n) => /^preferences\.torn-.*\.jsonl$/.test(n));
    expect(aside.length).toBe(1);
    expect(readFileSync(join(runDir, aside[0]), 'utf8')).toBe(torn); // nothing the user sent is lost
    expect((await getJson(`${c.url}/api/preferences`)).json.count).toBe(2);

    const r = await post(c.url, pair(3));
    expect(r.json.count).toBe(3);
    const text = readFileSync(join(runDir, 'preferences.jsonl'), 'utf8');
    expect(text.startsWith(good)).toBe(true);
    const rows = parsePreferenceJsonl(text, 'file', { tornLastLine: 'error' }).rows;
    expect(rows.map((x) => x.prompt)).toEqual(['1+1=', '2+1=', '3+1=']);
    expect(await (await fetch(`${c.url}/api/preferences.jsonl`)).text()).toBe(text);
  });

  it('a complete last row that lost only its newline is kept; a bad row in the middle stops the start naming file:line', async () => {
    const runDir = tempDir('prefs-nl-');
    writeFileSync(join(runDir, 'preferences.jsonl'), `${JSON.stringify(pair(1))}\n${JSON.stringify(pair(2))}`);
    const { c } = await start(runDir);
    expect((await post(c.url, pair(3))).json.count).toBe(3);
    expect(parsePreferenceJsonl(readFileSync(join(runDir, 'preferences.jsonl'), 'utf8'), 'f', { tornLastLine: 'error' }).rows.length).toBe(3);

    const badDir = tempDir('prefs-badrow-');
    const content = `${JSON.stringify(pair(1))}\n{"prompt":"p","chosen":"","rejected":"r"}\n${JSON.stringify(pair(2))}\n`;
    writeFileSync(join(badDir, 'preferences.jsonl'), content);
    await expect(start(badDir)).rejects.toMatchObject({ code: 'ERR_PREFERENCE_ROW', message: expect.stringMatching(/preferences\.jsonl:2: chosen must not be empty/) });
    expect(readFileSync(join(badDir, 'preferences.jsonl'), 'utf8')).toBe(content); // left for the operator
  });
});

describe('the router alone (bare express app)', () => {
  /** The router on its own app; `clock` drives the rate limiter, `errors` collects what it logs. */
  async function bare(runDir: string, perMinute: number, clock = () => Date.now()): Promise<{ port: number; server: Server; errors: string[] }> {
    const app = express();
    const { store } = PreferenceStore.open(runDir);
    cleanups.push(() => store.close()); // before an unmount: the file is held open
    const errors: string[] = [];
    const log = { error: ((_o: unknown, msg?: string) => void errors.push(String(msg))) as never };
    app.use(preferencesRouter({ store, step: () => 0, perMinute, clock, log }));
    const server = await new Promise<Server>((res) => { const s = app.listen(0, '0.0.0.0', () => res(s)); });
    cleanups.push(() => new Promise<void>((res) => { server.closeAllConnections(); server.close(() => res()); }));
    return { port: (server.address() as AddressInfo).port, server, errors };
  }

  /** POST from a chosen local address (127.0.0.x are all this machine: different clients). */
  function postFrom(localAddress: string, port: number, body: unknown): Promise<{ status: number; json: any }> {
    return new Promise((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = httpRequest({ host: '127.0.0.1', port, localAddress, method: 'POST', path: '/api/preferences', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end(data);
    });
  }

  it('rate limit per client address: 429 ERR_RATE_LIMITED past the budget, another client unaffected', async () => {
    const runDir = tempDir('prefs-rate-');
    let now = 1_000_000;
    const { port } = await bare(runDir, 2, () => now); // 2 per minute, bursts of 2; one more per 30 s
    expect((await postFrom('127.0.0.1', port, pair(1))).status).toBe(201);
    expect((await postFrom('127.0.0.1', port, pair(2))).status).toBe(201);
    const third = await postFrom('127.0.0.1', port, pair(3));
    expect(third.status).toBe(429);
    expect(third.json.error).toMatchObject({ code: 'ERR_RATE_LIMITED', message: expect.stringMatching(/POST \/api\/preferences: more than 2 requests per minute/) });
    expect((await postFrom('127.0.0.2', port, pair(4))).status).toBe(201);
    now += 29_000;
    expect((await postFrom('127.0.0.1', port, pair(5))).status).toBe(429);
    now += 1_000; // 30 s: one token back
    expect((await postFrom('127.0.0.1', port, pair(6))).status).toBe(201);
    expect((await postFrom('127.0.0.1', port, pair(7))).status).toBe(429);
    const rows = parsePreferenceJsonl(readFileSync(join(runDir, 'preferences.jsonl'), 'utf8'), 'f').rows;
    expect(rows.map((r) => r.prompt)).toEqual(['1+1=', '2+1=', '4+1=', '6+1=']);
  });

  it('disk full (real tmpfs): 507 ERR_PREFERENCES_WRITE, the file byte-identical, later appends fine', async (ctx) => {
    const base = tempDir('prefs-disk-');
    const mnt = join(base, 'mnt');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
      cleanups.push(() => void execFileSync('umount', [mnt], { stdio: 'ignore' }));
    } catch (e) {
      const why = `cannot mount a tmpfs here (${((e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message).split('\n')[0]}): no real ENOSPC to test`;
      console.warn(`preferences api.test: SKIPPED disk-full test: ${why}`);
      ctx.skip(why);
    }
    const { port, errors } = await bare(mnt, 6000);
    for (let i = 0; i < 3; i++) expect((await postFrom('127.0.0.1', port, pair(i))).status).toBe(201);
    // Fill the rest of the disk.
    const filler = join(mnt, 'filler');
    try {
      writeFileSync(filler, Buffer.alloc(1 << 20, 1));
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    const before = readFileSync(join(mnt, 'preferences.jsonl'));
    // Bigger than any slack left in the file's last page: the write must fail, possibly part-way.
    const big = { prompt: 'p'.repeat(4000), chosen: 'c'.repeat(4000), rejected: 'r'.repeat(4000) };
    const full = await postFrom('127.0.0.1', port, big);
    expect(full.status).toBe(507);
    expect(full.json.error).toMatchObject({ code: 'ERR_PREFERENCES_WRITE', message: expect.stringMatching(/ENOSPC/), hint: expect.stringMatching(/disk is full/) });
    expect(readFileSync(join(mnt, 'preferences.jsonl')).equals(before)).toBe(true);
    expect(errors.filter((e) => /ENOSPC/.test(e)).length).toBe(1); // the operator's log says why
    rmSync(filler);
    const after = await postFrom('127.0.0.1', port, big);
    expect(after.status).toBe(201);
    expect(after.json.count).toBe(4);
    const rows = parsePreferenceJsonl(readFileSync(join(mnt, 'preferences.jsonl'), 'utf8'), 'f', { tornLastLine: 'error' }).rows;
    expect(rows.length).toBe(4);
    expect(rows[3].chosen).toBe(big.chosen);
  });
});
