// Modules: the parameter tree and its names, a block against the same ops written out by hand,
// the feed-forward slot that the SMoE layer will use (its name, its checkpoint names, what it
// reports during forward), and moving a module between devices.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Attention, Block, ForwardRecorder, LlamaForCausalLM, Module, SwiGLUMLP, Tensor, add, attention, linear, loadWeights, noGrad,
  packDocuments, preset, readSafetensors, rmsnorm, rope, runtimeInfo, savePretrained, scale, swiglu, sum, type ForwardContext,
  type FeedForward, type ParamInit,
} from '../../src/index.js';
import { expectClose } from '../helpers.js';

let seed = 1;
const randInit: ParamInit = (shape, kind) =>
  kind === 'ones' ? Tensor.randn(shape, { seed: seed++, std: 0.1, mean: 1 }) : Tensor.randn(shape, { seed: seed++, std: 0.2 });

describe('nn modules', () => {
  it('names parameters by their path and refuses a replacement of another shape', () => {
    const attn = new Attention({ dim: 32, nHeads: 4, nKvHeads: 2 }, randInit);
    expect(attn.namedParameters('self_attn.').map(([n, p]) => `${n} ${p.shape.join('x')}`)).toEqual([
      'self_attn.q_proj.weight 32x32', 'self_attn.k_proj.weight 16x32', 'self_attn.v_proj.weight 16x32', 'self_attn.o_proj.weight 32x32',
    ]);
    expect(attn.parameters().every((p) => p.requiresGrad)).toBe(true);
    expect(() => attn.setParameter('k_proj.weight', Tensor.zeros([32, 32]))).toThrow(/parameter k_proj.weight is f32\[16, 32\], cannot replace it with f32\[32, 32\]/);
    expect(() => attn.setParameter('x_proj.weight', Tensor.zeros([16, 32]))).toThrow(/no module on the path/);
    const fresh = Tensor.zeros([16, 32]);
    attn.setParameter('k_proj.weight', fresh);
    expect(attn.getParameter('k_proj.weight')).toBe(fresh);
    expect(fresh.requiresGrad).toBe(true);
    // A frozen weight (LoRA's base) stays frozen when replaced (loading weights, Module.to).
    fresh.requiresGrad = false;
    const again = Tensor.zeros([16, 32]);
    attn.setParameter('k_proj.weight', again);
    expect(again.requiresGrad).toBe(false);
    expect(() => new Attention({ dim: 32, nHeads: 4, nKvHeads: 3 })).toThrow(/do not divide/);
    attn.dispose();
  });

  it('a Block computes x + attn(norm(x)), then + mlp(norm(.)), over packed documents', () => {
    const C = 32, H = 4, HKV = 2, D = 8, F = 48;
    const mlp = new SwiGLUMLP(C, F, randInit);
    const block = new Block({ dim: C, nHeads: H, nKvHeads: HKV, normEps: 1e-5 }, mlp, randInit);
    const N = 9;
    const x = Tensor.randn([N, C], { seed: 100 });
    const positions = Tensor.from(Int32Array.of(0, 1, 2, 3, 0, 1, 2, 3, 4), [N], { dtype: 'i32' });
    const cuSeqlens = Tensor.from(Int32Array.of(0, 4, 9), [3], { dtype: 'i32' });
    const ropeOpts = { theta: 500000, posScale: 2 };
    const got = noGrad(() => block.forward(x, { kind: 'packed', positions, cuSeqlens, rope: ropeOpts }, new ForwardRecorder()));
    const p = (n: string) => block.getParameter(n)!;
    const want = noGrad(() => {
      const h = rmsnorm(x, p('input_layernorm.weight'), 1e-5);
      const q = rope(linear(h, p('self_attn.q_proj.weight')).reshape([N, H, D]), positions, ropeOpts);
      const k = rope(linear(h, p('self_attn.k_proj.weight')).reshape([N, HKV, D]), positions, ropeOpts);
      const v = linear(h, p('self_attn.v_proj.weight')).reshape([N, HKV, D]);
      const a = linear(attention(q, k, v, { cuSeqlens: [0, 4, 9] }).reshape([N, C]), p('self_attn.o_proj.weight'));
      const x1 = add(x, a);
      const h2 = rmsnorm(x1, p('post_attention_layernorm.weight'), 1e-5);
      return add(x1, linear(swiglu(linear(h2, p('mlp.gate_proj.weight')), linear(h2, p('mlp.up_proj.weight'))), p('mlp.down_proj.weight')));
    });
    expect(got.toArray()).toEqual(want.toArray());
    block.dispose();
  });

  /**
   * A stand-in for Mixtral's sparse layer with one expert: the dense MLP's arithmetic under
   * Mixtral's names (gate, experts.0.w1/w3/w2, registered as block_sparse_moe) that reports, during
   * forward, an auxiliary loss coef * sum(router logits) and a metric.
   */
  class OneExpert extends Module implements FeedForward {
    static coef = 0.01;
    constructor(dim: number, hidden: number, init: ParamInit) {
      super();
      // Module names of its own, checkpoint names as Mixtral's.
      this.registerParameter('router', init([2, dim], 'normal'), 'gate.weight');
      this.registerParameter('w1_0', init([hidden, dim], 'normal'), 'experts.0.w1.weight');
      this.registerParameter('w3_0', init([hidden, dim], 'normal'), 'experts.0.w3.weight');
      this.registerParameter('w2_0', init([dim, hidden], 'normal'), 'experts.0.w2.weight');
    }
    forward(x: Tensor, ctx: ForwardContext): Tensor {
      ctx.addAuxLoss('router_sum', scale(sum(linear(x, this.param('router'))), OneExpert.coef));
      ctx.addMetric('rows', x.shape[0]!);
      return linear(swiglu(linear(x, this.param('w1_0')), linear(x, this.param('w3_0'))), this.param('w2_0'));
    }
  }
  const moeModel = (seed: number) => new LlamaForCausalLM(preset('tiny').config, {
    seed, feedForwardName: 'block_sparse_moe', feedForward: (_i, c, init) => new OneExpert(c.dim, c.ffnDim, init),
  });

  it('a feed-forward module reports an auxiliary loss and a metric during forward: the loss adds the loss, the caller reads both, the gradient reaches the parameters', () => {
    const cfg = preset('tiny').config;
    const dense = new LlamaForCausalLM(cfg, { seed: 9 });
    const moe = moeModel(9);
    // The same MLP weights under the other names: the two models differ only by the auxiliary loss.
    for (let l = 0; l < cfg.nLayers; l++)
      for (const [from, to] of [['gate_proj', 'w1'], ['up_proj', 'w3'], ['down_proj', 'w2']])
        moe.getParameter(`model.layers.${l}.block_sparse_moe.experts.0.${to}.weight`)!.write(
          dense.getParameter(`model.layers.${l}.mlp.${from}.weight`)!.toArray() as Float32Array);
    for (const [n, p] of dense.namedParameters()) if (!n.includes('.mlp.')) moe.getParameter(n)!.write(p.toArray() as Float32Array);
    const b = packDocuments([[1, 2, 3, 4, 5], [6, 7, 8]]);
    const l1 = noGrad(() => dense.loss(b));
    const rec = new ForwardRecorder();
    const l2 = moe.loss(b, rec);
    // Made inside the forward's scopes, the auxiliary losses are still readable here.
    expect([...rec.auxLosses.keys()]).toEqual(['layers.0.router_sum', 'layers.1.router_sum']);
    const aux = [...rec.auxLosses.values()].map((t) => t.item());
    expect(aux.every((a) => a !== 0)).toBe(true);
    expect(l2.item()).toBeCloseTo(l1.item() + aux[0]! + aux[1]!, 5);
    expect(Object.fromEntries(rec.metrics)).toEqual({ 'layers.0.rows': 8, 'layers.1.rows': 8 });
    l2.backward();
    rec.dispose();
    // The router takes part in nothing but the auxiliary loss: its gradient is the aux loss's, checked by central differences.
    const router = moe.getParameter('model.layers.1.block_sparse_moe.gate.weight')!;
    const g = (router.grad!.toArray() as Float32Array)[3]!;
    const w = router.toArray() as Float32Array;
    const lossAt = (v: number): number => {
      const t = Float32Array.from(w);
      t[3] = v;
      router.write(t);
      return noGrad(() => moe.loss(b).item());
    };
    const eps = 1e-2;
    const numeric = (lossAt(w[3]! + eps) - lossAt(w[3]! - eps)) / (2 * eps);
    expect(Math.abs(g)).toBeGreaterThan(1e-4);
    expect(g).toBeCloseTo(numeric, 3);
    router.write(w);
    // lossWithMetrics hands a stage both at once.
    const { loss, metrics } = moe.lossWithMetrics(b);
    expect(metrics['layers.0.rows']).toBe(8);
    expect(metrics['layers.1.router_sum']).toBeCloseTo(aux[1]!, 6);
    loss.dispose();
    l1.dispose();
    l2.dispose();
    dense.dispose();
    moe.dispose();
  });

  it('a module names its parameters as the checkpoint does: Mixtral-style names save, load and address parameters', async () => {
    const a = moeModel(3);
    const names = a.namedParameters().map(([n]) => n);
    expect(names).toContain('model.layers.1.block_sparse_moe.gate.weight');
    expect(names).toContain('model.layers.0.block_sparse_moe.experts.0.w1.weight');
    expect(names).toContain('model.layers.0.block_sparse_moe.experts.0.w2.weight');
    expect(names.some((n) => n.includes('.mlp.') || n.includes('w1_0') || n.includes('router'))).toBe(false);
    const fresh = Tensor.zeros([2, a.config.dim]);
    a.setParameter('model.layers.0.block_sparse_moe.gate.weight', fresh);
    expect(a.getParameter('model.layers.0.block_sparse_moe.gate.weight')).toBe(fresh);
    expect(a.getParameter('model.layers.0.block_sparse_moe.router')).toBeUndefined();
    expect(() => a.setParameter('model.layers.0.block_sparse_moe.experts.1.w1.weight', fresh)).toThrow(/no parameter|no module/);
    const dir = mkdtempSync(join(tmpdir(), 'pg-moe-names-'));
    try {
      await savePretrained(a, join(dir, 'm'));
      const file = await readSafetensors(join(dir, 'm', 'model.safetensors'));
      expect([...file.keys()].sort()).toEqual([...names].sort());
      for (const t of file.values()) t.dispose();
      const b = moeModel(4);
      await loadWeights(b, join(dir, 'm'));
      for (const [n, p] of a.namedParameters()) expect(b.getParameter(n)!.toArray()).toEqual(p.toArray());
      b.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    a.dispose();
  });

  it('Module.to moves every parameter; asking for a device that is absent is a clear error and moves nothing', () => {
    const mlp = new SwiGLUMLP(8, 12, randInit);
    const before = mlp.parameters();
    expect(mlp.to('cpu')).toBe(mlp);
    expect(mlp.parameters()).toEqual(before); // already there: the same tensors
    const info = runtimeInfo();
    if (!info.cudaCompiled || info.gpus.length === 0) {
      expect(() => mlp.to('cuda')).toThrow(/Module\.to: cannot use device 'cuda'/);
      expect(mlp.parameters().every((p, i) => p === before[i] && p.device === 'cpu' && !p.disposed)).toBe(true);
    } else {
      const values = before.map((p) => p.toArray());
      mlp.to('cuda');
      expect(mlp.parameters().every((p) => p.device === 'cuda' && p.requiresGrad)).toBe(true);
      expect(before.every((p) => p.disposed)).toBe(true);
      mlp.to('cpu');
      expect(mlp.parameters().map((p) => p.toArray())).toEqual(values);
    }
    mlp.dispose();
  });
});
