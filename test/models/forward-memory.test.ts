// The decoder frees each layer's intermediates when the layer ends: without gradients (scoring,
// evaluation, a prefill through the separate ops) a forward's peak memory does not grow with
// depth, and in training only what backward reads stays.
import { describe, expect, it } from 'vitest';
import { LlamaForCausalLM, preset, validateConfig } from '../../src/models/index.js';
import { clearTape, memoryStats, noGrad, resetPeakMemory, scope } from '../../src/tensor/index.js';

const N = 2048, T = 256;
const batch = {
  tokens: Int32Array.from({ length: N }, (_, i) => (i * 7) % 250),
  targets: Int32Array.from({ length: N }, (_, i) => (i * 11) % 250),
  positions: Int32Array.from({ length: N }, (_, i) => i % T),
  cuSeqlens: Int32Array.from({ length: N / T + 1 }, (_, b) => b * T),
};

/** Peak native bytes above the weights of `run` on a model of `nLayers`. */
function peakOf(nLayers: number, run: (m: LlamaForCausalLM) => void): number {
  const m = new LlamaForCausalLM(validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen: T, nLayers }), { seed: 1 });
  const live = memoryStats().cpu.liveBytes;
  resetPeakMemory();
  run(m);
  const peak = memoryStats().cpu.peakBytes - live;
  clearTape();
  m.dispose();
  return peak;
}

describe('decoder forward memory', () => {
  it('without gradients the peak does not grow with the number of layers', () => {
    const hidden = (m: LlamaForCausalLM): void => noGrad(() => scope(() => void m.hidden(batch)));
    const two = peakOf(2, hidden), eight = peakOf(8, hidden);
    expect(eight / two).toBeLessThan(1.6); // 1.3 (the residual stream of each layer); 3.8 when every layer's intermediates lived to the end of the forward
  });

  it('a training forward keeps what backward reads, less than every intermediate', () => {
    const loss = (m: LlamaForCausalLM): void => scope(() => void m.loss(batch));
    const lossNoGrad = (m: LlamaForCausalLM): void => noGrad(() => scope(() => void m.loss(batch)));
    expect(peakOf(8, loss)).toBeGreaterThan(3 * peakOf(8, lossNoGrad)); // the tape's saved activations are real
  });
});
