import { describe, expect, it } from 'vitest';
import { Tensor, rmsnorm } from '../../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on } from '../helpers.js';
import { rmsnormRef } from '../reference/kernels.js';

describeDevices('rmsnorm', ['rmsnormForward', 'rmsnormBackward'], (device) => {
  const dev = on(device);
  it('matches LlamaRMSNorm over the last dimension', () => {
    for (const [shape, eps] of [[[3, 5, 37], 1e-5], [[1, 1], 1e-6], [[4, 300], 1e-5]] as const) {
      const C = shape[shape.length - 1]!;
      const size = shape.reduce<number>((a, b) => a * b, 1);
      const xd = randomArray(size, C, 3);
      const wd = randomArray(C, C + 1);
      const x = dev.f32(xd, [...shape]);
      const w = dev.f32(wd, [C]);
      const out = rmsnorm(x, w, eps);
      expect(out.shape).toEqual(shape);
      expectClose(out.toArray() as Float32Array, rmsnormRef(Float32Array.from(xd), Float32Array.from(wd), C, eps), 1e-5, 1e-5);
      [x, w, out].forEach((t) => t.dispose());
    }
  });

  it('passes a finite-difference gradient check in x and weight', () => {
    for (const [N, C] of [[1, 1], [3, 7], [2, 19]] as const) {
      dev.gradCheck((x, w) => rmsnorm(x!, w!), [{ data: randomArray(N * C, N + C), shape: [N, C] }, { data: randomArray(C, 7), shape: [C] }],
        { eps: 1e-3 });
    }
  });

  it('accumulates the weight gradient across calls (parameter gradients add up)', () => {
    const x = dev.f32(randomArray(6 * 33, 1), [6, 33]);
    const w = dev.f32(randomArray(33, 2), [33], true);
    const dy = randomArray(6 * 33, 3);
    rmsnorm(x, w).backward(dev.f32(dy, [6, 33]));
    const once = Float32Array.from(w.grad!.toArray() as Float32Array);
    rmsnorm(x, w).backward(dev.f32(dy, [6, 33]));
    expectClose(w.grad!.toArray() as Float32Array, once.map((v) => 2 * v), 1e-6, 1e-6);
    [x, w].forEach((t) => t.dispose());
  });

  it('rejects bad shapes and eps, naming the op', () => {
    const x = dev.zeros([2, 4]);
    const w = dev.zeros([3]);
    expect(() => rmsnorm(x, w)).toThrow(/rmsnorm: x f32\[2, 4\] must end in the weight's size 3/);
    const w4 = dev.zeros([4]);
    expect(() => rmsnorm(x, w4, -1)).toThrow(/rmsnorm: eps/);
    const w2 = dev.zeros([2, 2]);
    expect(() => rmsnorm(x, w2)).toThrow(/rmsnorm: weight is f32\[2, 2\], expected 1 dimensions/);
    [x, w, w4, w2].forEach((t) => t.dispose());
  });
});
