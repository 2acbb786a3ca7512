// Modules: the parameter tree and its names, a block against the same ops written out by hand,
// and the feed-forward slot that the SMoE layer will use.
import { describe, expect, it } from 'vitest';
import {
  Attention, Block, LlamaForCausalLM, Module, SwiGLUMLP, Tensor, add, attention, linear, noGrad, packDocuments, preset, rmsnorm,
  rope, scale, swiglu, sum, type FeedForward, type ParamInit,
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
    const got = noGrad(() => block.forward(x, { positions, cuSeqlens, rope: ropeOpts }));
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

  it('the feed-forward slot takes another FeedForward, whose auxiliary loss joins the loss', () => {
    // A stand-in for the SMoE layer: the dense MLP plus a fixed auxiliary loss per layer.
    class WithAux extends Module implements FeedForward {
      readonly inner: SwiGLUMLP;
      calls = 0;
      constructor(dim: number, hidden: number, init: ParamInit) {
        super();
        this.inner = this.registerModule('inner', new SwiGLUMLP(dim, hidden, init));
      }
      forward(x: Tensor): Tensor {
        this.calls++;
        return this.inner.forward(x);
      }
      takeAuxLoss(): Tensor {
        return scale(sum(this.inner.gate_proj.weight), 0); // zero, but on the tape
      }
    }
    const cfg = preset('tiny').config;
    const dense = new LlamaForCausalLM(cfg, { seed: 9 });
    const layers: WithAux[] = [];
    const custom = new LlamaForCausalLM(cfg, {
      seed: 9,
      feedForward: (_i, c, init) => {
        const m = new WithAux(c.dim, c.ffnDim, init);
        layers.push(m);
        return m;
      },
    });
    expect(custom.namedParameters().map(([n]) => n)).toContain('model.layers.1.mlp.inner.down_proj.weight');
    const b = packDocuments([[1, 2, 3, 4, 5], [6, 7, 8]]);
    const l1 = dense.loss(b);
    const l2 = custom.loss(b);
    expect(layers.map((m) => m.calls)).toEqual([1, 1]);
    expect(l2.item()).toBeCloseTo(l1.item(), 6);
    l2.backward();
    expect(custom.getParameter('model.layers.0.mlp.inner.gate_proj.weight')!.grad).not.toBeNull();
    l1.dispose();
    l2.dispose();
    dense.dispose();
    custom.dispose();
  });
});
