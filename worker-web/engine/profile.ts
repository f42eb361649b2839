// Node CLI: where does one training step's GPU time go? Runs the engine on Dawn (SwiftShader
// without a GPU) and prints, per kernel family, the summed GPU time from timestamp queries, the
// number of dispatches, and the step's wall time. Not a benchmark against peers (bench/ does that).
//
//   npx tsx worker-web/engine/profile.ts [--preset small] [--batch 4] [--seq 128] [--attention auto|rows|matmul]

import { nodeGpu } from './node-gpu.ts';
import { requestEngineDevice } from './device.ts';
import { createWebGpuBackend } from './backend.ts';
import { presetConfig, parameterCount } from '../../shared/model/config.ts';
import { Rng } from '../../shared/rng.ts';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
};
const config = presetConfig(arg('preset', 'small'));
const B = Number(arg('batch', '4'));
const T = Number(arg('seq', String(Math.min(128, config.contextLength))));
const attention = arg('attention', 'auto') as 'auto' | 'rows' | 'matmul';

const dev = await requestEngineDevice(nodeGpu());
console.log(`adapter: ${dev.info.vendor} / ${dev.info.architecture} / ${dev.info.description}${dev.info.isSoftware ? ' [SOFTWARE]' : ''}`);
const engine = await createWebGpuBackend(config, { device: dev.device, adapterInfo: dev.info, attention });
const rng = new Rng(1);
await engine.setParams(Float32Array.from({ length: parameterCount(config) }, () => rng.normal() * 0.02));
const n = B * T;
const batch = {
  B, T,
  inputs: Int32Array.from({ length: n }, (_, i) => (7 * i + 3) % config.vocabSize),
  targets: Int32Array.from({ length: n }, (_, i) => (7 * i + 10) % config.vocabSize),
  mask: new Uint8Array(n).fill(1),
};
await engine.forwardBackward(batch); // compile + warm
const t0 = performance.now();
const r = await engine.forwardBackward(batch);
const wall = performance.now() - t0;
const prof = await engine.profileStep(batch);
const families = new Map<string, { ms: number; count: number }>();
for (const p of prof) {
  // Family = label without the shape suffixes: matmul64_NT_32x144x48_bias -> matmul64_NT.
  const fam = p.label.replace(/_\d+(x\d+)*(@\d+)?/g, '').replace(/_(bias|acc|add|geluGrad|gelu|causal|trilower|triupper|split\d+)/g, '');
  const f = families.get(fam) ?? { ms: 0, count: 0 };
  f.ms += p.ms;
  f.count++;
  families.set(fam, f);
}
const total = prof.reduce((s, p) => s + p.ms, 0);
console.log(`preset ${arg('preset', 'small')} B=${B} T=${T}: loss ${r.loss.toFixed(4)}, step wall ${wall.toFixed(1)} ms, GPU sum ${total.toFixed(1)} ms, ${engine.dispatchesPerStep} dispatches`);
for (const [fam, f] of [...families].sort((a, b) => b[1].ms - a[1].ms)) {
  console.log(`  ${fam.padEnd(34)} ${f.ms.toFixed(2).padStart(9)} ms  ${((100 * f.ms) / total).toFixed(1).padStart(5)}%  x${f.count}`);
}
engine.dispose();
dev.device.destroy();
process.exit(0);
