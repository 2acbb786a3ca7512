import { describe, expect, it } from 'vitest';
import { PatentGPTError } from '../src/errors.js';
import { Tensor, add, clearTape, keep, memoryStats, noGrad, runtimeInfo, scale, scope, sum, mean, tapeLength } from '../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, numbers } from './helpers.js';

describe('Tensor', () => {
  it('round-trips values for every dtype', () => {
    const f = Tensor.from([1, -2.5, 3], [3]);
    expect(numbers(f.toArray())).toEqual([1, -2.5, 3]);
    const i = Tensor.from(new Int32Array([7, -8]));
    expect(i.dtype).toBe('i32');
    expect(numbers(i.toArray())).toEqual([7, -8]);
    const l = Tensor.from(new BigInt64Array([1n, 1n << 40n]));
    expect(() => l.to('i32')).toThrow(/does not fit/);
    expect(l.dtype).toBe('i64');
    expect(l.toArray()[1]).toBe(1n << 40n);
    expect(numbers(Tensor.from(new BigInt64Array([3n, -4n])).to('i32').toArray())).toEqual([3, -4]);
    [f, i, l].forEach((t) => t.dispose());
  });

  it('converts f32 to bf16 and f16 with round-to-nearest-even', () => {
    const x = Tensor.from([1, 1.00390625, -3.14159, 65504, 1e-6, 0], [6]);
    const b = x.to('bf16');
    expect(b.dtype).toBe('bf16');
    expect(numbers(b.toRaw())).toEqual([0x3f80, 0x3f80, 0xc049, 0x4780, 0x3586, 0]);
    const h = x.to('f16');
    expect(numbers(h.toRaw())).toEqual([0x3c00, 0x3c04, 0xc248, 0x7bff, 0x0011, 0]);
    expectClose(h.toArray() as Float32Array, [1, 1.00390625, -3.140625, 65504, 1.0132789611816406e-6, 0], 1e-12, 1e-7);
    [x, b, h].forEach((t) => t.dispose());
  });

  it('makes views that share storage', () => {
    const x = Tensor.from([0, 1, 2, 3, 4, 5], [3, 2]);
    const r = x.reshape([2, -1]);
    expect(r.shape).toEqual([2, 3]);
    const rows = x.narrow(1, 2);
    expect(numbers(rows.toArray())).toEqual([2, 3, 4, 5]);
    x.dispose();
    expect(numbers(r.toArray())).toEqual([0, 1, 2, 3, 4, 5]); // the view keeps storage alive
    r.dispose();
    rows.dispose();
  });

  it('refuses bad shapes and use after dispose with clear errors', () => {
    const x = Tensor.zeros([2, 3]);
    expect(() => x.reshape([4, 2])).toThrow(/reshape.*\[2, 3\].*\[4, 2\]/);
    expect(() => x.narrow(1, 2)).toThrow(PatentGPTError);
    x.dispose();
    expect(() => x.toArray()).toThrow(/after dispose/);
    expect(() => Tensor.zeros([2, -1])).toThrow(/non-negative/);
  });

  it('seeded randn is reproducible', () => {
    const a = Tensor.randn([100], { seed: 5 });
    const b = Tensor.randn([100], { seed: 5 });
    expect(numbers(a.toArray())).toEqual(numbers(b.toArray()));
    const v = a.toArray() as Float32Array;
    const m = v.reduce((s, x) => s + x, 0) / v.length;
    expect(Math.abs(m)).toBeLessThan(0.3);
    a.dispose();
    b.dispose();
  });
});

describe('memory', () => {
  it('scope disposes what it made except the result', () => {
    const before = memoryStats().cpu.liveCount;
    const kept = scope(() => {
      const a = Tensor.zeros([10]);
      const b = Tensor.zeros([10]);
      keep(Tensor.zeros([1])).dispose();
      return add(a, b);
    });
    expect(memoryStats().cpu.liveCount).toBe(before + 1);
    kept.dispose();
    expect(memoryStats().cpu.liveCount).toBe(before);
  });

  it('the tape keeps saved tensors alive past their scope and frees them in backward', () => {
    const before = memoryStats().cpu.liveCount;
    const w = f32([1, 2, 3], [3], true);
    const loss = scope(() => sum(scale(add(w, w), 3)));
    expect(tapeLength()).toBe(3);
    loss.backward();
    expect(tapeLength()).toBe(0);
    expect(numbers(w.grad!.toArray())).toEqual([6, 6, 6]);
    loss.dispose();
    w.grad!.dispose();
    w.dispose();
    expect(memoryStats().cpu.liveCount).toBe(before);
  });
});

describe('autograd', () => {
  it('accumulates gradients across backward calls and respects noGrad/detach', () => {
    const w = f32([1, 2], [2], true);
    for (let i = 0; i < 2; i++) scope(() => sum(add(w, w)).backward());
    expect(numbers(w.grad!.toArray())).toEqual([4, 4]);
    const y = noGrad(() => add(w, w));
    expect(y.requiresGrad).toBe(false);
    expect(w.detach().requiresGrad).toBe(false);
    expect(() => y.backward()).toThrow(/does not require grad/);
    clearTape();
  });

  it('passes gradients through reshape and narrow', () => {
    gradCheck((x) => mean(scale(x.reshape([3, 2]).narrow(1, 2), 2)), [{ data: randomArray(6, 1), shape: [2, 3] }]);
  });
});

describe('elementwise ops', () => {
  it('add and scale match a float64 reference and finite differences', () => {
    const a = randomArray(1000, 1);
    const b = randomArray(1000, 2);
    const out = add(f32(a, [1000]), f32(b, [1000]));
    expectClose(out.toArray() as Float32Array, a.map((v, i) => v + b[i]!), 1e-6, 1e-6);
    gradCheck((x, y) => scale(add(x, y), -1.5), [{ data: randomArray(7, 3), shape: [7] }, { data: randomArray(7, 4), shape: [7] }]);
  });

  it('sum is accurate over large inputs', () => {
    const n = 1 << 20;
    const x = Tensor.full([n], 0.1);
    expect(sum(x).item()).toBeCloseTo(n * 0.1, 1);
    x.dispose();
  });
});

describe('devices', () => {
  const gpus = runtimeInfo().gpus.length;
  it.skipIf(gpus > 0)('asking for cuda storage without a GPU throws a clear error', () => {
    expect(() => Tensor.zeros([4], { device: 'cuda' })).toThrow(/CUDA|cuda/);
  });
  it.skipIf(gpus === 0)('copies values to a GPU and back', () => {
    const x = Tensor.from([1, 2, 3, 4], [2, 2]);
    const g = x.to('cuda');
    expect(g.device).toBe('cuda');
    expect(numbers(add(g, g).to('cpu').toArray())).toEqual([2, 4, 6, 8]); // the CUDA elementwise kernels
    expect(numbers(g.to('cpu').toArray())).toEqual([1, 2, 3, 4]);
  });
});

describe('runtime', () => {
  it('reports SIMD level, threads and CUDA status', () => {
    const info = runtimeInfo();
    expect(['avx512', 'avx2', 'scalar']).toContain(info.simd);
    expect(info.threads).toBeGreaterThan(0);
    if (info.gpus.length === 0) expect(info.cudaStatus).toBeTruthy();
  });
});
