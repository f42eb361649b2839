// The export, checked by an independent implementation: tests/reference/gpt2_check.py (PyTorch,
// no other package, no KV cache) loads model.safetensors + config.json and greedily continues
// prompts; its tokens must equal our CPU generation and POST /api/generate at temperature 0.
// Routers are mounted on a bare express app on port 0 (as the coordinator mounts them).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportModel } from '../../coordinator/export/export.ts';
import { importModel } from '../../coordinator/export/import.ts';
import { promptTokens } from '../../coordinator/generation/generate.ts';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';
import { generate } from '../../shared/model/generate.ts';
import { initParameters } from '../../shared/model/init.ts';
import { EOS_ID } from '../../shared/tokenizer.ts';
import { context, post, startApp } from '../generate/helpers.ts';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { startTestWorker, until } from '../coordinator/test-worker.ts';

const run = promisify(execFile);
const MAX_NEW = 24;
const PROMPTS = ['12+34=', 'rev cat=', 'Hello', 'é😀', 'The quick brown fox', ''];

// A random tiny GPT-2, sharpened (x4) so greedy picks are far from ties, with the EOS row of
// the embedding boosted so that some continuations end at <|endoftext|> and others at the limit.
const config: ModelConfig = { ...PRESETS.tiny };
const params = initParameters(config, 3);
for (let i = 0; i < params.length; i++) params[i] *= 4;
for (let c = 0; c < config.nEmbd; c++) params[EOS_ID * config.nEmbd + c] *= 1.5;

async function pytorchGreedy(dir: string, prompts: number[][]): Promise<{ outputs: number[][]; margins: number[] }> {
  const { stdout } = await run('/usr/bin/python3', ['tests/reference/gpt2_check.py', dir, JSON.stringify(prompts), String(MAX_NEW)], { timeout: 120_000 });
  return JSON.parse(stdout);
}

let app: Awaited<ReturnType<typeof startApp>>;
beforeAll(async () => { app = await startApp(context({ config, params, step: 5 })); });
afterAll(async () => { await app.close(); });

describe('export runs identically in an independent PyTorch GPT-2', () => {
  it('fp32 export: PyTorch greedy == CPU generate == POST /api/generate (temperature 0)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parity-'));
    exportModel(dir, { config, params, step: 5 });
    const prompts = PROMPTS.map(promptTokens);
    const py = await pytorchGreedy(dir, prompts);
    for (const m of py.margins) expect(m).toBeGreaterThan(1e-4); // the comparison is not decided by a near-tie
    const finishes = new Set<string>();
    for (let i = 0; i < PROMPTS.length; i++) {
      const ours = generate(config, params, prompts[i], { maxTokens: MAX_NEW, eosId: EOS_ID, temperature: 0 });
      const pyTokens = py.outputs[i];
      const pyEos = pyTokens[pyTokens.length - 1] === EOS_ID;
      expect(ours.tokens, PROMPTS[i]).toEqual(pyEos ? pyTokens.slice(0, -1) : pyTokens);
      expect(ours.finishReason).toBe(pyEos ? 'eos' : 'length');
      finishes.add(ours.finishReason);
      const http = await post(`${app.url}/api/generate`, { prompt: PROMPTS[i], maxTokens: MAX_NEW, temperature: 0 });
      expect(http.status).toBe(200);
      expect(http.json.tokens, PROMPTS[i]).toEqual(ours.tokens);
      expect(http.json.finishReason).toBe(ours.finishReason);
    }
    expect(finishes).toEqual(new Set(['eos', 'length'])); // both endings were exercised
  });

  it('fp16 files downloaded from GET /api/export: PyTorch greedy == our greedy on the imported weights', async () => {
    const listing = await (await fetch(`${app.url}/api/export?dtype=f16`)).json();
    expect(listing.step).toBe(5);
    const dir = mkdtempSync(join(tmpdir(), 'parity16-'));
    mkdirSync(dir, { recursive: true });
    for (const f of listing.files as Array<{ name: string; url: string }>) {
      const res = await fetch(app.url + f.url);
      expect(res.status).toBe(200);
      writeFileSync(join(dir, f.name), new Uint8Array(await res.arrayBuffer()));
    }
    const imported = importModel(dir);
    expect(imported.dtype).toBe('F16');
    const prompts = PROMPTS.slice(0, 4).map(promptTokens);
    const py = await pytorchGreedy(dir, prompts);
    for (let i = 0; i < prompts.length; i++) {
      const ours = generate(imported.config, imported.params, prompts[i], { maxTokens: MAX_NEW, eosId: EOS_ID, temperature: 0 }).tokens;
      const pyTokens = py.outputs[i][py.outputs[i].length - 1] === EOS_ID ? py.outputs[i].slice(0, -1) : py.outputs[i];
      expect(ours, PROMPTS[i]).toEqual(pyTokens);
    }
    const bad = await fetch(`${app.url}/api/export/..%2Fetc%2Fpasswd`);
    expect(bad.status).toBe(404);
    expect((await fetch(`${app.url}/api/export/model.safetensors?dtype=int8`)).status).toBe(400);
  });
});

describe('a real coordinator (port 0) after a few training steps', () => {
  it('its GET /api/export runs in PyTorch exactly as its POST /api/generate and /v1/completions at temperature 0', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'parity-run-'));
    const c = await startCoordinator({
      port: 0, host: '127.0.0.1', preset: 'tiny', runDir, globalBatch: 16, maxSteps: 8, lr: 1e-2, minLr: 1e-3,
      warmupSteps: 2, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', adminToken: 'parity-token-123',
    });
    const w = startTestWorker(c.url, { name: 'parity' });
    try {
      await until(() => c.trainer.step >= 8, 90_000, '8 training steps');
      const listing = await (await fetch(`${c.url}/api/export`)).json();
      expect(listing.step).toBe(8);
      const dir = mkdtempSync(join(tmpdir(), 'parity-live-'));
      for (const f of listing.files as Array<{ name: string; url: string }>) {
        writeFileSync(join(dir, f.name), new Uint8Array(await (await fetch(c.url + f.url)).arrayBuffer()));
      }
      const prompts = ['12+34=', 'rev cat=', 'Hi'];
      const py = await pytorchGreedy(dir, prompts.map(promptTokens));
      for (let i = 0; i < prompts.length; i++) {
        const pyTokens = py.outputs[i][py.outputs[i].length - 1] === EOS_ID ? py.outputs[i].slice(0, -1) : py.outputs[i];
        const http = await post(`${c.url}/api/generate`, { prompt: prompts[i], maxTokens: MAX_NEW, temperature: 0 });
        expect(http.json.step).toBe(8);
        expect(http.json.tokens, prompts[i]).toEqual(pyTokens);
        const oai = await post(`${c.url}/v1/completions`, { prompt: prompts[i], max_tokens: MAX_NEW, temperature: 0 });
        expect(oai.json.usage.completion_tokens).toBe(pyTokens.length);
        expect(oai.json.choices[0].text).toBe(http.json.text);
      }
    } finally {
      w.close();
      await c.close();
    }
  });
});
