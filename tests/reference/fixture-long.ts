// The second PyTorch fixture, shaped so that the engine's GPU kernel policy takes its GPU-only
// paths: B*T = 1024 rows, so the weight-gradient products (K = B*T >= 1024, few output tiles)
// are split-K and the column sums (bias and layernorm parameter gradients, N = B*T >= 1024) take
// two passes (worker-web/engine/tiling.ts). The main fixture (B=2, T=16) reaches neither, and
// a software adapter never chooses them, so without this file those kernels would meet a real
// model only on volunteers' GPUs. Small model (1 layer, C=16, V=61) so SwiftShader runs it in
// seconds; T=256 also runs the batched-matmul attention at a long T.
//   npx tsx tests/reference/write-init.ts --long | /usr/bin/python3 tests/reference/make_fixture.py tests/reference/gpt2_long.bin
import { fileURLToPath } from 'node:url';
import type { ModelConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';
import type { FixtureSetup } from './fixture.ts';

export const LONG_FIXTURE_PATH = fileURLToPath(new URL('./gpt2_long.bin', import.meta.url));

export function longFixtureSetup(): FixtureSetup {
  const config: ModelConfig = { vocabSize: 61, contextLength: 256, nLayer: 1, nHead: 2, nEmbd: 16 };
  const B = 4;
  const T = 256;
  const seed = 4242;
  // Self-describing, as the main fixture: position n holds (7n + 3) mod V; every 9th masked out.
  const tok = (n: number) => (7 * n + 3) % config.vocabSize;
  const n = B * T;
  const inputs = Int32Array.from({ length: n }, (_, i) => tok(i));
  const targets = Int32Array.from({ length: n }, (_, i) => tok(i + 1));
  const mask = Int32Array.from({ length: n }, (_, i) => (i % 9 === 4 ? 0 : 1));
  return {
    config, B, T, seed, nSteps: 1,
    hyper: { lr: 3e-3, minLr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.0, warmupSteps: 1, totalSteps: 1 },
    inputs, targets, mask, params: initParameters(config, seed),
  };
}
