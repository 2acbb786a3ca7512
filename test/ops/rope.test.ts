import { describe, expect, it } from 'vitest';
import { Tensor, rope } from '../../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on } from '../helpers.js';
import { ropeRef } from '../reference/kernels.js';


describeDevices('rope', ['ropeForward', 'ropeBackward'], (device) => {
  const dev = on(device);
  it('matches the HF rotate_half layout with f32 angles, out to 16K positions', () => {
    for (const [T, H, D, theta, posScale] of [[5, 3, 8, 10000, 1], [4, 2, 128, 10000, 1], [3, 1, 2, 500000, 4], [2, 2, 6, 10000, 2.5]] as const) {
      const posData = Array.from({ length: T }, (_, t) => (t === 0 ? 0 : t === 1 ? 16383 : 37 * t + 1000));
      const xd = randomArray(T * H * D, D + T);
      const x = dev.f32(xd, [T, H, D]);
      const pos = dev.i32(posData);
      const out = rope(x, pos, { theta, posScale });
      expect(out.shape).toEqual([T, H, D]);
      expectClose(out.toArray() as Float32Array, ropeRef(Float32Array.from(xd), posData, T, H, D, theta, posScale), 2e-6, 1e-5);
      [x, pos, out].forEach((t) => t.dispose());
    }
  });

  it('gives the same bits whether its cos/sin table was made for these positions, grown to them, or is reused', () => {
    // The CPU kernel keeps one table per (theta, posScale, D) and doubles it on demand; each call's
    // result must not depend on which calls came before (a fresh theta starts a fresh table).
    const D = 10, H = 2, theta = 12345 + (device === 'cpu' ? 0 : 1);
    const run = (posData: number[]): Float32Array => {
      const x = dev.f32(randomArray(posData.length * H * D, 7), [posData.length, H, D]);
      const pos = dev.i32(posData);
      const out = rope(x, pos, { theta });
      const a = Float32Array.from(out.toArray() as Float32Array);
      [x, pos, out].forEach((t) => t.dispose());
      return a;
    };
    const far = [3, 900, 5000, 77];
    const first = run([0, 1, 2]); // makes a small table
    const grown = run(far); // grows it past 5000
    expect(run(far)).toEqual(grown); // reused
    expect(run([0, 1, 2])).toEqual(first);
    expectClose(grown, ropeRef(Float32Array.from(randomArray(far.length * H * D, 7)), far, far.length, H, D, theta, 1), 2e-6, 1e-5);
  });

  it('is the identity at position 0 and keeps q.k a function of the relative position', () => {
    const D = 16;
    const q = randomArray(D, 1), k = randomArray(D, 2);
    const dotAt = (pq: number, pk: number): number => {
      const x = dev.f32([...q, ...k], [2, 1, D]);
      const pos = dev.i32([pq, pk]);
      const y = rope(x, pos).toArray() as Float32Array;
      [x, pos].forEach((t) => t.dispose());
      let s = 0;
      for (let i = 0; i < D; i++) s += y[i]! * y[D + i]!;
      return s;
    };
    let plain = 0;
    for (let i = 0; i < D; i++) plain += q[i]! * k[i]!;
    expect(dotAt(0, 0)).toBeCloseTo(plain, 4);
    expect(dotAt(10, 7)).toBeCloseTo(dotAt(3, 0), 4);
    expect(Math.abs(dotAt(10, 7) - plain)).toBeGreaterThan(1e-3);
  });

  it('passes a finite-difference gradient check (backward rotates by the opposite angle)', () => {
    for (const [T, H, D] of [[1, 1, 2], [3, 2, 6], [2, 3, 10]] as const) {
      const pos = dev.i32(Array.from({ length: T }, (_, t) => 3 * t + 1));
      dev.gradCheck((x) => rope(x!, pos, { theta: 100, posScale: 1.5 }),
        [{ data: randomArray(T * H * D, T + D), shape: [T, H, D] }, { data: [], shape: [], tensor: pos }], { eps: 1e-3 });
    }
  });

  it('rejects bad shapes and options, naming the op', () => {
    const x = dev.zeros([2, 1, 4]);
    const odd = dev.zeros([2, 1, 5]);
    const pos = dev.i32([0, 1]);
    const pos3 = dev.i32([0, 1, 2]);
    expect(() => rope(odd, pos)).toThrow(/rope: head size must be even/);
    expect(() => rope(x, pos3)).toThrow(/rope: positions is i32\[3\], expected shape \[2\]/);
    expect(() => rope(x, pos, { posScale: 0 })).toThrow(/rope: posScale must be a positive finite number/);
    expect(() => rope(x, pos, { theta: Number.NaN })).toThrow(/rope: theta/);
    const flat = dev.zeros([2, 4]);
    expect(() => rope(flat, pos)).toThrow(/rope: x is f32\[2, 4\], expected 3 dimensions/);
    [x, odd, pos, pos3, flat].forEach((t) => t.dispose());
  });
});
