import { expect, it } from 'vitest';
import {
  Tensor, clearTape, linear, moeCombine, moeDispatch, moeGroupedMatmul, moePermute, moeRouter, swiglu,
} from '../../src/tensor/index.js';
import { describeDevices, expectClose, on, randomArray } from '../helpers.js';
import { expertRef, matmulTRef, moeDispatchRef, moeRouterRef, moeSwigluLayer } from '../reference/moe.js';

const KERNELS = ['moeRouterForward', 'moeRouterBackward', 'moeDispatch', 'moePermuteForward', 'moePermuteBackward',
  'moeGroupedGemmForward', 'moeGroupedGemmBackward', 'moeCombineForward', 'moeCombineBackward'];

/** Logits (N, E) whose entries in a row are at least 0.3 apart: finite differences never flip the top-k. */
function spacedLogits(N: number, E: number, seed: number): Float64Array {
  const r = randomArray(N * E, seed);
  const out = new Float64Array(N * E);
  for (let n = 0; n < N; n++) {
    const rank = Array.from({ length: E }, (_, e) => e).sort((a, b) => r[n * E + a]! - r[n * E + b]!);
    rank.forEach((e, i) => { out[n * E + e] = 0.3 * i - 0.15 * E + 0.05 * r[n * E + e]!; });
  }
  return out;
}

describeDevices('moe', KERNELS, (device) => {
  const dev = on(device);
  const plain = (t: Tensor): number[] => Array.from(t.toArray() as Float32Array | Int32Array);

  it('routes each token to its top-k of softmax(logits), renormalised as Mixtral, ties to the lower expert', () => {
    const N = 9, E = 6;
    const l = randomArray(N * E, 3, 2);
    l.fill(1.5, 0, 4); // row 0: experts 0..3 tie for the top
    l[6] = 7; l[9] = 7; l[11] = 7; // row 1: a three-way tie across k
    const logits = dev.f32(l, [N, E]);
    for (const k of [1, 2, 3, E]) for (const normalize of [true, false]) {
      const { indices, weights } = moeRouter(logits, k, { normalize });
      const ref = moeRouterRef(Float32Array.from(l), N, E, k, normalize);
      expect(indices.shape).toEqual([N, k]);
      expect(plain(indices), `k = ${k}`).toEqual(ref.indices);
      expectClose(weights.toArray() as Float32Array, ref.weights, 1e-6, 1e-5);
      [indices, weights].forEach((t) => t.dispose());
    }
    expect(plain(moeRouter(logits, 3).indices).slice(0, 6)).toEqual([0, 1, 2, 0, 3, 5]);
    logits.dispose();
  });

  it('passes a finite-difference gradient check to the logits, renormalised or not', () => {
    for (const normalize of [true, false])
      dev.gradCheck((l) => moeRouter(l!, 2, { normalize }).weights, [{ data: spacedLogits(5, 4, 7), shape: [5, 4] }], { eps: 1e-3 });
  });

  it('dispatches dropless at any imbalance: stable sort by expert, counts, empty experts', () => {
    const cases: [number[], number, number][] = [
      [[2, 0, 1, 2, 0, 2, 4, 0], 4, 2],           // id 4 is outside E = 4: refused below
      [[3, 1, 3, 0, 3, 1, 1, 0, 3, 1], 5, 2],     // expert 2 and 4 empty
      [Array(12).fill(2), 3, 1],                   // every token to one expert
      [Array(12).fill(1), 4, 3],
    ];
    for (const [ids, E, k] of cases.slice(1)) {
      const indices = dev.i32(ids, [ids.length / k, k]);
      const plan = moeDispatch(indices, E);
      const ref = moeDispatchRef(ids, E);
      expect(plain(plan.order)).toEqual(ref.order);
      expect(plan.tokensPerExpert).toEqual(ref.counts);
      expect(plain(plan.offsets)).toEqual([0, ...ref.counts.map((_, e) => ref.counts.slice(0, e + 1).reduce((a, b) => a + b, 0))]);
      const pos = plain(plan.slotPos);
      ref.order.forEach((s, p) => expect(pos[s]).toBe(p));
      plan.dispose();
      indices.dispose();
    }
    const bad = dev.i32(cases[0]![0], [4, 2]);
    expect(() => moeDispatch(bad, 4)).toThrow(/expert 4 at slot 6 is outside \[0, E = 4\)/);
    bad.dispose();
  });

  it('permute gathers rows into expert order; its backward sums each token\'s k rows (finite differences)', () => {
    const N = 5, C = 3, k = 2;
    const ids = [1, 0, 2, 1, 0, 2, 1, 2, 0, 1];
    const indices = dev.i32(ids, [N, k]);
    const plan = moeDispatch(indices, 3);
    const x = randomArray(N * C, 4);
    const xs = moePermute(dev.f32(x, [N, C]), plan);
    const want = moeDispatchRef(ids, 3).order.flatMap((s) => Array.from(x.subarray(Math.floor(s / k) * C, Math.floor(s / k) * C + C)));
    expectClose(xs.toArray() as Float32Array, want, 1e-7, 0);
    dev.gradCheck((t) => moePermute(t!, plan), [{ data: x, shape: [N, C] }]);
    plan.dispose();
    indices.dispose();
  });

  it('grouped matmul multiplies each expert\'s rows by its own weight, empty experts included (finite differences)', () => {
    const N = 6, k = 2, E = 4, I = 5, O = 3;
    const ids = [0, 3, 0, 1, 3, 0, 0, 1, 3, 0, 1, 0]; // expert 2 gets no rows
    const indices = dev.i32(ids, [N, k]);
    const plan = moeDispatch(indices, E);
    expect(plan.tokensPerExpert).toEqual([6, 3, 0, 3]);
    const xs = randomArray(N * k * I, 5);
    const w = randomArray(E * O * I, 6);
    const y = moeGroupedMatmul(dev.f32(xs, [N * k, I]), dev.f32(w, [E, O, I]), plan);
    const order = moeDispatchRef(ids, E).order;
    const want = order.flatMap((s, p) => Array.from(matmulTRef(xs.subarray(p * I, p * I + I), 1, I, w, ids[s]! * O * I, O)));
    expectClose(y.toArray() as Float32Array, want, 1e-5, 1e-5);
    dev.gradCheck((a, b) => moeGroupedMatmul(a!, b!, plan), [{ data: xs, shape: [N * k, I] }, { data: w, shape: [E, O, I] }]);
    // The empty expert's weight gets an exact zero gradient.
    const wt = dev.f32(w, [E, O, I], true);
    moeGroupedMatmul(dev.f32(xs, [N * k, I]), wt, plan).backward(dev.f32(randomArray(N * k * O, 8), [N * k, O]));
    expect(plain(wt.grad!).slice(2 * O * I, 3 * O * I).every((v) => v === 0)).toBe(true);
    plan.dispose();
    indices.dispose();
  });

  it('combine sums each token\'s k expert rows by their weights (finite differences in both)', () => {
    const N = 4, k = 3, C = 5;
    const ids = [0, 1, 2, 2, 1, 0, 1, 2, 0, 0, 2, 1];
    const indices = dev.i32(ids, [N, k]);
    const plan = moeDispatch(indices, 3);
    const y = randomArray(N * k * C, 9), wts = randomArray(N * k, 10);
    const out = moeCombine(dev.f32(y, [N * k, C]), dev.f32(wts, [N, k]), plan);
    const pos = plain(plan.slotPos);
    const want = new Float64Array(N * C);
    for (let s = 0; s < N * k; s++) for (let c = 0; c < C; c++) want[Math.floor(s / k) * C + c]! += wts[s]! * y[pos[s]! * C + c]!;
    expectClose(out.toArray() as Float32Array, want, 1e-6, 1e-5);
    dev.gradCheck((a, b) => moeCombine(a!, b!, plan), [{ data: y, shape: [N * k, C] }, { data: wts, shape: [N, k] }]);
    plan.dispose();
    indices.dispose();
  });

  it('a MoE SwiGLU layer gives each token the weighted sum of its top-k experts run one by one, at any imbalance', () => {
    const N = 13, C = 6, H = 5, E = 4, k = 2;
    for (const allToOne of [false, true]) {
      const x = randomArray(N * C, 11);
      const g = randomArray(E * C, 12);
      if (allToOne) { for (let n = 0; n < N; n++) x[n * C] = 1 + Math.abs(x[n * C]!); g[2 * C] = 40; } // expert 2 first for all
      const w1 = randomArray(E * H * C, 13, 0.5), w3 = randomArray(E * H * C, 14, 0.5), w2 = randomArray(E * C * H, 15, 0.5);
      const out = moeSwigluLayer(dev.f32(x, [N, C]), dev.f32(g, [E, C]), dev.f32(w1, [E, H, C]), dev.f32(w3, [E, H, C]), dev.f32(w2, [E, C, H]), k);
      const logits = matmulTRef(Float32Array.from(x), N, C, Float32Array.from(g), 0, E);
      const route = moeRouterRef(logits, N, E, k);
      if (allToOne) expect(route.indices.filter((e, s) => s % k === 0 && e === 2).length).toBe(N);
      const want = new Float64Array(N * C);
      for (let n = 0; n < N; n++)
        for (let j = 0; j < k; j++) {
          const y = expertRef(Float32Array.from(x.subarray(n * C, n * C + C)), route.indices[n * k + j]!, w1, w3, w2, C, H);
          for (let c = 0; c < C; c++) want[n * C + c]! += route.weights[n * k + j]! * y[c]!;
        }
      expectClose(out.toArray() as Float32Array, want, 2e-5, 2e-4);
      out.dispose();
    }
  });

  it('the whole layer, router included, passes a finite-difference gradient check', () => {
    const N = 4, C = 3, H = 2, E = 3, k = 2;
    dev.gradCheck((x, g, w1, w3, w2) => moeSwigluLayer(x!, g!, w1!, w3!, w2!, k), [
      { data: randomArray(N * C, 21), shape: [N, C] }, { data: randomArray(E * C, 22), shape: [E, C] },
      { data: randomArray(E * H * C, 23), shape: [E, H, C] }, { data: randomArray(E * H * C, 24), shape: [E, H, C] },
      { data: randomArray(E * C * H, 25), shape: [E, C, H] },
    ], { eps: 1e-3 });
  });

  it('a one-expert top-1 MoE equals the dense SwiGLU MLP, outputs and gradients', () => {
    const N = 7, C = 6, H = 4;
    const x = randomArray(N * C, 31), w1 = randomArray(H * C, 32), w3 = randomArray(H * C, 33), w2 = randomArray(C * H, 34);
    const run = (moe: boolean) => {
      const ps = [dev.f32(x, [N, C], true), dev.f32(w1, [H, C], true), dev.f32(w3, [H, C], true), dev.f32(w2, [C, H], true)];
      const [xt, a, b, c] = ps as [Tensor, Tensor, Tensor, Tensor];
      const gate = dev.f32(randomArray(C, 35), [1, C], true);
      const out = moe
        ? moeSwigluLayer(xt, gate, a.reshape([1, H, C]), b.reshape([1, H, C]), c.reshape([1, C, H]), 1)
        : linear(swiglu(linear(xt, a), linear(xt, b)), c);
      out.backward(dev.f32(randomArray(N * C, 36), [N, C]));
      const res = { out: plain(out), grads: ps.map((p) => plain(p.grad!)), gate: moe ? plain(gate.grad!) : [] };
      clearTape();
      return res;
    };
    const moe = run(true), dense = run(false);
    expectClose(moe.out, dense.out, 1e-6, 1e-5, 'output');
    moe.grads.forEach((g, i) => expectClose(g, dense.grads[i]!, 1e-5, 1e-5, `gradient ${i}`));
    expect(moe.gate.every((v) => v === 0)).toBe(true); // one expert: its weight is 1 whatever the logits
  });

  it('rejects bad arguments, naming the op', () => {
    const logits = dev.f32(randomArray(6, 1), [2, 3]);
    expect(() => moeRouter(logits, 4)).toThrow(/moeRouter: k = 4 must be an integer in \[1, E = 3\]/);
    expect(() => moeRouter(logits.to('bf16'), 1)).toThrow(/moeRouter: logits is bf16\[2, 3\]/);
    const { indices, weights } = moeRouter(logits, 2);
    const plan = moeDispatch(indices, 3);
    expect(() => moePermute(dev.f32(randomArray(9, 2), [3, 3]), plan)).toThrow(/moePermute: x is f32\[3, 3\], expected shape \[2, \*\]/);
    expect(() => moeGroupedMatmul(dev.f32(randomArray(8, 3), [4, 2]), dev.f32(randomArray(8, 3), [2, 2, 2]), plan))
      .toThrow(/moeGroupedMatmul: weight f32\[2, 2, 2\] holds 2 experts but the plan routes to 3/);
    expect(() => moeGroupedMatmul(dev.f32(randomArray(6, 3), [3, 2]), dev.f32(randomArray(12, 3), [3, 2, 2]), plan))
      .toThrow(/moeGroupedMatmul: xs is f32\[3, 2\], expected shape \[4, 2\]/);
    expect(() => moeCombine(dev.f32(randomArray(8, 3), [4, 2]), dev.f32(randomArray(2, 3), [2, 1]), plan))
      .toThrow(/moeCombine: weights is f32\[2, 1\], expected shape \[2, 2\]/);
    expect(() => moeDispatch(indices, 0)).toThrow(/moeDispatch: numExperts = 0/);
    [logits, indices, weights].forEach((t) => t.dispose());
    plan.dispose();
  });
});
