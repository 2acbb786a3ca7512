import { describe, expect, it } from 'vitest';
import { Tensor, type Device, clearTape, crossEntropy, linear, linearCrossEntropy, memoryStats, noGrad, resetPeakMemory } from '../../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on } from '../helpers.js';

const N = 11, C = 6, V = 17;

function targets(ignore: number[] = [], device: Device = 'cpu'): Tensor {
  return Tensor.from(Int32Array.from({ length: N }, (_, i) => (ignore.includes(i) ? -100 : (i * 5 + 2) % V)), [N], { device });
}

describeDevices('linearCrossEntropy', ['gemm', 'crossEntropyForward', 'crossEntropyBackward'], (device) => {
  const dev = on(device);
  for (const chunkSize of [1, 4, N]) {
    it(`equals crossEntropy(linear(h, W)) in value and gradients (chunk ${chunkSize})`, () => {
      const hData = randomArray(N * C, 1), wData = randomArray(V * C, 2);
      const t = targets([2, 7], device);
      const ref = (() => {
        const h = dev.f32(hData, [N, C], true), w = dev.f32(wData, [V, C], true);
        const loss = crossEntropy(linear(h, w), t);
        const value = loss.item();
        loss.backward();
        return { value, dh: h.grad!.toArray(), dw: w.grad!.toArray() };
      })();
      const h = dev.f32(hData, [N, C], true), w = dev.f32(wData, [V, C], true);
      const loss = linearCrossEntropy(h, w, t, { chunkSize });
      expect(loss.item()).toBeCloseTo(ref.value, 5);
      loss.backward();
      expectClose(h.grad!.toArray() as Float32Array, ref.dh as Float32Array, 1e-6, 1e-4, 'dh');
      expectClose(w.grad!.toArray() as Float32Array, ref.dw as Float32Array, 1e-6, 1e-4, 'dW');
    });
  }

  it('passes a finite-difference check with sum reduction and an upstream gradient', () => {
    const t = targets([0], device);
    dev.gradCheck((h, w) => linearCrossEntropy(h, w, t, { reduction: 'sum', chunkSize: 3 }), [
      { data: randomArray(N * C, 3), shape: [N, C] },
      { data: randomArray(V * C, 4), shape: [V, C] },
    ]);
  });

  it('never holds more than one chunk of logits', () => {
    const n = 512, c = 16, v = 4096;
    const h = dev.randn([n, c], { seed: 1 }), w = dev.randn([v, c], { seed: 2 });
    const t = dev.from(Int32Array.from({ length: n }, (_, i) => i % v), [n]);
    const base = memoryStats().cpu.liveBytes;
    resetPeakMemory();
    noGrad(() => linearCrossEntropy(h, w, t, { chunkSize: 64 })).dispose();
    const extra = memoryStats().cpu.peakBytes - base;
    expect(extra).toBeLessThan(64 * v * 4 * 1.5); // one 64-row chunk, not n x v
    expect(extra).toBeGreaterThanOrEqual(64 * v * 4);
    clearTape();
  });

  it('rejects targets outside the vocabulary and mismatched shapes', () => {
    const h = dev.zeros([2, C]), w = dev.zeros([V, C]);
    expect(() => linearCrossEntropy(h, w, dev.from(new Int32Array([0, V])))).toThrow(/linearCrossEntropy: target 17 outside/);
    expect(() => linearCrossEntropy(h, dev.zeros([V, C + 1]), dev.from(new Int32Array([0, 1])))).toThrow(/linearCrossEntropy: weight/);
  });
});
