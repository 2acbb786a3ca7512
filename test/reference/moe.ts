// Float64 references of the sparse-MoE ops (src/tensor/ops/moe.ts), written as plain loops the
// way the math reads, and the MoE SwiGLU layer composed from the native ops for the tests.
import {
  type Tensor, linear, moeCombine, moeDispatch, moeGroupedMatmul, moePermute, moeRouter, scope, swiglu,
} from '../../src/tensor/index.js';

/** Top-k of each row of logits (N, E) by a stable descending sort (ties to the lower id); weights softmax at them, renormalised or not. */
export function moeRouterRef(logits: ArrayLike<number>, N: number, E: number, k: number, normalize = true): { indices: number[]; weights: Float64Array } {
  const indices: number[] = [];
  const weights = new Float64Array(N * k);
  for (let n = 0; n < N; n++) {
    const row = Array.from({ length: E }, (_, e) => logits[n * E + e]!);
    const sel = row.map((_, e) => e).sort((a, b) => row[b]! - row[a]! || a - b).slice(0, k);
    const m = Math.max(...row);
    const z = normalize ? sel.reduce((s, e) => s + Math.exp(row[e]! - m), 0) : row.reduce((s, v) => s + Math.exp(v - m), 0);
    sel.forEach((e, j) => { indices.push(e); weights[n * k + j] = Math.exp(row[e]! - m) / z; });
  }
  return { indices, weights };
}

/** Slots (n * k + j) grouped by expert in slot order, and each expert's count. */
export function moeDispatchRef(indices: ArrayLike<number>, E: number): { order: number[]; counts: number[] } {
  const slots = Array.from({ length: indices.length }, (_, s) => s);
  const order = [...slots].sort((a, b) => indices[a]! - indices[b]! || a - b);
  const counts = Array.from({ length: E }, (_, e) => slots.filter((s) => indices[s] === e).length);
  return { order, counts };
}

/** y (rows, O) = x (rows, I) @ w^T with w at element offset wOff, shape (O, I). */
export function matmulTRef(x: ArrayLike<number>, rows: number, I: number, w: ArrayLike<number>, wOff: number, O: number): Float64Array {
  const y = new Float64Array(rows * O);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < O; o++) {
      let acc = 0;
      for (let i = 0; i < I; i++) acc += x[r * I + i]! * w[wOff + o * I + i]!;
      y[r * O + o] = acc;
    }
  return y;
}

/** One expert's SwiGLU MLP on one token row x (C): w2[e] (silu(w1[e] x) * (w3[e] x)), w1/w3 (E, H, C), w2 (E, C, H). */
export function expertRef(x: ArrayLike<number>, e: number, w1: ArrayLike<number>, w3: ArrayLike<number>, w2: ArrayLike<number>, C: number, H: number): Float64Array {
  const g = matmulTRef(x, 1, C, w1, e * H * C, H);
  const u = matmulTRef(x, 1, C, w3, e * H * C, H);
  const h = g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]!);
  return matmulTRef(h, 1, H, w2, e * C * H, C);
}

/**
 * The MoE SwiGLU feed-forward from the native ops: router linear, top-k, dispatch, permute,
 * grouped w1/w3, swiglu, grouped w2, combine. x (N, C), gate (E, C), w1/w3 (E, H, C), w2 (E, C, H).
 */
export function moeSwigluLayer(x: Tensor, gate: Tensor, w1: Tensor, w3: Tensor, w2: Tensor, k: number): Tensor {
  // scope() frees the intermediates; the graph keeps what backward reads.
  return scope(() => {
    const logits = linear(x, gate);
    const { indices, weights } = moeRouter(logits, k);
    const plan = moeDispatch(indices, gate.shape[0]!);
    const xs = moePermute(x, plan);
    const h = swiglu(moeGroupedMatmul(xs, w1, plan), moeGroupedMatmul(xs, w3, plan));
    return moeCombine(moeGroupedMatmul(h, w2, plan), weights, plan);
  });
}
