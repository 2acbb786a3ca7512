// matmul and linear: forward against a float64 reference on odd shapes, every transpose,
// batched and broadcast, at every SIMD level; gradients by finite differences; the bindings'
// argument checks.
import { afterAll, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { addon } from '../../src/native/loader.js';
import { Tensor, type Device, clearTape, memoryStats, noGrad, scope, setNumThreads, sum } from '../../src/tensor/index.js';
import { linear, matmul } from '../../src/tensor/ops/matmul.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on } from '../helpers.js';
import { linearGradRef, linearRef, matmulRef, roundBf16 } from '../reference/matmul.js';

const LEVELS = ['avx512', 'avx2', 'scalar'] as const;
const best = addon().info().simd;

afterAll(() => {
  addon().setSimdLevel('avx512'); // the cap back at the top: the best the CPU has
  setNumThreads(0);
});

// f32 sums of K products: the error grows with K.
const tol = (K: number): [number, number] => [1e-5 + 2e-6 * K, 1e-5];

function stored(shape: number[], trans: boolean): number[] {
  if (!trans) return shape;
  const s = [...shape];
  [s[s.length - 2], s[s.length - 1]] = [s[s.length - 1]!, s[s.length - 2]!];
  return s;
}

const prod = (dims: number[]): number => dims.reduce((p, d) => p * d, 1);

interface Shape3 {
  batch: number[];
  M: number;
  N: number;
  K: number;
  shareB?: boolean;
}

// Shapes around the microkernels' register blocks (14x32, 6x16, 4x16) and cache blocks (kc 384).
const SHAPES: Shape3[] = [
  { batch: [], M: 1, N: 1, K: 1 },
  { batch: [], M: 1, N: 33, K: 7 },
  { batch: [], M: 37, N: 1, K: 5 },
  { batch: [], M: 15, N: 33, K: 1 },
  { batch: [], M: 14, N: 32, K: 16 },
  { batch: [], M: 29, N: 65, K: 100 },
  { batch: [], M: 45, N: 97, K: 401 },
  { batch: [3], M: 13, N: 17, K: 19 },
  { batch: [2, 3], M: 7, N: 9, K: 11 },
  { batch: [4], M: 9, N: 31, K: 23, shareB: true },
  { batch: [2, 2], M: 16, N: 5, K: 6, shareB: true },
];

function checkForward(s: Shape3, transA: boolean, transB: boolean, seed: number, device: Device = 'cpu'): void {
  const aShape = [...s.batch, ...stored([s.M, s.K], transA)];
  const bShape = s.shareB ? stored([s.K, s.N], transB) : [...s.batch, ...stored([s.K, s.N], transB)];
  const av = randomArray(prod(aShape), seed), bv = randomArray(prod(bShape), seed + 1);
  const a = f32(av, aShape, false, device), b = f32(bv, bShape, false, device);
  const c = matmul(a, b, { transA, transB });
  const ref = matmulRef(Float32Array.from(av), aShape, Float32Array.from(bv), bShape, transA, transB);
  expect(c.shape).toEqual(ref.shape);
  expectClose(c.toArray() as Float32Array, ref.data, ...tol(s.K), `matmul ${JSON.stringify(s)} transA ${transA} transB ${transB}`);
  [a, b, c].forEach((t) => t.dispose());
}

describeDevices('matmul forward', ['gemm', 'gemmBf16', 'gemv'], (device) => {
  const dev = on(device);
  for (const level of LEVELS) {
    it(`matches the float64 reference on odd, batched and broadcast shapes (${level})`, () => {
      expect(addon().setSimdLevel(level)).toBe(LEVELS[Math.max(LEVELS.indexOf(level), LEVELS.indexOf(best))]);
      let seed = 1;
      for (const s of SHAPES)
        for (const transA of [false, true]) for (const transB of [false, true]) checkForward(s, transA, transB, (seed += 2), device);
      addon().setSimdLevel('avx512');
    });
  }

  it('crosses every cache block on one and two threads', () => {
    for (const threads of [1, 2]) {
      setNumThreads(threads);
      checkForward({ batch: [], M: 131, N: 517, K: 777 }, false, true, 11, device);
      checkForward({ batch: [2], M: 300, N: 70, K: 390 }, true, false, 12, device);
    }
    setNumThreads(0);
  });

  it('widens bf16 inputs to f32 and returns f32', () => {
    const av = randomArray(3 * 21 * 34, 5), bv = randomArray(34 * 19, 6);
    const a = dev.f32(av, [3, 21, 34]).to('bf16'), b = dev.f32(bv, [34, 19]).to('bf16');
    const c = matmul(a, b);
    expect(c.dtype).toBe('f32');
    expect(c.shape).toEqual([3, 21, 19]);
    const ref = matmulRef(roundBf16(av), [3, 21, 34], roundBf16(bv), [34, 19]);
    expectClose(c.toArray() as Float32Array, ref.data, ...tol(34));
    [a, b, c].forEach((t) => t.dispose());
  });

  it('handles empty dimensions: K = 0 gives zeros', () => {
    const a = dev.zeros([3, 0]), b = dev.zeros([0, 4]);
    const c = matmul(a, b);
    expect(Array.from(c.toArray() as Float32Array)).toEqual(new Array(12).fill(0));
    const e = matmul(dev.zeros([0, 5]), dev.zeros([5, 2]));
    expect(e.shape).toEqual([0, 2]);
    [a, b, c, e].forEach((t) => t.dispose());
  });

  it('refuses mismatched shapes, dtypes and ranks with clear errors', () => {
    const a = dev.zeros([2, 3, 4]);
    expect(() => matmul(a, dev.zeros([5, 6]))).toThrow(/K 4\) but b f32\[5, 6\] has K 5/);
    expect(() => matmul(a, dev.zeros([3, 4, 6]))).toThrow(/batch dimensions/);
    expect(() => matmul(a, dev.zeros([4]))).toThrow(/at least 2 dimensions/);
    expect(() => matmul(a, dev.zeros([4, 6]).to('bf16'))).toThrow(PatentGPTError);
    expect(() => matmul(dev.zeros([2, 2], { dtype: 'i32' }), dev.zeros([2, 2], { dtype: 'i32' }))).toThrow(/dtype/);
    expect(() => linear(dev.zeros([3, 5]), dev.zeros([4, 6]))).toThrow(/5 features.*takes 6/);
    expect(() => linear(dev.zeros([3, 5]), dev.zeros([5]))).toThrow(/expected 2 dimensions/);
    const w = dev.zeros([4, 4], { dtype: 'bf16', requiresGrad: true });
    expect(() => linear(dev.zeros([2, 4], { dtype: 'bf16' }), w)).toThrow(/not differentiable/);
    expect(() => noGrad(() => linear(dev.zeros([2, 4], { dtype: 'bf16' }), w))).not.toThrow();
    a.dispose();
  });
});

describeDevices('matmul gradients', ['gemm'], (device) => {
  const dev = on(device);
  for (const transA of [false, true])
    for (const transB of [false, true])
      it(`by finite differences, transA ${transA} transB ${transB}`, () => {
        const f = (a: Tensor, b: Tensor) => matmul(a, b, { transA, transB });
        // batched
        const aS = [2, ...stored([3, 5], transA)], bS = [2, ...stored([5, 4], transB)];
        dev.gradCheck(f, [
          { data: randomArray(prod(aS), 1), shape: aS },
          { data: randomArray(prod(bS), 2), shape: bS },
        ]);
        // b shared over a batch of rank 2
        const aS2 = [2, 2, ...stored([3, 5], transA)], bS2 = stored([5, 4], transB);
        dev.gradCheck(f, [
          { data: randomArray(prod(aS2), 3), shape: aS2 },
          { data: randomArray(prod(bS2), 4), shape: bS2 },
        ]);
      });

  it('gives only the gradients asked for', () => {
    const a = dev.f32(randomArray(6, 1), [2, 3], true), b = dev.f32(randomArray(12, 2), [3, 4]);
    matmul(a, b).backward(dev.full([2, 4], 1));
    expect(a.grad?.shape).toEqual([2, 3]);
    expect(b.grad).toBeNull();
    [a, b].forEach((t) => t.dispose());
    clearTape();
  });
});

describeDevices('linear', ['gemm'] /* on cuda every shape goes to the GEMM */, (device) => {
  const dev = on(device);
  it('matches x @ W^T and its gradients in float64 (Hugging Face layout)', () => {
    const xS = [2, 5, 7], wS = [3, 7];
    const xv = randomArray(prod(xS), 1), wv = randomArray(prod(wS), 2), dyv = randomArray(2 * 5 * 3, 3);
    const x = dev.f32(xv, xS, true), w = dev.f32(wv, wS, true);
    const y = linear(x, w);
    expect(y.shape).toEqual([2, 5, 3]);
    const xf = Float32Array.from(xv), wf = Float32Array.from(wv), dyf = Float32Array.from(dyv);
    expectClose(y.toArray() as Float32Array, linearRef(xf, xS, wf, wS).data, ...tol(7));
    y.backward(dev.f32(dyv, [2, 5, 3]));
    const g = linearGradRef(xf, xS, wf, wS, dyf);
    expectClose(x.grad!.toArray() as Float32Array, g.dx, ...tol(3));
    expectClose(w.grad!.toArray() as Float32Array, g.dw, ...tol(10));
    // A second backward accumulates into weight.grad.
    linear(x, w).backward(dev.f32(dyv, [2, 5, 3]));
    expectClose(w.grad!.toArray() as Float32Array, g.dw.map((v) => 2 * v), ...tol(20));
    [x, w].forEach((t) => t.dispose());
  });

  it('gradients by finite differences, at every SIMD level', () => {
    for (const level of LEVELS) {
      addon().setSimdLevel(level);
      dev.gradCheck(linear, [
        { data: randomArray(3 * 4 * 9, 5), shape: [3, 4, 9] },
        { data: randomArray(6 * 9, 6), shape: [6, 9] },
      ]);
      dev.gradCheck(linear, [
        { data: randomArray(9, 7), shape: [9] },
        { data: randomArray(2 * 9, 8), shape: [2, 9] },
      ]);
    }
    addon().setSimdLevel('avx512');
  });

  it('frees everything a training step made once backward has run', () => {
    const w1 = dev.f32(randomArray(16 * 8, 1), [16, 8], true), w2 = dev.f32(randomArray(4 * 16, 2), [4, 16], true);
    const x = dev.f32(randomArray(3 * 5 * 8, 3), [3, 5, 8]);
    const step = () => {
      const loss = scope(() => sum(linear(matmul(linear(x, w1), dev.full([16, 16], 0.1)), w2)));
      loss.backward();
      loss.dispose();
    };
    step(); // the first step creates the .grad tensors
    const before = memoryStats().cpu.liveCount;
    for (let i = 0; i < 3; i++) step();
    expect(memoryStats().cpu.liveCount).toBe(before);
    [w1, w2, x].forEach((t) => t.dispose());
  });

  it('takes bf16 inputs without gradients', () => {
    const xv = randomArray(4 * 8, 9), wv = randomArray(5 * 8, 10);
    const x = dev.f32(xv, [4, 8]).to('bf16'), w = dev.f32(wv, [5, 8]).to('bf16');
    const y = linear(x, w);
    expectClose(y.toArray() as Float32Array, linearRef(roundBf16(xv), [4, 8], roundBf16(wv), [5, 8]).data, ...tol(8));
    [x, w, y].forEach((t) => t.dispose());
  });
});

describe('gemm bindings', () => {
  const S = (n: number) => Tensor.zeros([n]);
  it('reject matrices that do not fit their storage and bad leading dimensions', () => {
    const A = S(6), B = S(6), C = S(4);
    const g = (M: number, N: number, K: number, lda: number, ldb: number, ldc: number, sA = 0, sB = 0, sC = 0, batch = 1) =>
      addon().gemm(false, false, M, N, K, 1, A.storage, 0, lda, sA, B.storage, 0, ldb, sB, 0, C.storage, 0, ldc, sC, batch);
    expect(() => g(2, 2, 3, 3, 2, 2)).not.toThrow();
    expect(() => g(2, 2, 3, 2, 2, 2)).toThrow(/A: leading dimension 2 is less than its row width 3/);
    expect(() => g(2, 2, 3, 3, 2, 1)).toThrow(/C: leading dimension/);
    expect(() => g(2, 2, 4, 4, 2, 2)).toThrow(/A needs 8 elements/);
    expect(() => g(2, 2, 3, 3, 2, 2, 0, 0, 4, 2)).toThrow(/C needs 8 elements/);
    expect(() => g(2, 2, 3, 3, 2, 2, 0, 0, 2, 2)).toThrow(/overlap/);
    expect(() => g(2, 2, 3, 3, 2, 2, 6, 0, 0, 2)).toThrow(/A needs 12 elements/);
    expect(() => g(-1, 2, 3, 3, 2, 2)).toThrow(/M must be >= 0/);
    expect(() => g(2 ** 40, 2 ** 40, 1, 1, 2 ** 40, 2 ** 40)).toThrow(/overflow|needs/);
    expect(() =>
      addon().gemm(false, false, 2, 2, 1, 1, A.storage, 0, 1, 0, B.storage, 0, 2, 0, 0, A.storage, 1, 2, 0, 1),
    ).toThrow(/C overlaps A or B/);
    expect(() =>
      addon().gemmBf16(false, false, 2, 2, 3, 1, A.storage, 0, 3, 0, B.storage, 0, 2, 0, 0, C.storage, 0, 2, 0, 1),
    ).not.toThrow();
    [A, B, C].forEach((t) => t.dispose());
  });

  it('broadcasts with stride 0 and ignores NaN in C when beta = 0', () => {
    const A = f32([1, 2, 3, 4], [4]), B = f32([1, 0, 0, 1], [4]), C = f32([NaN, NaN, NaN, NaN, NaN, NaN, NaN, NaN], [8]);
    addon().gemm(false, false, 2, 2, 2, 1, A.storage, 0, 2, 0, B.storage, 0, 2, 0, 0, C.storage, 0, 2, 4, 2);
    expect(Array.from(C.toArray() as Float32Array)).toEqual([1, 2, 3, 4, 1, 2, 3, 4]);
    [A, B, C].forEach((t) => t.dispose());
  });
});
