// The LLaMA building blocks as modules over the fused ops: Linear (no bias), Embedding, RMSNorm,
// Attention (RoPE, grouped-query, packed variable-length sequences), the SwiGLU MLP behind the
// FeedForward interface, and the pre-norm decoder Block. Parameter names follow Hugging Face.
//
// Shapes: N tokens of a packed batch, C = dim, H query heads, Hkv key/value heads, D = C / H.
import { PatentGPTError } from '../errors.js';
import {
  Tensor, add, attention, embedding, linear, rmsnorm, rope, swiglu, type RopeOptions,
} from '../tensor/index.js';
import { Module } from './module.js';

/** Makes a parameter tensor: 'normal' for projection and embedding matrices, 'ones' for norm gains. */
export type ParamInit = (shape: readonly number[], kind: 'normal' | 'ones') => Tensor;

/** Zeros for matrices, ones for norms: for modules whose weights will be loaded. */
export const zeroInit: ParamInit = (shape, kind) => (kind === 'ones' ? Tensor.full(shape, 1) : Tensor.zeros(shape));

/** y = x W^T, W (out, in), as torch.nn.Linear(bias=False). */
export class Linear extends Module {
  constructor(inFeatures: number, outFeatures: number, init: ParamInit = zeroInit) {
    super();
    this.registerParameter('weight', init([outFeatures, inFeatures], 'normal'));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  get inFeatures(): number {
    return this.weight.shape[1]!;
  }
  get outFeatures(): number {
    return this.weight.shape[0]!;
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight);
  }
}

/** Rows of a (V, C) table at i32 ids. */
export class Embedding extends Module {
  constructor(numEmbeddings: number, dim: number, init: ParamInit = zeroInit) {
    super();
    this.registerParameter('weight', init([numEmbeddings, dim], 'normal'));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  get numEmbeddings(): number {
    return this.weight.shape[0]!;
  }
  get dim(): number {
    return this.weight.shape[1]!;
  }
  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight);
  }
}

export class RMSNorm extends Module {
  constructor(readonly dim: number, readonly eps: number, init: ParamInit = zeroInit) {
    super();
    this.registerParameter('weight', init([dim], 'ones'));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  forward(x: Tensor): Tensor {
    return rmsnorm(x, this.weight, this.eps);
  }
}

/** What attention needs to know about a packed batch. */
export interface AttentionContext {
  /** i32 (N): position of each token within its document (restarts at 0). */
  positions: Tensor;
  /** i32 (nDocs + 1): document boundaries; attention never crosses them. */
  cuSeqlens: Tensor;
  /** RoPE base and position scale for this batch. */
  rope: Required<RopeOptions>;
}

export interface AttentionShape {
  dim: number;
  nHeads: number;
  nKvHeads: number;
}

/** Causal self-attention with RoPE and grouped-query heads over a packed batch. */
export class Attention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  readonly headDim: number;

  constructor(readonly shape: AttentionShape, init: ParamInit = zeroInit) {
    super();
    const { dim, nHeads, nKvHeads } = shape;
    if (dim % nHeads !== 0 || nHeads % nKvHeads !== 0)
      throw new PatentGPTError('E_SHAPE', `Attention: dim ${dim}, ${nHeads} heads, ${nKvHeads} kv heads do not divide`);
    this.headDim = dim / nHeads;
    const D = this.headDim;
    this.q_proj = this.registerModule('q_proj', new Linear(dim, nHeads * D, init));
    this.k_proj = this.registerModule('k_proj', new Linear(dim, nKvHeads * D, init));
    this.v_proj = this.registerModule('v_proj', new Linear(dim, nKvHeads * D, init));
    this.o_proj = this.registerModule('o_proj', new Linear(nHeads * D, dim, init));
  }

  /** x (N, C) -> (N, C). */
  forward(x: Tensor, ctx: AttentionContext): Tensor {
    const N = x.shape[0]!;
    const { nHeads: H, nKvHeads: Hkv } = this.shape;
    const D = this.headDim;
    const q = rope(this.q_proj.forward(x).reshape([N, H, D]), ctx.positions, ctx.rope); // (N, H, D)
    const k = rope(this.k_proj.forward(x).reshape([N, Hkv, D]), ctx.positions, ctx.rope); // (N, Hkv, D)
    const v = this.v_proj.forward(x).reshape([N, Hkv, D]); // (N, Hkv, D)
    const o = attention(q, k, v, { cuSeqlens: ctx.cuSeqlens, causal: true }); // (N, H, D)
    return this.o_proj.forward(o.reshape([N, H * D]));
  }
}

/**
 * The position-wise feed-forward of a block: the dense SwiGLU MLP now, a mixture of experts
 * later. x (N, C) -> (N, C). An implementation may report an auxiliary loss (load balancing)
 * that the model adds to the language-model loss.
 */
export interface FeedForward extends Module {
  forward(x: Tensor): Tensor;
  /** Auxiliary loss of the last forward (a scalar), if any; the caller owns it. */
  takeAuxLoss?(): Tensor | null;
}

/** down(silu(gate(x)) * up(x)): LlamaMLP. */
export class SwiGLUMLP extends Module implements FeedForward {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  constructor(readonly dim: number, readonly hiddenDim: number, init: ParamInit = zeroInit) {
    super();
    this.gate_proj = this.registerModule('gate_proj', new Linear(dim, hiddenDim, init));
    this.up_proj = this.registerModule('up_proj', new Linear(dim, hiddenDim, init));
    this.down_proj = this.registerModule('down_proj', new Linear(hiddenDim, dim, init));
  }
  forward(x: Tensor): Tensor {
    return this.down_proj.forward(swiglu(this.gate_proj.forward(x), this.up_proj.forward(x)));
  }
}

/** Pre-norm decoder layer: x + attn(norm(x)), then + ffn(norm(x)). LlamaDecoderLayer. */
export class Block extends Module {
  readonly self_attn: Attention;
  readonly mlp: FeedForward;
  readonly input_layernorm: RMSNorm;
  readonly post_attention_layernorm: RMSNorm;

  constructor(shape: AttentionShape & { normEps: number }, mlp: FeedForward, init: ParamInit = zeroInit) {
    super();
    this.self_attn = this.registerModule('self_attn', new Attention(shape, init));
    this.mlp = this.registerModule('mlp', mlp);
    this.input_layernorm = this.registerModule('input_layernorm', new RMSNorm(shape.dim, shape.normEps, init));
    this.post_attention_layernorm = this.registerModule('post_attention_layernorm', new RMSNorm(shape.dim, shape.normEps, init));
  }

  /** x (N, C) -> (N, C). */
  forward(x: Tensor, ctx: AttentionContext): Tensor {
    const h = add(x, this.self_attn.forward(this.input_layernorm.forward(x), ctx));
    return add(h, this.mlp.forward(this.post_attention_layernorm.forward(h)));
  }
}

/** An ordered list of modules named 0, 1, 2, ... (torch.nn.ModuleList). */
export class ModuleList<M extends Module> extends Module {
  readonly items: readonly M[];
  constructor(items: M[]) {
    super();
    items.forEach((m, i) => this.registerModule(String(i), m));
    this.items = items;
  }
  get length(): number {
    return this.items.length;
  }
}
