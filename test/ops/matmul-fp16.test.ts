// matmul and linear at matmul precision 'fp16' on the CPU: the reference of fp16 mixed precision.
// Inputs (and, in backward, the upstream gradient) rounded to IEEE half, nearest even, beyond
// 65504 to infinity, subnormals kept; products summed in f32; f32 results and gradients. Checked
// bit for bit against the f32 GEMM on inputs rounded here in TypeScript, against a float64
// reference, and against torch (a.half().float() @ b.half().float()) where torch is installed.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findPython, runPythonJson } from '../../scripts/bench/_peers.js';
import { Tensor, clearTape, tapeLength } from '../../src/tensor/index.js';
import { linear, matmul, setMatmulPrecision } from '../../src/tensor/ops/matmul.js';
import { expectClose, randomArray, withPrecision } from '../helpers.js';
import { expectFusedHeadFollowsPrecision } from './precision-checks.js';
import { matmulRef, roundF16, matmulCases } from '../reference/matmul.js';

afterEach(() => {
  setMatmulPrecision('f32');
  clearTape();
});

const f32 = (a: ArrayLike<number>): Float32Array => Float32Array.from(a);
const prod = (dims: number[]): number => dims.reduce((p, d) => p * d, 1);

const roundAll = (v: ArrayLike<number>): Float32Array => f32(Array.from(v, roundF16));


const vals = (t: Tensor): number[] => Array.from(t.toArray() as Float32Array);
const sameBits = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('roundF16 (the test reference itself)', () => {
  it('rounds to nearest even, overflows to infinity past 65504 and keeps subnormals', () => {
    expect(roundF16(1 + 2 ** -11)).toBe(1); // a tie goes to the even neighbour
    expect(roundF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(roundF16(65504)).toBe(65504);
    expect(roundF16(65519)).toBe(65504);
    expect(roundF16(65520)).toBe(Infinity);
    expect(roundF16(-7e4)).toBe(-Infinity);
    expect(roundF16(2 ** -24)).toBe(2 ** -24); // the smallest subnormal
    expect(roundF16(2 ** -25)).toBe(0); // a tie with zero goes to zero
    expect(roundF16(1.5 * 2 ** -24)).toBe(2 ** -23);
    expect(roundF16(1e-6)).toBe(17 * 2 ** -24);
  });
});

describe('matmul precision fp16 (CPU)', () => {
  it('matmul: every transpose, batches, a shared b, equals the f32 GEMM on inputs rounded to f16, bit for bit', () => {
    let seed = 1;
    for (const { s, transA, transB, aShape, bShape, what } of matmulCases()) {
      const av = f32(randomArray(prod(aShape), seed++)), bv = f32(randomArray(prod(bShape), seed++));
      const out = withPrecision('fp16', () => matmul(Tensor.from(av, aShape), Tensor.from(bv, bShape), { transA, transB })).toArray() as Float32Array;
      const onRounded = matmul(Tensor.from(roundAll(av), aShape), Tensor.from(roundAll(bv), bShape), { transA, transB }).toArray() as Float32Array;
      expect(sameBits(out, onRounded), what).toBe(true);
      expectClose(out, matmulRef(roundAll(av), aShape, roundAll(bv), bShape, transA, transB).data, 1e-5 + 2e-6 * s.K, 1e-5, what);
      const exact = matmul(Tensor.from(av, aShape), Tensor.from(bv, bShape), { transA, transB }).toArray() as Float32Array;
      expect(sameBits(out, exact), `${what}: it rounded`).toBe(false);
    }
  });

  it('an input beyond the f16 range gives infinity, 65519 rounds to 65504 and stays finite', () => {
    // rows of a: [7e4, 1], [-7e4, 1], [65519, 0], [1, 1]; b = ones (2, 2)
    const a = Tensor.from(f32([7e4, 1, -7e4, 1, 65519, 0, 1, 1]), [4, 2]);
    const b = Tensor.from(f32([1, 1, 1, 1]), [2, 2]);
    const out = vals(withPrecision('fp16', () => matmul(a, b)));
    expect(out).toEqual([Infinity, Infinity, -Infinity, -Infinity, 65504, 65504, 2, 2]);
    expect(vals(matmul(a, b))).toEqual([70001, 70001, -69999, -69999, 65519, 65519, 2, 2]); // f32 keeps them
    const y = withPrecision('fp16', () => linear(Tensor.from(f32([1e5, 2]), [1, 2]), Tensor.from(f32([1, 0, 0, 1]), [2, 2])));
    expect(vals(y)).toEqual([Infinity, NaN]); // inf * 0 is NaN, as in torch
  });

  it('subnormal f16 values are kept (rounded to multiples of 2^-24), smaller ones flush to zero', () => {
    const tiny = [1e-6, 3e-7, 4e-8, 2e-8, -5e-6, 6.1e-5];
    const a = Tensor.from(f32(tiny), [6, 1]);
    const b = Tensor.from(f32([1, 2 ** 10]), [1, 2]);
    const out = vals(withPrecision('fp16', () => matmul(a, b)));
    const expected = tiny.flatMap((v) => [roundF16(v), roundF16(v) * 2 ** 10].map(Math.fround));
    expect(out).toEqual(expected);
    expect(out[0]).toBe(17 * 2 ** -24);
    expect(out[6]).toBe(0); // 2e-8 is below half the smallest subnormal
    expect(out[4]).toBe(2 ** -24); // 4e-8: the smallest subnormal
  });

  it('linear: forward, dx and dW go through f16-rounded inputs and upstream gradient, bit for bit', () => {
    const xShape = [3, 30, 48], wShape = [80, 48];
    const xv = f32(randomArray(prod(xShape), 11)), wv = f32(randomArray(prod(wShape), 12)), dyv = f32(randomArray(3 * 30 * 80, 13));
    const x = Tensor.from(xv, xShape, { requiresGrad: true });
    const w = Tensor.from(wv, wShape, { requiresGrad: true });
    const y = withPrecision('fp16', () => linear(x, w));
    y.backward(Tensor.from(dyv, y.shape)); // precision is back at f32 here: backward keeps its forward's
    const xr = Tensor.from(roundAll(xv), [90, 48]), wr = Tensor.from(roundAll(wv), wShape), dyr = Tensor.from(roundAll(dyv), [90, 80]);
    expect(sameBits(y.toArray() as Float32Array, matmul(xr, wr, { transB: true }).toArray() as Float32Array), 'y').toBe(true);
    expect(sameBits(x.grad!.toArray() as Float32Array, matmul(dyr, wr).toArray() as Float32Array), 'dx').toBe(true);
    expect(sameBits(w.grad!.toArray() as Float32Array, matmul(dyr, xr, { transA: true }).toArray() as Float32Array), 'dW').toBe(true);
  });

  it('the upstream gradient is rounded too: one below the f16 range gives zero input gradients', () => {
    const x = Tensor.from(f32([1, 2, 3, 4]), [2, 2], { requiresGrad: true });
    const b = Tensor.from(f32([1, 0, 0, 1]), [2, 2], { requiresGrad: true });
    const y = withPrecision('fp16', () => matmul(x, b));
    y.backward(Tensor.full([2, 2], 1e-8));
    expect(vals(x.grad!)).toEqual([0, 0, 0, 0]);
    expect(vals(b.grad!)).toEqual([0, 0, 0, 0]);
    const x2 = Tensor.from(f32([1, 2, 3, 4]), [2, 2], { requiresGrad: true });
    matmul(x2, b).backward(Tensor.full([2, 2], 1e-8));
    expect(x2.grad!.toArray()[0]).toBeCloseTo(1e-8, 12); // at f32 it survives
  });

  it('the tape keeps only the rounded copy each gradient needs and frees it after backward', () => {
    const x = Tensor.from(f32(randomArray(8 * 4, 3)), [8, 4]); // no gradient: dW needs x, dx is not wanted
    const w = Tensor.from(f32(randomArray(6 * 4, 4)), [6, 4], { requiresGrad: true });
    const y = withPrecision('fp16', () => linear(x, w));
    expect(tapeLength()).toBe(1);
    y.backward(Tensor.full([8, 6], 1));
    expect(tapeLength()).toBe(0);
    const dyr = Tensor.full([8, 6], 1);
    expect(sameBits(w.grad!.toArray() as Float32Array, matmul(dyr, Tensor.from(roundAll(x.toArray() as Float32Array), [8, 4]), { transA: true }).toArray() as Float32Array)).toBe(true);
  });

  it('the fused LM head and loss (linearCrossEntropy) follows the precision, forward and gradients', () => {
    expectFusedHeadFollowsPrecision('fp16');
  });
});

// torch: a.half().float() @ b.half().float() is fp16 rounding with f32 products and sums.
const torchPeer = findPython(['torch']);
describe.skipIf(!torchPeer.python)(`matmul precision fp16 against torch${torchPeer.python ? '' : ` (skipped: ${torchPeer.why})`}`, () => {
  it('agrees with a.half().float() @ b.half().float(), infinities and subnormals included', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-fp16-'));
    const M = 24, K = 64, N = 20;
    const a = f32(randomArray(M * K, 61)), b = f32(randomArray(K * N, 62));
    a[0] = 7e4; // row 0 overflows to +inf
    a[K] = -1e5; // row 1 to -inf
    for (let k = 0; k < K; k++) a[2 * K + k] = 3e-6 * Math.sin(k + 1); // row 2: f16 subnormals
    for (let j = 0; j < N; j++) b[j] = 0.5 + j / N; // b's first row positive: the infinities keep their sign
    writeFileSync(join(dir, 'in.json'), JSON.stringify({ a: Array.from(a), b: Array.from(b) }));
    const theirs = runPythonJson<(number | string)[]>(torchPeer.python!, `
import json, torch
d = json.load(open(${JSON.stringify(join(dir, 'in.json'))}))
a = torch.tensor(d['a'], dtype=torch.float32).reshape(${M}, ${K})
b = torch.tensor(d['b'], dtype=torch.float32).reshape(${K}, ${N})
out = (a.half().float() @ b.half().float()).flatten().tolist()
print(json.dumps([v if v == v and abs(v) != float('inf') else str(v) for v in out]))
`).map((v) => (typeof v === 'string' ? Number(v.replace('inf', 'Infinity')) : v));
    const ours = vals(withPrecision('fp16', () => matmul(Tensor.from(a, [M, K]), Tensor.from(b, [K, N]))));
    for (let i = 0; i < M * N; i++)
      if (!Number.isFinite(theirs[i]!)) expect(ours[i], `element ${i}`).toBe(theirs[i]);
    expect(ours.slice(0, N).every((v) => v === Infinity)).toBe(true);
    expect(ours.slice(N, 2 * N).every((v) => v === -Infinity)).toBe(true);
    const finite = (v: number[]): number[] => v.slice(2 * N);
    expectClose(finite(ours), finite(theirs), 1e-5, 1e-5, 'finite rows');
    expectClose(ours.slice(2 * N, 3 * N), theirs.slice(2 * N, 3 * N), 1e-12, 1e-5, 'the subnormal row');
  });
});
