// matmul, linear and the fused LM head on CUDA at matmul precisions 'bf16' and 'fp16': the
// inputs (and in backward the upstream gradient) are cast to the 16-bit type on the device and
// cuBLASLt's 16-bit GEMM sums their products in f32. The reference is the CPU's f32 GEMM on
// inputs rounded in TypeScript, so only the summation order differs (f32 slack, scaled by K),
// and the CUDA result must differ from CUDA's own f32 product (it did round). Skipped, saying
// why, on a machine without a CUDA device (scripts/gpu-check.sh runs it on one).
import { afterEach, expect, it } from 'vitest';
import { Tensor, clearTape } from '../../src/tensor/index.js';
import { linear, matmul, setMatmulPrecision } from '../../src/tensor/ops/matmul.js';
import { describeDevices, expectClose, randomArray, withPrecision } from '../helpers.js';
import { expectFusedHeadFollowsPrecision } from './precision-checks.js';
import { roundBf16, roundF16, matmulCases } from '../reference/matmul.js';

afterEach(() => {
  setMatmulPrecision('f32');
  clearTape();
});

const f32 = (a: ArrayLike<number>): Float32Array => Float32Array.from(a);
const prod = (dims: number[]): number => dims.reduce((p, d) => p * d, 1);
const vals = (t: Tensor): Float32Array => t.to('cpu').toArray() as Float32Array;
// Both sides multiply the same rounded values exactly and sum in f32, in different orders.
const tol = (K: number): [number, number] => [1e-5 + 2e-6 * K, 1e-5];
const rounders: Record<'bf16' | 'fp16', (v: Float32Array) => Float32Array> = {
  bf16: (v) => f32(roundBf16(v)),
  fp16: (v) => f32(Array.from(v, roundF16)),
};

for (const p of ['bf16', 'fp16'] as const) {
  const round = rounders[p];
  // CUDA only (describeDevices skips it, saying why, where there is no GPU): on the CPU these
  // precisions are checked by matmul-bf16 and matmul-fp16.
  describeDevices(`matmul precision ${p}`, ['gemm', 'gemmBf16', 'gemmF16', 'cast'], () => {
    it('matmul: every transpose, batches, a shared b, against the CPU f32 GEMM on rounded inputs', () => {
      let seed = 1;
      for (const c of matmulCases(400)) {
        const { s, transA, transB, aShape, bShape } = c;
        const av = f32(randomArray(prod(aShape), seed++)), bv = f32(randomArray(prod(bShape), seed++));
        const what = `${p} ${c.what}`;
        const a = Tensor.from(av, aShape, { device: 'cuda' }), b = Tensor.from(bv, bShape, { device: 'cuda' });
        const out = vals(withPrecision(p, () => matmul(a, b, { transA, transB })));
        const ref = matmul(Tensor.from(round(av), aShape), Tensor.from(round(bv), bShape), { transA, transB }).toArray() as Float32Array;
        expectClose(out, ref, ...tol(s.K), what);
        const exact = vals(matmul(a, b, { transA, transB }));
        expect(out.some((v, i) => Math.abs(v - exact[i]!) > 1e-4), `${what}: it rounded`).toBe(true);
      }
    });

    it('linear: forward, dx and dW (the upstream gradient rounded too) against the CPU reference', () => {
      const xShape = [3, 30, 48], wShape = [80, 48];
      const xv = f32(randomArray(prod(xShape), 11)), wv = f32(randomArray(prod(wShape), 12)), dyv = f32(randomArray(3 * 30 * 80, 13));
      const x = Tensor.from(xv, xShape, { requiresGrad: true, device: 'cuda' });
      const w = Tensor.from(wv, wShape, { requiresGrad: true, device: 'cuda' });
      const y = withPrecision(p, () => linear(x, w));
      y.backward(Tensor.from(dyv, y.shape, { device: 'cuda' })); // at f32 again: backward keeps its forward's precision
      const xr = Tensor.from(round(xv), [90, 48]), wr = Tensor.from(round(wv), wShape), dyr = Tensor.from(round(dyv), [90, 80]);
      expectClose(vals(y), matmul(xr, wr, { transB: true }).toArray() as Float32Array, ...tol(48), `${p} y`);
      expectClose(vals(x.grad!), matmul(dyr, wr).toArray() as Float32Array, ...tol(80), `${p} dx`);
      expectClose(vals(w.grad!), matmul(dyr, xr, { transA: true }).toArray() as Float32Array, ...tol(90), `${p} dW`);
    });

    it('the fused LM head and loss (linearCrossEntropy) matches linear + crossEntropy at the same precision', () => {
      expectFusedHeadFollowsPrecision(p, 'cuda');
    });

    if (p === 'fp16')
      it('an input beyond the f16 range gives infinity, as on the CPU', () => {
        const a = Tensor.from(f32([7e4, 1, -7e4, 1, 65519, 0, 1, 1]), [4, 2], { device: 'cuda' });
        const b = Tensor.from(f32([1, 1, 1, 1]), [2, 2], { device: 'cuda' });
        expect(Array.from(vals(withPrecision(p, () => matmul(a, b))))).toEqual([Infinity, Infinity, -Infinity, -Infinity, 65504, 65504, 2, 2]);
      });
  }, ['cuda']);
}
