// Native dropout against a plain float64 reference of its mask (SplitMix64 at seed, offset + i),
// its gradient (by finite differences and analytically: the same mask), thread independence,
// and argument errors.
import { afterAll, expect, it } from 'vitest';
import { dropout, runtimeInfo, setNumThreads } from '../../src/tensor/index.js';
import { describeDevices, expectClose, on, randomArray } from '../helpers.js';
import { splitmixU } from '../reference/kernels.js';


/** The reference: x / (1 - p) where u >= p, else 0 (the scale rounded to f32 as the kernel does). */
function dropoutRef(x: ArrayLike<number>, p: number, seed: number, offset: number): Float32Array {
  const scale = Math.fround(1 / (1 - p));
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = splitmixU(seed, offset + i) < p ? 0 : Math.fround(Math.fround(x[i]!) * scale);
  return out;
}

describeDevices('dropout', ['dropoutForward', 'dropoutBackward'], (device) => {
  const dev = on(device);
  const threads = runtimeInfo().threads;
  afterAll(() => setNumThreads(threads));

  it('equals the reference mask and scale exactly, at any offset', () => {
    for (const [n, p, seed, offset] of [[1003, 0.1, 7, 0], [517, 0.5, 123456789, 1000], [64, 0.9, 0, 2 ** 40]] as const) {
      const xs = randomArray(n, n);
      const x = dev.f32(xs, [n]);
      const out = dropout(x, p, { seed, offset });
      expect(Array.from(out.toArray() as Float32Array)).toEqual(Array.from(dropoutRef(xs, p, seed, offset)));
      [x, out].forEach((t) => t.dispose());
    }
  });

  it('drops about p of the entries and keeps the mean; p = 0 is the identity', () => {
    const n = 200_000;
    const x = dev.f32(new Float64Array(n).fill(1), [400, 500]);
    for (const p of [0.1, 0.3, 0.75]) {
      const out = dropout(x, p, { seed: 3 });
      const v = out.toArray() as Float32Array;
      let zeros = 0, sum = 0;
      for (const e of v) { if (e === 0) zeros++; sum += e; }
      expect(zeros / n).toBeCloseTo(p, 2);
      expect(sum / n).toBeCloseTo(1, 1);
      out.dispose();
    }
    const same = dropout(x, 0, { seed: 3 });
    expect(Array.from(same.toArray() as Float32Array).every((e) => e === 1)).toBe(true);
    [x, same].forEach((t) => t.dispose());
  });

  it('gives the same mask whatever the thread count, and slices of one call equal calls at the offsets', () => {
    const n = 300_001; // several parallel chunks
    const xs = randomArray(n, 5);
    const x = dev.f32(xs, [n]);
    setNumThreads(1);
    const one = dropout(x, 0.2, { seed: 11, offset: 5 }).toArray() as Float32Array;
    setNumThreads(Math.max(2, threads));
    const many = dropout(x, 0.2, { seed: 11, offset: 5 }).toArray() as Float32Array;
    setNumThreads(threads);
    expect(Buffer.from(many.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    const tail = dev.f32(xs.subarray(1000), [n - 1000]);
    const part = dropout(tail, 0.2, { seed: 11, offset: 1005 }).toArray() as Float32Array;
    expect(Buffer.from(part.buffer).equals(Buffer.from(one.subarray(1000).slice().buffer))).toBe(true);
    // Another seed or offset: another mask.
    const other = dropout(x, 0.2, { seed: 12, offset: 5 }).toArray() as Float32Array;
    expect(Buffer.from(other.buffer).equals(Buffer.from(one.buffer))).toBe(false);
    [x, tail].forEach((t) => t.dispose());
  });

  it('backward passes the gradient through the same mask and scale (analytic and finite differences)', () => {
    const n = 777, p = 0.35;
    const x = dev.f32(randomArray(n, 1), [7, 111], true);
    const out = dropout(x, p, { seed: 9, offset: 40 });
    const g = randomArray(n, 2);
    out.backward(dev.f32(g, [7, 111]));
    expectClose(x.grad!.toArray() as Float32Array, dropoutRef(g, p, 9, 40), 0, 0, 'dx');
    [x, out].forEach((t) => t.dispose());
    for (const m of [1, 6, 40])
      dev.gradCheck((t) => dropout(t!, 0.4, { seed: m, offset: 3 }), [{ data: randomArray(m, m), shape: [m] }], { eps: 1e-3 });
  });

  it('rejects a bad p, seed, offset or dtype, naming the op', () => {
    const x = dev.f32([1, 2, 3], [3]);
    expect(() => dropout(x, 1, { seed: 0 })).toThrow(/dropout: p must be in \[0, 1\), got 1/);
    expect(() => dropout(x, -0.1, { seed: 0 })).toThrow(/dropout: p must be in/);
    expect(() => dropout(x, NaN, { seed: 0 })).toThrow(/dropout: p must be in/);
    expect(() => dropout(x, 0.5, { seed: -1 })).toThrow(/dropout: seed must be an integer/);
    expect(() => dropout(x, 0.5, { seed: 1.5 })).toThrow(/dropout: seed must be an integer/);
    expect(() => dropout(x, 0.5, { seed: 0, offset: 2 ** 53 - 2 })).toThrow(/passes 2\^53/);
    const b = x.to('bf16');
    expect(() => dropout(b, 0.5, { seed: 0 })).toThrow(/dropout: x is bf16\[3\]/);
    [x, b].forEach((t) => t.dispose());
  });
});
