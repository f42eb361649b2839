// Golden check of the explicit activation estimate against what PyTorch autograd really keeps
// for backward in an fp32 GPT-2 (tests/memory/saved_activations.py, python3-torch).
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { layerActivationBytes, trainingActivations } from '../../shared/memory/activations.ts';
import type { ModelConfig } from '../../shared/model/config.ts';

const script = fileURLToPath(new URL('./saved_activations.py', import.meta.url));
const shapes = [
  { B: 2, T: 64, C: 64, NH: 4, L: 2, V: 257 },
  { B: 2, T: 256, C: 64, NH: 4, L: 2, V: 257 },
  { B: 1, T: 128, C: 128, NH: 8, L: 2, V: 257 },
];

describe('activation estimate vs PyTorch saved tensors (fp32 GPT-2)', () => {
  it('per layer, Korthikanti x2 is within 30% of what autograd saves; the ends estimate is not below it', () => {
    const out = JSON.parse(execFileSync('/usr/bin/python3', [script, JSON.stringify(shapes)], { encoding: 'utf8' })) as
      Array<(typeof shapes)[number] & { perLayer: number; ends: number }>;
    expect(out).toHaveLength(shapes.length);
    for (const m of out) {
      const c: ModelConfig = { vocabSize: m.V, contextLength: m.T, nLayer: m.L, nHead: m.NH, nEmbd: m.C };
      const est = layerActivationBytes(c, m.B, m.T);
      const ratio = m.perLayer / est;
      expect(ratio, `B${m.B} T${m.T} C${m.C}: measured ${m.perLayer} vs estimate ${est}`).toBeGreaterThan(0.7);
      expect(ratio).toBeLessThan(1.3);
      const ends = trainingActivations(c, m.B, m.T, 0, true).total;
      expect(ends).toBeGreaterThanOrEqual(m.ends);
    }
  });
});
