import { describe, expect, it } from 'vitest';
import { swiglu } from '../../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on } from '../helpers.js';
import { swigluRef } from '../reference/kernels.js';

describeDevices('swiglu', ['swigluForward', 'swigluBackward'], (device) => {
  const dev = on(device);
  it('matches silu(gate) * up, extreme gates included', () => {
    const n = 1000 + 3;
    const g = randomArray(n, 1, 4);
    g[0] = -100; g[1] = 100; g[2] = 0; g[3] = -87.5; g[4] = 30;
    const u = randomArray(n, 2);
    const gate = dev.f32(g, [17, 59]);
    const up = dev.f32(u, [17, 59]);
    const out = swiglu(gate, up);
    expect(out.shape).toEqual([17, 59]);
    expectClose(out.toArray() as Float32Array, swigluRef(Float32Array.from(g), Float32Array.from(u)), 1e-6, 2e-6);
    [gate, up, out].forEach((t) => t.dispose());
  });

  it('passes a finite-difference gradient check', () => {
    for (const n of [1, 5, 33]) {
      dev.gradCheck((g, u) => swiglu(g!, u!), [{ data: randomArray(n, n, 2), shape: [n] }, { data: randomArray(n, n + 1), shape: [n] }],
        { eps: 1e-3 });
    }
  });

  it('rejects mismatched shapes and dtypes, naming the op', () => {
    const a = dev.f32([1, 2, 3], [3]);
    const b = dev.f32([1, 2], [2]);
    expect(() => swiglu(a, b)).toThrow(/swiglu: gate f32\[3\] and up f32\[2\] differ in shape/);
    const c = a.to('bf16');
    expect(() => swiglu(c, a)).toThrow(/swiglu: gate is bf16\[3\]/);
    [a, b, c].forEach((t) => t.dispose());
  });
});
