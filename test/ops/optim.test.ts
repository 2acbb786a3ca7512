import { describe, expect, it } from 'vitest';
import { Tensor, adamwStep, clipGradNorm, globalGradNorm } from '../../src/tensor/index.js';
import { expectClose, f32, randomArray, describeDevices, on } from '../helpers.js';
import { adamwRef, type AdamwRefState } from '../reference/kernels.js';

describeDevices('adamwStep', ['adamwStep'], (device) => {
  const dev = on(device);
  it('follows torch.optim.AdamW over several steps (weight decay, grad scale, odd size)', () => {
    const n = 1000 + 7;
    const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5 };
    const p0 = Float32Array.from(randomArray(n, 1));
    const ref: AdamwRefState = { param: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n) };
    const param = dev.f32(p0, [n]);
    const m = dev.zeros([n]);
    const v = dev.zeros([n]);
    for (let step = 1; step <= 8; step++) {
      const g = Float32Array.from(randomArray(n, 100 + step, step % 3 === 0 ? 1e-3 : 1));
      const grad = dev.f32(g, [n]);
      adamwStep(param, grad, m, v, { ...hp, step });
      adamwRef(ref, g, { ...hp, step });
      grad.dispose();
    }
    expectClose(param.toArray() as Float32Array, ref.param, 1e-6, 1e-5, 'param');
    expectClose(m.toArray() as Float32Array, ref.m, 1e-7, 1e-5, 'm');
    expectClose(v.toArray() as Float32Array, ref.v, 1e-9, 1e-5, 'v');
    [param, m, v].forEach((t) => t.dispose());
  });

  it('uses torch defaults (betas 0.9/0.999, eps 1e-8, weight decay 0.01)', () => {
    const n = 3;
    const p0 = [0.5, -1, 2];
    const g = [0.1, 0.2, -0.3];
    const param = dev.f32(p0, [n]);
    const grad = dev.f32(g, [n]);
    const m = dev.zeros([n]);
    const v = dev.zeros([n]);
    adamwStep(param, grad, m, v, { lr: 0.1, step: 1 });
    const ref: AdamwRefState = { param: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n) };
    adamwRef(ref, g, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1, gradScale: 1 });
    expectClose(param.toArray() as Float32Array, ref.param, 1e-6, 1e-6);
    [param, grad, m, v].forEach((t) => t.dispose());
  });

  it('rejects bad hyper-parameters and shapes, naming the op', () => {
    const p = dev.zeros([4]);
    const g = dev.zeros([4]);
    const m = dev.zeros([4]);
    const v = dev.zeros([4]);
    const short = dev.zeros([3]);
    expect(() => adamwStep(p, g, m, v, { lr: 1e-3, step: 0 })).toThrow(/adamwStep: step must be an integer >= 1/);
    expect(() => adamwStep(p, g, m, v, { lr: 1e-3, step: 1, beta1: 1 })).toThrow(/adamw: beta1 must be in \[0, 1\)/);
    expect(() => adamwStep(p, g, m, v, { lr: -1, step: 1 })).toThrow(/adamw: lr must be a finite number >= 0/);
    expect(() => adamwStep(p, g, short, v, { lr: 1e-3, step: 1 })).toThrow(/adamwStep: param f32\[4\] and m f32\[3\] differ in shape/);
    [p, g, m, v, short].forEach((t) => t.dispose());
  });
});

describeDevices('globalGradNorm and clipGradNorm', ['sumSquares', 'scale'], (device) => {
  const dev = on(device);
  it('computes the norm over all tensors and clips like clip_grad_norm_', () => {
    const a = randomArray(301, 1), b = randomArray(17, 2);
    let ss = 0;
    for (const x of [...Float32Array.from(a), ...Float32Array.from(b)]) ss += x * x;
    const norm = Math.sqrt(ss);
    const ta = dev.f32(a, [301]);
    const tb = dev.f32(b, [17]);
    expect(globalGradNorm([ta, tb])).toBeCloseTo(norm, 6); // f32 squares summed in f64 blocks

    const unclipped = clipGradNorm([ta, tb], norm * 2);
    expect(unclipped.scale).toBe(1);
    expectClose(ta.toArray() as Float32Array, Float32Array.from(a), 0, 0);

    const maxNorm = norm / 4;
    const clipped = clipGradNorm([ta, tb], maxNorm);
    expect(clipped.norm).toBeCloseTo(norm, 6);
    const coef = maxNorm / (norm + 1e-6);
    expect(clipped.scale).toBeCloseTo(coef, 6);
    expectClose(tb.toArray() as Float32Array, Float32Array.from(b).map((x) => x * coef), 1e-7, 1e-6);
    expect(globalGradNorm([ta, tb])).toBeCloseTo(maxNorm, 5);
    expect(() => clipGradNorm([ta], 0)).toThrow(/clipGradNorm: maxNorm/);
    const ints = dev.from(new Int32Array([1]));
    expect(() => globalGradNorm([ints])).toThrow(/globalGradNorm: gradient is i32\[1\]/);
    [ta, tb, ints].forEach((t) => t.dispose());
  });
});
