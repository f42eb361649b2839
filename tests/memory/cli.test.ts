import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'coordinator/cli/simulate.ts');

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!);

describe('npm run simulate', () => {
  it('--params 7e9 --json: 140 GB to train, breakdown on the last line', async () => {
    const r = await run(['--params', '7e9', '--json']);
    expect(r.code).toBe(0);
    const j = lastJson(r.stdout);
    expect(j).toMatchObject({ params: 7e9, mode: 'train', precision: 'fp32', bytesPerParam: 20, totalBytes: 140e9 });
    expect(j.breakdown).toEqual({ weights: 28e9, gradients: 28e9, optimizer: 56e9, activations: 28e9 });
  });

  it('a cluster in --json and the readable table; a config file in HF names', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-'));
    const cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify({ n_embd: 768, n_layer: 12, n_head: 12, vocab_size: 50257, n_positions: 1024, model_type: 'gpt2' }));
    const [a, b, c] = await Promise.all([
      run(['--model', 'gpt2-medium', '--seq', '512', '--cluster', '30x4GiB@1000/50Mbps', '--leave', '3', '--json']),
      run(['--model', 'gpt2-medium', '--seq', '512', '--cluster', '30x4GiB@1000/50Mbps']),
      run(['--config', cfg, '--mode', 'infer', '--precision', 'fp16', '--json']),
    ]);
    expect(a.code).toBe(0);
    const j = lastJson(a.stdout);
    expect(j.params).toBe(354_823_168);
    for (const k of ['devices', 'capacityBytes', 'fits', 'replicas', 'stages', 'unassigned', 'assignments']) expect(j.cluster).toHaveProperty(k);
    expect(j.cluster.devices).toBe(30);
    expect(j.cluster.fits).toBe(true);
    expect(j.cluster.assignments).toHaveLength(30);
    expect(j.change.after.pipelines).toBe(9);
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(/FITS/);
    expect(b.stdout).toMatch(/Step estimate: .* tokens\/s/);
    expect(b.stdout).toMatch(/pipeline 0: 3 stage\(s\), 3 micro-batch\(es\) in flight, bubble 40%/);
    expect(b.stdout).toMatch(/E\+\[0,\d+\)/);
    expect(b.stdout).toMatch(/GiB/);
    expect(c.code).toBe(0);
    expect(lastJson(c.stdout)).toMatchObject({ params: 124_439_808, mode: 'infer', bytesPerParam: 2, totalBytes: 2 * 124_439_808 });
  });

  it('invalid input gets a clear error on stderr and exit code 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--model', 'gpt5'], /unknown model preset "gpt5"/],
      [['--params', '-1'], /--params/],
      [['--model', 'gpt2', '--cluster', '12xGB'], /12xGB/],
      [['--model', 'gpt2', '--bogus'], /unknown argument/],
      [['--model', 'gpt2', '--params', '1e9'], /exactly one/],
      [['--model', 'gpt2', '--precision', 'fp16'], /fp32/],
    ];
    const results = await Promise.all(cases.map(([args]) => run(args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i][0].join(' ')).toBe(2);
      expect(r.stderr).toMatch(cases[i][1]);
      expect(r.stdout).toBe('');
    });
  });
});
