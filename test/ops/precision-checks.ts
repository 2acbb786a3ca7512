// Checks the matmul-precision tests share (CPU bf16, CPU fp16, CUDA at both).
import { expect } from 'vitest';
import { Tensor, crossEntropy, linear, linearCrossEntropy, type Device, type MatmulPrecision } from '../../src/tensor/index.js';
import { expectClose, randomArray, withPrecision } from '../helpers.js';

/**
 * The fused LM head and loss (linearCrossEntropy, in chunks) at precision p equals linear +
 * crossEntropy at p, forward and both gradients, and (where `rounds`) differs from the f32 loss.
 */
export function expectFusedHeadFollowsPrecision(p: MatmulPrecision, device: Device = 'cpu', rounds = true): void {
  const N = 12, C = 40, V = 70;
  const hv = Float32Array.from(randomArray(N * C, 41)), wv = Float32Array.from(randomArray(V * C, 42));
  const targets = Tensor.from(Int32Array.from({ length: N }, (_, i) => (i * 7) % V), [N], { dtype: 'i32', device });
  const vals = (t: Tensor): Float32Array => t.toArray() as Float32Array;
  const run = (fused: boolean): Float32Array[] => withPrecision(p, () => {
    const h = Tensor.from(hv, [N, C], { requiresGrad: true, device }), w = Tensor.from(wv, [V, C], { requiresGrad: true, device });
    const loss = fused ? linearCrossEntropy(h, w, targets, { chunkSize: 5 }) : crossEntropy(linear(h, w), targets);
    loss.backward();
    return [vals(loss), vals(h.grad!), vals(w.grad!)];
  });
  const [fused, plain] = [run(true), run(false)];
  if (rounds) {
    const exact = crossEntropy(linear(Tensor.from(hv, [N, C], { device }), Tensor.from(wv, [V, C], { device })), targets).item();
    expect(Math.abs(fused[0]![0]! - exact), `${p} on ${device}: it did round`).toBeGreaterThan(1e-6);
  }
  for (let i = 0; i < 3; i++) expectClose(fused[i]!, plain[i]!, 1e-5, 1e-4, `${p} on ${device}: linearCrossEntropy vs linear + crossEntropy, output ${i}`);
}
