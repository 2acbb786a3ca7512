// The sparse MoE feed-forward (src/nn/moe.ts) against what it must equal: the dense SwiGLU MLP
// when there is one expert, the weighted sum of each token's top-k experts computed one by one,
// finite differences of the whole layer (router included), and no token dropped however
// unbalanced the routing.
import { describe, expect, it } from 'vitest';
import {
  ForwardRecorder, LlamaForCausalLM, SparseMoE, SwiGLUMLP, Tensor, add, clearTape, mul, noGrad, preset, scope, sum,
  type FeedForward, type ParamInit,
} from '../../src/index.js';
import { expectClose, randomArray } from '../helpers.js';

function initFrom(seed0: number, std = 0.3): ParamInit {
  let seed = seed0;
  return (shape, kind) => (kind === 'ones' ? Tensor.full(shape, 1) : Tensor.randn(shape, { seed: seed++, std }));
}
const arr = (t: Tensor): Float32Array => t.toArray() as Float32Array;
const silu = (v: number): number => v / (1 + Math.exp(-v));

/** y = W x for W (out, in) as a flat array, x a row. */
function matvec(W: Float32Array, out: number, inp: number, x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < inp; i++) s += W[o * inp + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

describe('SparseMoE', () => {
  it('names its parameters as Mixtral (gate, experts.N.w1/w2/w3) and shared experts after them', () => {
    const m = new SparseMoE({ dim: 8, hiddenDim: 12, numExperts: 3, topK: 2, numSharedExperts: 1 });
    expect(m.namedParameters('block_sparse_moe.').map(([n, p]) => `${n} ${p.shape.join('x')}`)).toEqual([
      'block_sparse_moe.gate.weight 3x8',
      ...[0, 1, 2].flatMap((e) => [`block_sparse_moe.experts.${e}.w1.weight 12x8`, `block_sparse_moe.experts.${e}.w2.weight 8x12`, `block_sparse_moe.experts.${e}.w3.weight 12x8`]),
      'block_sparse_moe.shared_experts.0.w1.weight 12x8', 'block_sparse_moe.shared_experts.0.w2.weight 8x12', 'block_sparse_moe.shared_experts.0.w3.weight 12x8',
    ]);
    expect((m as FeedForward).swigluWeights).toBeUndefined(); // so the fused dense decode path is skipped
    expect(() => new SparseMoE({ dim: 8, hiddenDim: 12, numExperts: 3, topK: 4 })).toThrow(/field "topK" must be an integer in \[1, numExperts = 3\], got 4/);
    expect(() => new SparseMoE({ dim: 8, hiddenDim: 12, numExperts: 0, topK: 1 })).toThrow(/field "numExperts"/);
    m.dispose();
  });

  it('a one-expert top-1 MoE equals the dense SwiGLU MLP, outputs and gradients', () => {
    const C = 16, F = 24, N = 7;
    const moe = new SparseMoE({ dim: C, hiddenDim: F, numExperts: 1, topK: 1 }, initFrom(10));
    const mlp = new SwiGLUMLP(C, F);
    const e = moe.experts.items[0]!;
    mlp.setParameter('gate_proj.weight', e.w1.weight.clone());
    mlp.setParameter('up_proj.weight', e.w3.weight.clone());
    mlp.setParameter('down_proj.weight', e.w2.weight.clone());
    const data = Float32Array.from(randomArray(N * C, 3));
    const R = Tensor.from(Float32Array.from(randomArray(N * C, 4)), [N, C]);
    const run = (f: (x: Tensor) => Tensor) => {
      const x = Tensor.from(data, [N, C], { requiresGrad: true });
      const y = f(x);
      const out = arr(y).slice();
      sum(mul(y, R)).backward();
      return { out, dx: arr(x.grad!).slice() };
    };
    const rec = new ForwardRecorder();
    const a = run((x) => moe.forward(x, rec));
    const b = run((x) => mlp.forward(x));
    expectClose(a.out, b.out, 1e-6, 1e-5, 'outputs');
    expectClose(a.dx, b.dx, 1e-6, 1e-5, 'input gradients');
    expectClose(arr(e.w1.weight.grad!), arr(mlp.gate_proj.weight.grad!), 1e-6, 1e-5, 'w1 / gate_proj gradient');
    expectClose(arr(e.w3.weight.grad!), arr(mlp.up_proj.weight.grad!), 1e-6, 1e-5, 'w3 / up_proj gradient');
    expectClose(arr(e.w2.weight.grad!), arr(mlp.down_proj.weight.grad!), 1e-6, 1e-5, 'w2 / down_proj gradient');
    // the router's weight is p / p = 1: no gradient reaches it through the output
    expect(Math.max(...arr(moe.gate.weight.grad!).map(Math.abs))).toBeLessThan(1e-6);
    rec.dispose();
    moe.dispose();
    mlp.dispose();
    clearTape();
  });

  it("each token's output is the renormalised-probability-weighted sum of its top-k experts, computed one by one", () => {
    const C = 8, F = 12, E = 5, K = 2, N = 11;
    const moe = new SparseMoE({ dim: C, hiddenDim: F, numExperts: E, topK: K, numSharedExperts: 1 }, initFrom(20));
    const x = Tensor.from(Float32Array.from(randomArray(N * C, 5)), [N, C]);
    const rec = new ForwardRecorder();
    const y = arr(noGrad(() => moe.forward(x, rec)));
    const xs = arr(x), Wg = arr(moe.gate.weight);
    const expert = (w: { w1: { weight: Tensor }; w2: { weight: Tensor }; w3: { weight: Tensor } }, row: ArrayLike<number>) => {
      const g = matvec(arr(w.w1.weight), F, C, row), u = matvec(arr(w.w3.weight), F, C, row);
      return matvec(arr(w.w2.weight), C, F, g.map((v, i) => silu(v) * u[i]!));
    };
    const want = new Float64Array(N * C);
    const counts = new Array<number>(E).fill(0);
    for (let n = 0; n < N; n++) {
      const row = xs.subarray(n * C, (n + 1) * C);
      const logits = matvec(Wg, E, C, row);
      const m = Math.max(...logits);
      const p = logits.map((l) => Math.exp(l - m));
      const order = [...p.keys()].sort((i, j) => p[j]! - p[i]!).slice(0, K);
      const z = order.reduce((s, i) => s + p[i]!, 0);
      for (const e of order) {
        counts[e]!++;
        const ye = expert(moe.experts.items[e]!, row);
        for (let c = 0; c < C; c++) want[n * C + c] += (p[e]! / z) * ye[c]!;
      }
      const ys = expert(moe.shared_experts!.items[0]!, row);
      for (let c = 0; c < C; c++) want[n * C + c] += ys[c]!;
    }
    expectClose(y, want, 1e-5, 1e-4, 'MoE output');
    expect(Array.from(moe.lastRouting!.tokensPerExpert)).toEqual(counts);
    for (let e = 0; e < E; e++) expect(rec.metrics.get(`expert_tokens.${e}`)).toBe(counts[e]);
    expect(rec.metrics.get('expert_load_max_over_mean')).toBeCloseTo(Math.max(...counts) / (N * K / E), 10);
    rec.dispose();
    moe.dispose();
  });

  it('finite differences of the whole layer, router included (output, load-balancing and z-loss)', () => {
    const C = 6, F = 8, E = 4, K = 2, N = 5;
    const moe = new SparseMoE({ dim: C, hiddenDim: F, numExperts: E, topK: K, auxLossWeight: 0.7, zLossWeight: 0.3 }, initFrom(30, 0.5));
    const xData = Float32Array.from(randomArray(N * C, 6));
    const R = Float32Array.from(randomArray(N * C, 7));
    // L = sum(y * R) + the auxiliary losses, in f64 on the host side of the sum
    const lossAt = (): { L: number; experts: string } => noGrad(() => scope(() => {
      const rec = new ForwardRecorder();
      const y = arr(moe.forward(Tensor.from(xData, [N, C]), rec));
      let L = 0;
      for (let i = 0; i < y.length; i++) L += y[i]! * R[i]!;
      for (const t of rec.auxLosses.values()) L += t.item();
      rec.dispose();
      return { L, experts: Array.from(moe.lastRouting!.experts).join() };
    }));
    const rec = new ForwardRecorder();
    const x = Tensor.from(xData, [N, C], { requiresGrad: true });
    let L = sum(mul(moe.forward(x, rec), Tensor.from(R, [N, C])));
    expect([...rec.auxLosses.keys()].sort()).toEqual(['load_balance_loss', 'router_z_loss']);
    for (const t of rec.auxLosses.values()) L = add(L, t);
    L.backward();
    rec.dispose();
    // the router's gradient is not zero: the check below is not vacuous
    expect(Math.max(...arr(moe.gate.weight.grad!).map(Math.abs))).toBeGreaterThan(1e-3);
    const base = lossAt().experts;
    const eps = 1e-2;
    let probes = 0, skipped = 0;
    for (const [name, p] of moe.namedParameters()) {
      const analytic = arr(p.grad!).slice();
      const values = arr(p).slice();
      const got: number[] = [], numeric: number[] = [];
      const step = Math.max(1, Math.floor(values.length / 12));
      for (let j = 0; j < values.length; j += step) {
        const at = (v: number) => {
          const w = values.slice();
          w[j] = v;
          moe.setParameter(name, Tensor.from(w, p.shape));
          return lossAt();
        };
        const up = at(values[j]! + eps), down = at(values[j]! - eps);
        moe.setParameter(name, Tensor.from(values, p.shape));
        probes++;
        if (up.experts !== base || down.experts !== base) { skipped++; continue; } // a routing flip is not differentiable
        numeric.push((up.L - down.L) / (2 * eps));
        got.push(analytic[j]!);
      }
      expectClose(got, numeric, 3e-3, 3e-2, `gradient of ${name}`);
    }
    expect(skipped).toBeLessThan(probes / 10);
    moe.dispose();
    clearTape();
  });

  it('router jitter scales the input by uniform(1 - j, 1 + j) noise in training only', () => {
    const C = 8, N = 16;
    const x = Tensor.from(Float32Array.from(randomArray(N * C, 9)), [N, C]);
    const run = (jitter: number, training: boolean) => {
      const m = new SparseMoE({ dim: C, hiddenDim: 12, numExperts: 4, topK: 2, jitter }, initFrom(60));
      m.training = training;
      const rec = new ForwardRecorder();
      const y = arr(noGrad(() => m.forward(x, rec)));
      rec.dispose();
      m.dispose();
      return y;
    };
    const plain = run(0, true);
    expect(run(0.3, false)).toEqual(plain); // evaluation: no noise
    const noisy = run(0.3, true);
    let diff = 0;
    for (let i = 0; i < plain.length; i++) diff = Math.max(diff, Math.abs(noisy[i]! - plain[i]!));
    expect(diff).toBeGreaterThan(1e-3);
    expect(run(0.3, true)).toEqual(noisy); // seeded: the same noise for the same seed
    // By default (training null) jitter follows gradient recording: the trainer's steps record
    // gradients, its evaluation and the engine run under noGrad.
    const m = new SparseMoE({ dim: C, hiddenDim: 12, numExperts: 4, topK: 2, jitter: 0.3 }, initFrom(60));
    const rec = new ForwardRecorder();
    expect(arr(noGrad(() => m.forward(x, rec)))).toEqual(plain);
    const y = m.forward(x, rec);
    expect(arr(y)).toEqual(noisy);
    y.dispose();
    rec.dispose();
    m.dispose();
    clearTape();
  });

  it('drops no token when all of them go to one expert', () => {
    const C = 8, F = 12, E = 4, N = 64;
    for (const K of [1, 2]) {
      const moe = new SparseMoE({ dim: C, hiddenDim: F, numExperts: E, topK: K }, initFrom(40));
      // expert 2's gate row is huge and every input positive: every token's first choice is 2
      const g = new Float32Array(E * C);
      g.fill(5, 2 * C, 3 * C);
      if (K === 2) g.fill(2, 0, C); // and expert 0 second
      moe.setParameter('gate.weight', Tensor.from(g, [E, C]));
      const x = Tensor.from(Float32Array.from(randomArray(N * C, 8), (v) => Math.abs(v) + 0.1), [N, C]);
      const rec = new ForwardRecorder();
      const y = arr(noGrad(() => moe.forward(x, rec)));
      expect(Array.from(moe.lastRouting!.tokensPerExpert)).toEqual(K === 1 ? [0, 0, N, 0] : [N, 0, N, 0]);
      expect(rec.metrics.get('expert_load_max_over_mean')).toBe(E / K);
      // every row is its experts' weighted output, computed for the whole batch at once
      const want = noGrad(() => {
        if (K === 1) return arr(moe.experts.items[2]!.forward(x));
        const logits = arr(moe.gate.forward(x));
        const y2 = arr(moe.experts.items[2]!.forward(x)), y0 = arr(moe.experts.items[0]!.forward(x));
        const out = new Float64Array(N * C);
        for (let n = 0; n < N; n++) {
          const w2 = 1 / (1 + Math.exp(logits[n * E]! - logits[n * E + 2]!));
          for (let c = 0; c < C; c++) out[n * C + c] = w2 * y2[n * C + c]! + (1 - w2) * y0[n * C + c]!;
        }
        return out;
      });
      expectClose(y, want, 1e-5, 1e-4, `top-${K}: rows all routed to expert 2`);
      // the experts no token reached get zero gradients (not none), as a fused expert tensor's slices
      const xg = Tensor.from(x.toArray() as Float32Array, [N, C], { requiresGrad: true });
      const yg = moe.forward(xg, rec);
      sum(mul(yg, yg)).backward();
      for (const e of K === 1 ? [0, 1, 3] : [1, 3]) {
        const g = moe.experts.items[e]!.w1.weight.grad;
        expect(g, `expert ${e} gradient`).not.toBeNull();
        expect(Math.max(...arr(g!).map(Math.abs))).toBe(0);
      }
      expect(Math.max(...arr(moe.experts.items[2]!.w1.weight.grad!).map(Math.abs))).toBeGreaterThan(0);
      expectClose(arr(yg), y, 1e-6, 1e-6, 'the same output with gradients on');
      clearTape();
      rec.dispose();
      moe.dispose();
    }
  });

  it('LlamaForCausalLM builds Mixtral layers for numExperts > 1 and adds their losses, with per-layer metrics', () => {
    const cfg = { ...preset('tiny-moe').config, routerZLossCoef: 0.01 };
    const model = new LlamaForCausalLM(cfg, { seed: 3 });
    const names = model.namedParameters().map(([n]) => n);
    expect(names).toContain('model.layers.1.block_sparse_moe.gate.weight');
    expect(names).toContain('model.layers.0.block_sparse_moe.experts.3.w2.weight');
    expect(names.some((n) => n.includes('.mlp.'))).toBe(false);
    const tokens = Int32Array.from({ length: 20 }, (_, i) => (i * 37) % 256);
    const targets = Int32Array.from({ length: 20 }, (_, i) => (i * 37 + 1) % 256);
    const { loss, metrics } = model.lossWithMetrics({ tokens, targets });
    for (const l of [0, 1]) {
      const counts = [0, 1, 2, 3].map((e) => metrics[`layers.${l}.expert_tokens.${e}`]!);
      expect(counts.reduce((a, b) => a + b)).toBe(20 * 2);
      // the model's auxiliary losses are the layer values times coefficient / nLayers
      expect(metrics[`layers.${l}.load_balance_loss`]).toBeCloseTo(metrics[`layers.${l}.load_balance`]! * 0.02 / 2, 7);
      expect(metrics[`layers.${l}.router_z_loss`]).toBeCloseTo(metrics[`layers.${l}.router_z`]! * 0.01 / 2, 7);
    }
    const lmOnly = new LlamaForCausalLM({ ...cfg, routerAuxLossCoef: 0, routerZLossCoef: 0 }, { seed: 3 }).loss({ tokens, targets });
    const aux = [0, 1].reduce((s, l) => s + metrics[`layers.${l}.load_balance_loss`]! + metrics[`layers.${l}.router_z_loss`]!, 0);
    expect(loss.item()).toBeCloseTo(lmOnly.item() + aux, 5);
    loss.backward();
    expect(model.getParameter('model.layers.0.block_sparse_moe.gate.weight')!.grad).not.toBeNull();
    model.dispose();
    clearTape();
  });
});
