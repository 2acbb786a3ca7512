// The SMoE layer on the fused dropless ops (src/nn/moe.ts over src/tensor/ops/moe.ts): the
// native router chooses and differentiates as the composed softmax/top-k/gather/renormalise did,
// moeGroupedMatmul over the experts' own weight tensors equals the stacked (E, out, in) form in
// values and gradients, and without gradients only the chosen experts' weights are read: the
// weights of every expert the routing does not choose are NaN and the output stays exact.
import { describe, expect, it } from 'vitest';
import {
  ForwardRecorder, LlamaForCausalLM, Module, SparseMoE, Tensor, clearTape, div, gather, moeDispatch, moeGroupedMatmul, moeRouter,
  memoryStats, mul, noGrad, preset, resetPeakMemory, softmax, sum, type LinearAdapter, type ParamInit,
} from '../../src/index.js';
import { expectClose, randomArray } from '../helpers.js';

const arr = (t: Tensor): Float32Array => t.toArray() as Float32Array;
function initFrom(seed0: number, std = 0.3): ParamInit {
  let seed = seed0;
  return (shape, kind) => (kind === 'ones' ? Tensor.full(shape, 1) : Tensor.randn(shape, { seed: seed++, std }));
}

/**
 * The host top-k the layer used before the native router: each row's K largest probabilities,
 * descending, the lower expert first on ties, a NaN above every number.
 */
function hostTopK(p: ArrayLike<number>, N: number, E: number, K: number): number[] {
  const out: number[] = [];
  for (let n = 0; n < N; n++) {
    const row = Array.from({ length: E }, (_, e) => p[n * E + e]!);
    const key = (e: number) => (Number.isNaN(row[e]!) ? Infinity : row[e]!);
    out.push(...row.map((_, e) => e).sort((a, b) => key(b) - key(a) || a - b).slice(0, K));
  }
  return out;
}

/** Fills with NaN the w1/w2/w3 of every expert that `used` does not list. */
function poisonUnused(moe: SparseMoE, used: ReadonlySet<number>): number[] {
  const poisoned: number[] = [];
  moe.experts.items.forEach((ex, e) => {
    if (used.has(e)) return;
    poisoned.push(e);
    for (const name of ['w1', 'w2', 'w3'] as const) {
      const w = ex[name].weight;
      moe.setParameter(`experts.${e}.${name}.weight`, Tensor.full(w.shape, NaN));
    }
  });
  return poisoned;
}

/** An adapter that adds nothing but makes its Linear unfusable: the layer then runs its experts as modules. */
class PassThrough extends Module implements LinearAdapter {
  readonly merged = false;
  apply(_x: Tensor, y: Tensor): Tensor {
    return y;
  }
}

describe('the native router against the composed softmax / top-k / renormalise', () => {
  it('chooses the same experts (ties to the lower id), with the same weights and the same gradient to the logits', () => {
    const N = 12, E = 6;
    const l = Float32Array.from(randomArray(N * E, 41, 2));
    l.fill(0.75, 0, 4); // row 0: four experts tie
    l[7] = 3; l[9] = 3; l[11] = 3; // row 1: three tie at the top
    const G = Tensor.from(Float32Array.from(randomArray(N * 3, 42)), [N, 3]);
    for (const K of [1, 2, 3]) {
      const a = Tensor.from(l, [N, E], { requiresGrad: true });
      const { indices, weights } = moeRouter(a, K);
      const gK = Tensor.from(arr(G).slice(0, N * K), [N, K]);
      sum(mul(weights, gK)).backward();
      // the composed path: softmax over all E, gather the host top-k, renormalise
      const b = Tensor.from(l, [N, E], { requiresGrad: true });
      const probs = softmax(b);
      const chosen = hostTopK(arr(probs), N, E, K);
      expect(Array.from(indices.toArray() as Int32Array), `top-${K} experts`).toEqual(chosen);
      const top = gather(probs, 1, Tensor.from(Int32Array.from(chosen), [N, K], { dtype: 'i32' }));
      const w = div(top, sum(top, 1, { keepdim: true }));
      sum(mul(w, gK)).backward();
      expectClose(arr(weights), arr(w), 1e-7, 1e-6, `top-${K} weights`);
      expectClose(arr(a.grad!), arr(b.grad!), 1e-7, 1e-5, `top-${K} gradient of the logits`);
      clearTape();
    }
  });

  it('ranks a NaN logit first, as torch.topk: the row\'s weights are NaN, the other rows untouched', () => {
    const N = 3, E = 5, K = 2;
    const l = Float32Array.from(randomArray(N * E, 43));
    l[1 * E + 3] = NaN;
    const { indices, weights } = moeRouter(Tensor.from(l, [N, E]), K);
    const ids = Array.from(indices.toArray() as Int32Array), w = arr(weights);
    expect(ids[K]).toBe(3);
    expect(w.slice(K, 2 * K).every(Number.isNaN)).toBe(true);
    expect([...w.slice(0, K), ...w.slice(2 * K)].every(Number.isFinite)).toBe(true);
    expect([...ids.slice(0, K), ...ids.slice(2 * K)]).toEqual([...hostTopK(l.subarray(0, E), 1, E, K), ...hostTopK(l.subarray(2 * E), 1, E, K)]);
  });
});

describe('moeGroupedMatmul over the experts\' own (out, in) weights', () => {
  // expert 2 gets no rows; expert 0 gets 70 (above the GEMV's 64: the packed GEMM), the others a few
  const N = 40, K = 2, E = 4, I = 24, O = 16;
  const ids = Int32Array.from({ length: N * K }, (_, s) => (s < 70 ? 0 : s % 2 === 0 ? 1 : 3));
  const wData = Array.from({ length: E }, (_, e) => Float32Array.from(randomArray(O * I, 50 + e)));
  const xData = Float32Array.from(randomArray(N * K * I, 49));

  it('equals the stacked (E, out, in) form in values and gradients; an expert with no rows gets an exact zero gradient', () => {
    const plan = moeDispatch(Tensor.from(ids, [N, K], { dtype: 'i32' }), E);
    expect(plan.tokensPerExpert).toEqual([70, 5, 0, 5]);
    const g = Tensor.from(Float32Array.from(randomArray(N * K * O, 48)), [N * K, O]);
    const xa = Tensor.from(xData, [N * K, I], { requiresGrad: true });
    const list = wData.map((w) => Tensor.from(w, [O, I], { requiresGrad: true }));
    const ya = moeGroupedMatmul(xa, list, plan);
    ya.backward(g);
    const xb = Tensor.from(xData, [N * K, I], { requiresGrad: true });
    const stacked = Tensor.from(Float32Array.from(wData.flatMap((w) => Array.from(w))), [E, O, I], { requiresGrad: true });
    const yb = moeGroupedMatmul(xb, stacked, plan);
    yb.backward(g);
    expect(arr(ya)).toEqual(arr(yb));
    expect(arr(xa.grad!)).toEqual(arr(xb.grad!));
    list.forEach((w, e) => {
      expect(w.grad!.shape).toEqual([O, I]);
      expect(arr(w.grad!), `expert ${e} gradient`).toEqual(arr(stacked.grad!).slice(e * O * I, (e + 1) * O * I));
    });
    expect(arr(list[2]!.grad!).every((v) => v === 0)).toBe(true);
    expect(arr(list[0]!.grad!).some((v) => v !== 0)).toBe(true);
    // without gradients: the same values, and an expert with no rows is never read
    list[2] = Tensor.full([O, I], NaN);
    expect(arr(noGrad(() => moeGroupedMatmul(xa, list, plan)))).toEqual(arr(yb));
    expect(() => moeGroupedMatmul(xa, list.slice(1), plan)).toThrow(/moeGroupedMatmul: 3 expert weights given but the plan routes to 4/);
    expect(() => moeGroupedMatmul(xa, [...list.slice(0, 3), Tensor.zeros([O, I + 1])], plan)).toThrow(/moeGroupedMatmul: weight\[3\] is f32\[16, 25\], expected shape \[16, 24\]/);
    plan.dispose();
    clearTape();
  });
});

describe('SparseMoE without gradients reads only the chosen experts', () => {
  const C = 16, F = 24, E = 8, K = 2;

  for (const N of [1, 3, 200]) {
    it(`N = ${N}: the unchosen experts' weights are NaN and the output equals the reference; the gradient path gives the same output`, () => {
      const moe = new SparseMoE({ dim: C, hiddenDim: F, numExperts: E, topK: K }, initFrom(70));
      const xData = Float32Array.from(randomArray(N * C, 71));
      const rec = new ForwardRecorder();
      const before = arr(noGrad(() => moe.forward(Tensor.from(xData, [N, C]), rec)));
      // the gradient path (stacked weights) gives the same values, bit for bit
      const xg = Tensor.from(xData, [N, C], { requiresGrad: true });
      const yg = moe.forward(xg, rec);
      expect(arr(yg)).toEqual(before);
      clearTape();
      const used = new Set(moe.lastRouting!.experts);
      const poisoned = poisonUnused(moe, used);
      if (N < 200) expect(poisoned.length).toBeGreaterThanOrEqual(E - N * K); // the check is not vacuous
      const after = arr(noGrad(() => moe.forward(Tensor.from(xData, [N, C]), rec)));
      expect(after.every(Number.isFinite)).toBe(true);
      expect(after).toEqual(before);
      rec.dispose();
      moe.dispose();
    });
  }

  it('stacks no expert weights, for a decode step or with gradients (peak memory far below one stacked (E, out, in) buffer)', () => {
    const C2 = 64, F2 = 256, E2 = 8;
    const moe = new SparseMoE({ dim: C2, hiddenDim: F2, numExperts: E2, topK: K }, initFrom(90, 0.1));
    const stackedBytes = E2 * F2 * C2 * 4;
    const rec = new ForwardRecorder();
    const peakOf = (f: () => void): number => {
      const before = memoryStats().cpu.liveBytes;
      resetPeakMemory();
      f();
      return memoryStats().cpu.peakBytes - before;
    };
    const x = Tensor.from(Float32Array.from(randomArray(C2, 91)), [1, C2]);
    const decode = peakOf(() => noGrad(() => moe.forward(x, rec).dispose()));
    expect(decode).toBeLessThan(stackedBytes / 4);
    const xg = Tensor.from(Float32Array.from(randomArray(C2, 91)), [1, C2], { requiresGrad: true });
    // the gradient path reads each expert's own storage too (no stacked copy)
    expect(peakOf(() => moe.forward(xg, rec))).toBeLessThan(stackedBytes / 4);
    clearTape();
    rec.dispose();
    moe.dispose();
  });

  it('a one-token forward of the whole model (a decode step) gives the same logits with every unchosen expert poisoned', () => {
    const cfg = preset('tiny-moe').config;
    const model = new LlamaForCausalLM(cfg, { seed: 5, initStd: 0.08 });
    const batch = { tokens: Int32Array.of(17) };
    const logits = () => noGrad(() => { const t = model.forward(batch); const a = arr(t); t.dispose(); return a; });
    const before = logits();
    let poisoned = 0;
    for (const layer of model.model.layers.items) {
      const moe = layer.feedForward as SparseMoE;
      poisoned += poisonUnused(moe, new Set(moe.lastRouting!.experts)).length;
    }
    expect(poisoned).toBe(cfg.nLayers * (cfg.numExperts - cfg.topK));
    const after = logits();
    expect(after.every(Number.isFinite)).toBe(true);
    expect(after).toEqual(before);
    model.dispose();
  });
});

describe('SparseMoE with adapted experts (LoRA) runs them as modules between the same dispatch and combine', () => {
  it('gives the fused path\'s outputs and gradients (router, experts, input)', () => {
    const C = 12, F = 20, E = 4, K = 2, N = 30;
    const xData = Float32Array.from(randomArray(N * C, 81));
    const R = Tensor.from(Float32Array.from(randomArray(N * C, 82)), [N, C]);
    const run = (adapted: boolean) => {
      const moe = new SparseMoE({ dim: C, hiddenDim: F, numExperts: E, topK: K, auxLossWeight: 0.1 }, initFrom(80));
      if (adapted) moe.experts.items[1]!.w3.setAdapter(new PassThrough());
      const rec = new ForwardRecorder();
      const x = Tensor.from(xData, [N, C], { requiresGrad: true });
      const y = moe.forward(x, rec);
      const out = arr(y).slice();
      sum(mul(y, R)).backward();
      const grads = Object.fromEntries(moe.namedParameters().map(([n, p]) => [n, arr(p.grad!).slice()]));
      const res = { out, dx: arr(x.grad!).slice(), grads };
      rec.dispose();
      moe.dispose();
      clearTape();
      return res;
    };
    const fused = run(false), modules = run(true);
    expectClose(modules.out, fused.out, 1e-6, 1e-5, 'output');
    expectClose(modules.dx, fused.dx, 1e-6, 1e-5, 'input gradient');
    for (const [n, g] of Object.entries(fused.grads)) expectClose(modules.grads[n]!, g, 1e-6, 1e-5, `gradient of ${n}`);
  });
});

describe('SparseMoE router jitter state', () => {
  it('jitterDraws is the noise stream\'s whole state: setting it back replays the same noise', () => {
    const C = 8, N = 6;
    const x = Tensor.from(Float32Array.from(randomArray(N * C, 95)), [N, C]);
    const moe = new SparseMoE({ dim: C, hiddenDim: 12, numExperts: 4, topK: 2, jitter: 0.3, seed: 7 }, initFrom(96));
    moe.training = true;
    const rec = new ForwardRecorder();
    const fwd = () => arr(noGrad(() => moe.forward(x, rec)));
    const first = fwd(), second = fwd();
    expect(moe.jitterDraws).toBe(2);
    expect(second).not.toEqual(first);
    moe.jitterDraws = 1;
    expect(fwd()).toEqual(second);
    moe.jitterDraws = 0;
    expect(fwd()).toEqual(first);
    moe.training = false; // no noise, no draw
    fwd();
    expect(moe.jitterDraws).toBe(1);
    expect(() => { moe.jitterDraws = -1; }).toThrow(/jitterDraws must be an integer >= 0/);
    rec.dispose();
    moe.dispose();
  });
});
