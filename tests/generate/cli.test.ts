// The generate and export CLIs as users run them (child processes), against a real HTTP server on
// port 0 and a real checkpoint file written by the coordinator's checkpoint writer.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeCheckpointFile, type CheckpointData } from '../../coordinator/checkpoint/index.ts';
import { importModel } from '../../coordinator/export/import.ts';
import { checkpointLoader } from '../../coordinator/generation/checkpoints.ts';
import { PRESETS, parameterCount, type ModelConfig } from '../../shared/model/config.ts';
import { generate } from '../../shared/model/generate.ts';
import { initParameters } from '../../shared/model/init.ts';
import { decode, encode } from '../../shared/tokenizer.ts';
import { context, post, startApp } from './helpers.ts';

const execFileP = promisify(execFile);
async function cli(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, ['--import', 'tsx', `coordinator/cli/${script}.ts`, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

const config: ModelConfig = { ...PRESETS.tiny, contextLength: 32 };
const params = initParameters(config, 21);
for (let i = 0; i < params.length; i++) params[i] *= 4;
const greedyText = (p: Float32Array, prompt: string, n: number) =>
  decode(generate(config, p, encode(prompt), { maxTokens: n, eosId: 256, temperature: 0 }).tokens);

let app: Awaited<ReturnType<typeof startApp>>;
beforeAll(async () => { app = await startApp(context({ config, params, step: 9 })); });
afterAll(async () => { await app.close(); });

function checkpoint(file: string, p: Float32Array, step: number): void {
  const P = parameterCount(config);
  const data: CheckpointData = {
    meta: {
      step, version: step, epoch: 0, preset: 'tiny', model: config, paramCount: P,
      cursor: { seed: 1, size: 10, epoch: 0, position: 0 }, ledger: { size: 10, epochs: [] },
      dataset: { name: 'test', fingerprint: '00000000', size: 10 }, rngState: [1, 2, 3, 4], optimizerStep: step,
      samplesTrained: 0, tokensTrained: 0, config: {}, history: [], createdAt: new Date(0).toISOString(),
    },
    params: p, m: new Float32Array(P), v: new Float32Array(P),
  };
  writeCheckpointFile(file, data);
}

describe('npm run generate / npm run export', () => {
  it('--url streams the server\'s greedy completion to stdout', async () => {
    const r = await cli('generate', ['--url', app.url, '--prompt', '12+34=', '--max-tokens', '10', '--temperature', '0']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(greedyText(params, '12+34=', 10) + '\n');
    expect(r.stderr).toMatch(/finish: length/);
  });

  it('--checkpoint generates locally; export --checkpoint writes a directory that imports back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const other = initParameters(config, 22);
    const file = join(dir, 'ckpt-000000004.vtc');
    checkpoint(file, other, 4);
    const g = await cli('generate', ['--checkpoint', file, '--prompt', 'rev cat=', '--max-tokens', '12']);
    expect(g.code, g.stderr).toBe(0);
    expect(g.stdout).toBe(greedyText(other, 'rev cat=', 12) + '\n');
    expect(g.stderr).toMatch(/step 4/);
    const out = join(dir, 'export');
    const x = await cli('export', ['--checkpoint', file, '--out', out]);
    expect(x.code, x.stderr).toBe(0);
    expect(x.stdout).toMatch(/exported step 4/);
    const back = importModel(out);
    expect(back.step).toBe(4);
    expect(back.params).toEqual(other);
    const m = await cli('generate', ['--model-dir', out, '--prompt', 'rev cat=', '--max-tokens', '12']);
    expect(m.stdout).toBe(g.stdout);
  });

  it('bad arguments exit 2 with the reason; unreachable servers and bad files exit 1', async () => {
    const bad = await cli('generate', ['--prompt', 'a', '--max-tokens=-3']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-tokens must be an integer in 1..4096, got "-3"/);
    const unknown = await cli('export', ['--checkpoint', 'x', '--out', 'y', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown option '--bogus'/);
    const down = await cli('generate', ['--url', 'http://127.0.0.1:9', '--prompt', 'a']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9\/v1\/completions/);
    const missing = await cli('export', ['--checkpoint', '/nonexistent/ckpt.vtc', '--out', '/tmp/x-never']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/checkpoint \/nonexistent\/ckpt\.vtc: cannot read/);
    const tooLong = await cli('generate', ['--url', app.url, '--prompt', 'q'.repeat(40)]);
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toMatch(/answered 400: .*prompt is 40 tokens/);
  });
});

describe('checkpointLoader', () => {
  it('serves checkpoints of the run directory by name only', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'run-'));
    const p7 = initParameters(config, 7);
    checkpoint(join(runDir, 'ckpt-000000007.vtc'), p7, 7);
    const t = await startApp(context({ config, params, step: 9 }, { loadCheckpoint: checkpointLoader(runDir) }));
    try {
      const r = await post(`${t.url}/api/generate`, { prompt: 'ab', maxTokens: 6, temperature: 0, checkpoint: 'ckpt-000000007.vtc' });
      expect(r.json).toMatchObject({ step: 7, text: greedyText(p7, 'ab', 6) });
      const missing = await post(`${t.url}/api/generate`, { prompt: 'ab', checkpoint: 'ckpt-000000008.vtc' });
      expect(missing.status).toBe(404);
      expect(missing.json.error.message).toMatch(/no checkpoint named "ckpt-000000008.vtc".*available: ckpt-000000007.vtc/);
      const viaOpenai = await post(`${t.url}/v1/completions`, { model: 'ckpt-000000007.vtc', prompt: 'ab', max_tokens: 6, temperature: 0 });
      expect(viaOpenai.json.choices[0].text).toBe(greedyText(p7, 'ab', 6));
      expect(viaOpenai.json.model).toBe('ckpt-000000007.vtc');
    } finally {
      await t.close();
    }
    await expect(checkpointLoader(runDir)('../ckpt-000000007.vtc')).rejects.toThrow(/no checkpoint named/);
  });
});
