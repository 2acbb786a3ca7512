// matmul and linear at matmul precision 'bf16' (mixed precision): inputs rounded to bf16 (round
// to nearest even) inside the GEMM, f32 sums, f32 results and gradients. Checked against a
// float64 reference on the rounded inputs, for every bf16 kernel this CPU has (AMX, AVX-512
// BF16) and the f32 fallback, and against torch.matmul on bf16 tensors where torch is installed.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findPython, runPythonJson } from '../../scripts/bench/_peers.js';
import { PatentGPTError } from '../../src/errors.js';
import { addon } from '../../src/native/loader.js';
import { Tensor, clearTape, setNumThreads } from '../../src/tensor/index.js';
import {
  bf16MatmulKernel, f32GemmAtPrecision, linear, matmul, matmulPrecision, setMatmulPrecision, type MatmulPrecision,
} from '../../src/tensor/ops/matmul.js';
import { expectClose, randomArray, withPrecision } from '../helpers.js';
import { expectFusedHeadFollowsPrecision } from './precision-checks.js';
import { linearGradRef, linearRef, matmulRef, roundBf16, matmulCases } from '../reference/matmul.js';

const detected = addon().bf16GemmKernel('amx');
// Every kernel this machine can run, the f32 fallback included.
const KERNELS = (['amx', 'avx512bf16', 'f32'] as const).filter(
  (k) => k === 'f32' || k === detected || (k === 'avx512bf16' && detected === 'amx'),
);

afterEach(() => {
  setMatmulPrecision('f32');
  addon().bf16GemmKernel('amx');
  setNumThreads(0);
});

const f32 = (a: ArrayLike<number>): Float32Array => Float32Array.from(a);
const prod = (dims: number[]): number => dims.reduce((p, d) => p * d, 1);
// f32 sums of K products of values of about 1.
const tol = (K: number): [number, number] => [1e-5 + 2e-6 * K, 1e-5];


describe('matmul precision bf16', () => {
  it('reports the kernel and refuses an unknown precision by name', () => {
    expect(['amx', 'avx512bf16', 'f32']).toContain(bf16MatmulKernel());
    expect(matmulPrecision()).toBe('f32');
    expect(() => setMatmulPrecision('fp8' as MatmulPrecision)).toThrow(PatentGPTError);
    expect(() => setMatmulPrecision('fp8' as MatmulPrecision)).toThrow(/one of "f32", "bf16", "fp16", got "fp8"/);
    expect(matmulPrecision()).toBe('f32');
  });

  for (const kernel of KERNELS) {
    describe(`kernel ${kernel}`, () => {
      const rounds = kernel !== 'f32';
      const inputs = (v: Float64Array): Float64Array => (rounds ? roundBf16(v) : Float64Array.from(f32(v)));

      it('matmul: every transpose, odd shapes, batches, on 1 and 2 threads, against the rounded reference', () => {
        addon().bf16GemmKernel(kernel);
        let seed = 1;
        for (const threads of [1, 2]) {
          setNumThreads(threads);
          for (const { s, transA, transB, aShape, bShape, what } of matmulCases(400, [{ batch: [], M: 70, N: 40, K: 31 }])) {
            const av = randomArray(prod(aShape), seed++), bv = randomArray(prod(bShape), seed++);
            const out = withPrecision('bf16', () =>
              matmul(Tensor.from(f32(av), aShape), Tensor.from(f32(bv), bShape), { transA, transB }));
            const ref = matmulRef(inputs(av), aShape, inputs(bv), bShape, transA, transB);
            expectClose(out.toArray() as Float32Array, ref.data, ...tol(s.K), `${kernel} ${what}`);
          }
        }
      });

      it('linear: forward and both gradients go through the bf16 GEMM (the upstream gradient rounded too)', () => {
        addon().bf16GemmKernel(kernel);
        const xShape = [3, 30, 48], wShape = [80, 48];
        const xv = randomArray(prod(xShape), 11), wv = randomArray(prod(wShape), 12), dyv = randomArray(3 * 30 * 80, 13);
        const x = Tensor.from(f32(xv), xShape, { requiresGrad: true });
        const w = Tensor.from(f32(wv), wShape, { requiresGrad: true });
        const y = withPrecision('bf16', () => linear(x, w));
        y.backward(Tensor.from(f32(dyv), y.shape));
        expect(y.dtype).toBe('f32');
        expect(x.grad!.dtype).toBe('f32');
        expectClose(y.toArray() as Float32Array, linearRef(inputs(xv), xShape, inputs(wv), wShape).data, ...tol(48), 'y');
        const g = linearGradRef(inputs(xv), xShape, inputs(wv), wShape, inputs(dyv));
        expectClose(x.grad!.toArray() as Float32Array, g.dx, ...tol(80), 'dx');
        expectClose(w.grad!.toArray() as Float32Array, g.dw, ...tol(90), 'dw');
        clearTape();
      });
    });
  }

  it('rounds: differs from the f32 matmul where a bf16 kernel runs, equals it bit for bit on the fallback', () => {
    const av = f32(randomArray(64 * 96, 21)), bv = f32(randomArray(96 * 50, 22));
    const a = Tensor.from(av, [64, 96]), b = Tensor.from(bv, [96, 50]);
    const exact = matmul(a, b).toArray() as Float32Array;
    addon().bf16GemmKernel('f32');
    const fallback = withPrecision('bf16', () => matmul(a, b)).toArray() as Float32Array;
    expect(Buffer.from(fallback.buffer).equals(Buffer.from(exact.buffer))).toBe(true);
    if (detected === 'f32') return;
    addon().bf16GemmKernel(detected);
    const mixed = withPrecision('bf16', () => matmul(a, b)).toArray() as Float32Array;
    const worst = mixed.reduce((m, v, i) => Math.max(m, Math.abs(v - exact[i]!)), 0);
    expect(worst).toBeGreaterThan(1e-3); // bf16 has 8 bits of mantissa: about 4e-3 relative per input
  });

  it('gives fused ops the GEMM of the current precision', () => {
    const t = Tensor.zeros([2, 2]);
    expect(f32GemmAtPrecision(t)).toBe(addon().gemm);
    expect(withPrecision('bf16', () => f32GemmAtPrecision(t))).toBe(addon().gemmBf16Compute);
  });

  it('the fused LM head and loss (linearCrossEntropy) follows the precision, forward and gradients', () => {
    if (detected === 'f32') return;
    expectFusedHeadFollowsPrecision('bf16');
    clearTape();
  });

  it('a backward pass keeps the precision of its forward', () => {
    if (detected === 'f32') return;
    const xv = randomArray(40 * 32, 31), wv = randomArray(24 * 32, 32), dyv = randomArray(40 * 24, 33);
    const x = Tensor.from(f32(xv), [40, 32], { requiresGrad: true });
    const w = Tensor.from(f32(wv), [24, 32]);
    const y = withPrecision('bf16', () => linear(x, w));
    y.backward(Tensor.from(f32(dyv), [40, 24])); // precision is back at f32 here
    const g = linearGradRef(roundBf16(xv), [40, 32], roundBf16(wv), [24, 32], roundBf16(dyv));
    expectClose(x.grad!.toArray() as Float32Array, g.dx, ...tol(24), 'dx');
    clearTape();
  });
});

// torch.matmul on bf16 tensors returns bf16: ours (f32) rounded to bf16 agrees within one bf16
// step (the two sum in different orders, so a value near a rounding boundary may go either way).
const torchPeer = findPython(['torch']);
describe.skipIf(!torchPeer.python || detected === 'f32')('matmul precision bf16 against torch.matmul on bf16 tensors', () => {
  it('agrees within one bf16 rounding on transformer-like shapes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-bf16-'));
    const cases = [
      { M: 64, N: 96, K: 128, transB: true },
      { M: 130, N: 70, K: 300, transB: false },
    ];
    const data = cases.map((c, i) => ({
      ...c,
      a: Array.from(f32(randomArray(c.M * c.K, 40 + i))),
      b: Array.from(f32(randomArray(c.N * c.K, 50 + i))),
    }));
    writeFileSync(join(dir, 'in.json'), JSON.stringify(data));
    const torchOut = runPythonJson<number[][]>(torchPeer.python!, `
import json, sys, torch
cases = json.load(open(${JSON.stringify(join(dir, 'in.json'))}))
out = []
for c in cases:
    a = torch.tensor(c['a'], dtype=torch.float32).reshape(c['M'], c['K']).bfloat16()
    b = torch.tensor(c['b'], dtype=torch.float32)
    b = (b.reshape(c['N'], c['K']).T if c['transB'] else b.reshape(c['K'], c['N'])).bfloat16()
    out.append(torch.matmul(a, b).float().flatten().tolist())
print(json.dumps(out))
`);
    data.forEach((c, i) => {
      const a = Tensor.from(Float32Array.from(c.a), [c.M, c.K]);
      const b = Tensor.from(Float32Array.from(c.b), c.transB ? [c.N, c.K] : [c.K, c.N]);
      const ours = withPrecision('bf16', () => matmul(a, b, { transB: c.transB })).toArray() as Float32Array;
      const theirs = torchOut[i]!;
      // one bf16 step of the result (2^-7 relative) plus f32 summation slack
      expectClose(ours, theirs, 1e-3, 2 ** -7, `torch case ${i}`);
      const exactlyRounded = roundBf16(ours).filter((v, j) => v === theirs[j]).length;
      expect(exactlyRounded / ours.length).toBeGreaterThan(0.9);
    });
  });
});
