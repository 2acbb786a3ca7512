// The LLaMA building blocks as modules over the fused ops: Linear (no bias), Embedding, RMSNorm,
// Attention (RoPE, grouped-query; the kernel chosen by the attention metadata: packed
// variable-length sequences or a paged KV cache), the SwiGLU MLP behind the FeedForward
// interface, and the pre-norm decoder Block. Parameter names follow Hugging Face.
//
// Shapes: N rows (tokens), C = dim, H query heads, Hkv key/value heads, D = C / H.
import { PatentGPTError } from '../errors.js';
import {
  Tensor, add, attention, copyRows, embedding, gatherRows, linear, pagedAttention, pagedKvStore, quantLinear, rmsnorm, rope, scope, swiglu,
  type DecodeMlpWeights, type DecodeMoeWeights, type DecodeWeight, type QuantizedMatrix,
} from '../tensor/index.js';
import type { ForwardContext } from './context.js';
import { inDropoutRows, withDropoutRowSubset } from './dropout-rows.js';
import type { AttentionMetadata, PagedAttentionMetadata, RopeSegment, RopeSetting } from './metadata.js';
import { Module } from './module.js';

/** Makes a parameter tensor: 'normal' for projection and embedding matrices, 'ones' for norm gains. */
export type ParamInit = (shape: readonly number[], kind: 'normal' | 'ones') => Tensor;

/** Zeros for matrices, ones for norms: for modules whose weights will be loaded. */
export const zeroInit: ParamInit = (shape, kind) => (kind === 'ones' ? Tensor.full(shape, 1) : Tensor.zeros(shape));

/**
 * A term added to a Linear's output from the same input: a LoRA adapter (src/nn/lora.ts). Its
 * parameters appear below the layer (`q_proj.lora_A.weight`, PEFT's names), and a layer that
 * has one is not fusable: the fused decode path reads `weight` alone.
 */
export interface LinearAdapter extends Module {
  /** x (N, in) and y = x W^T (N, out) -> y plus the adapter's term (N, out). */
  apply(x: Tensor, y: Tensor): Tensor;
  /** True while the term is folded into W (apply then returns y): W alone is the layer again. */
  readonly merged: boolean;
}

/** y = x W^T, W (out, in), as torch.nn.Linear(bias=False); plus an adapter's term when one is attached. */
export class Linear extends Module {
  #adapter: LinearAdapter | null = null;
  #quantized: QuantizedMatrix | null = null;

  constructor(inFeatures: number, outFeatures: number, init: ParamInit = zeroInit) {
    super();
    this.registerParameter('weight', init([outFeatures, inFeatures], 'normal'));
  }
  get adapter(): LinearAdapter | null {
    return this.#adapter;
  }
  /** Attaches `adapter` (null detaches; the caller then owns the detached one's tensors). */
  setAdapter(adapter: LinearAdapter | null): void {
    if (adapter && this.#quantized) throw new PatentGPTError('E_UNSUPPORTED', 'Linear: a quantized layer takes no adapter (attach it to the f32 model)');
    this.#adapter = adapter;
  }
  /** The weight in llama.cpp's blocks when setQuantized() replaced it, else null. */
  get quantized(): QuantizedMatrix | null {
    return this.#quantized;
  }
  /**
   * Replaces the f32 weight by its quantized form `q` (same shape; the layer owns it, the f32
   * tensor is freed): forward then runs the quantized GEMV. An inference-only layer: it has no
   * `weight` parameter left to train or save.
   */
  setQuantized(q: QuantizedMatrix): void {
    if (this.#quantized) throw new PatentGPTError('E_ARGUMENT', `Linear: already quantized (${this.#quantized.describe()})`);
    if (this.#adapter) throw new PatentGPTError('E_UNSUPPORTED', 'Linear: merge or detach the adapter before quantizing');
    const w = this.weight;
    if (q.rows !== w.shape[0] || q.cols !== w.shape[1])
      throw new PatentGPTError('E_SHAPE', `Linear: ${q.describe()} does not match the weight ${w.describe()}`);
    this.removeParameter('weight');
    this.#quantized = q;
  }
  /** What the fused decode path reads: the f32 weight or its quantized blocks. */
  get decodeWeight(): DecodeWeight {
    return this.#quantized ?? this.weight;
  }
  protected override disposeBuffers(): void {
    this.#quantized?.dispose();
    this.#quantized = null;
  }
  /** Whether `weight` alone is this layer (what the fused decode path needs). */
  get fusable(): boolean {
    return this.#adapter === null || this.#adapter.merged;
  }
  // The adapter's parameters are this layer's children in checkpoints, without being a module
  // child: detaching it (merging) must leave no trace in the tree.
  override namedParameters(prefix = ''): [string, Tensor][] {
    const own = super.namedParameters(prefix);
    return this.#adapter ? [...own, ...this.#adapter.namedParameters(prefix)] : own;
  }
  override getParameter(path: string): Tensor | undefined {
    return super.getParameter(path) ?? this.#adapter?.getParameter(path);
  }
  override setParameter(path: string, t: Tensor, opts: { allowReshape?: boolean } = {}, fullPath = path): void {
    if (this.#adapter && super.getParameter(path) === undefined && this.#adapter.getParameter(path)) this.#adapter.setParameter(path, t, opts, fullPath);
    else super.setParameter(path, t, opts, fullPath);
  }
  get weight(): Tensor {
    if (this.#quantized)
      throw new PatentGPTError('E_UNSUPPORTED', `Linear: the weight is quantized (${this.#quantized.describe()}); dequantize(layer.quantized) gives its f32 values`);
    return this.param('weight');
  }
  get inFeatures(): number {
    return this.#quantized?.cols ?? this.weight.shape[1]!;
  }
  get outFeatures(): number {
    return this.#quantized?.rows ?? this.weight.shape[0]!;
  }
  forward(x: Tensor): Tensor {
    if (this.#quantized) return quantLinear(x, this.#quantized);
    const adapter = this.#adapter;
    if (!adapter) return linear(x, this.weight);
    // The base output and the adapter's intermediates are freed here, not at the end of the step's
    // scope: otherwise every adapted layer keeps two (N, out) tensors alive to the end of the
    // forward, and LoRA's peak memory exceeds full fine-tuning's.
    return scope(() => adapter.apply(x, linear(x, this.weight)));
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

  /**
   * x (N, C) -> (N, C). The metadata picks the kernel: packed sequences attend over their own
   * keys (fused variable-length attention); a paged step stores its keys and values in layer
   * `layer`'s cache, then fresh prompts attend over their own keys and the other rows read the
   * cache through their block tables.
   */
  forward(x: Tensor, meta: AttentionMetadata, layer = 0, outRows?: Tensor): Tensor {
    if (meta.kind === 'paged') {
      if (outRows) throw new PatentGPTError('E_ARGUMENT', 'Attention: outRows is for packed batches (a paged step picks its logit rows itself)');
      return this.#paged(x, meta, layer);
    }
    const N = x.shape[0]!;
    const { nHeads: H, nKvHeads: Hkv } = this.shape;
    const D = this.headDim;
    const q = rope(this.q_proj.forward(x).reshape([N, H, D]), meta.positions, meta.rope); // (N, H, D)
    const k = rope(this.k_proj.forward(x).reshape([N, Hkv, D]), meta.positions, meta.rope); // (N, Hkv, D)
    const v = this.v_proj.forward(x).reshape([N, Hkv, D]); // (N, Hkv, D)
    const o = attention(q, k, v, { cuSeqlens: meta.cuSeqlens, causal: true }).reshape([N, H * D]); // (N, H * D)
    // Every row's keys and values are needed, but only outRows' outputs: project just those.
    return this.o_proj.forward(outRows ? gatherRows(o, outRows) : o);
  }

  #paged(x: Tensor, meta: PagedAttentionMetadata, layer: number): Tensor {
    const N = meta.rows;
    const { nHeads: H, nKvHeads: Hkv } = this.shape;
    const D = this.headDim;
    const kCache = meta.cache.k[layer], vCache = meta.cache.v[layer];
    if (!kCache || !vCache) throw new PatentGPTError('E_ARGUMENT', `Attention: the paged metadata has no cache for layer ${layer}`);
    const pos = head(meta.positions, N);
    const q = ropeRows(this.q_proj.forward(x).reshape([N, H, D]), pos, meta.rope); // (N, H, D)
    const k = ropeRows(this.k_proj.forward(x).reshape([N, Hkv, D]), pos, meta.rope); // (N, Hkv, D)
    const v = this.v_proj.forward(x).reshape([N, Hkv, D]); // (N, Hkv, D)
    pagedKvStore(kCache, vCache, k, v, head(meta.slotMapping, N));
    const o = Tensor.empty([N, H, D], { like: q });
    const nFresh = meta.fresh?.rows ?? 0;
    if (nFresh > 0) {
      const a = attention(q.narrow(0, nFresh), k.narrow(0, nFresh), v.narrow(0, nFresh), { cuSeqlens: meta.fresh!.cuSeqlens, causal: true });
      copyRows(o, 0, a, 0, nFresh);
    }
    const c = meta.cached;
    if (N > nFresh) {
      if (!c) throw new PatentGPTError('E_ARGUMENT', `Attention: rows ${nFresh}..${N} of a paged step are not fresh prompts, and the metadata has no block tables for them`);
      const tables = c.blockTables.shape.length === 1 ? head(c.blockTables, c.seqs * c.maxBlocks) : head(c.blockTables, c.seqs);
      pagedAttention(q.narrow(nFresh, N - nFresh), kCache, vCache, {
        blockTables: tables, maxBlocks: c.maxBlocks, cuQ: head(c.cuQ, c.seqs + 1), contextLens: head(c.contextLens, c.seqs),
        partitionSize: c.partitionSize, maxContextLen: c.maxContextLen, out: o.narrow(nFresh, N - nFresh),
      });
    }
    return this.o_proj.forward(o.reshape([N, H * D]));
  }
}

/** The first n rows of t (t itself when it has exactly n). */
function head(t: Tensor, n: number): Tensor {
  return t.shape[0] === n ? t : t.narrow(0, n);
}

/** RoPE of x (N, heads, D): one setting for all rows, or one per segment of rows. */
function ropeRows(x: Tensor, positions: Tensor, r: RopeSetting | readonly RopeSegment[]): Tensor {
  if (!Array.isArray(r)) return rope(x, positions, r as RopeSetting);
  const out = Tensor.empty(x.shape, { like: x });
  for (const sg of r as readonly RopeSegment[]) copyRows(out, sg.row, rope(x.narrow(sg.row, sg.rows), positions.narrow(sg.row, sg.rows), sg.rope), 0, sg.rows);
  return out;
}

/**
 * The position-wise feed-forward of a block: the dense SwiGLU MLP now, a mixture of experts
 * later. x (N, C) -> (N, C). An implementation reports auxiliary losses (load balancing) and
 * metrics through the context; the model adds the losses to the language-model loss.
 */
export interface FeedForward extends Module {
  forward(x: Tensor, ctx: ForwardContext): Tensor;
  /**
   * gate, up, down when this is exactly LlamaMLP (down(silu(gate(x)) * up(x))): what the fused
   * decode path needs. Absent or null for other kinds, which then run as modules.
   */
  swigluWeights?(): SwigluWeights | null;
  /**
   * The router and experts when this is a sparse MoE whose experts are their weights alone (no
   * adapter) and whose routing is deterministic: what the fused MoE decode path needs. Absent or
   * null otherwise.
   */
  moeDecodeWeights?(): MoeDecodeWeights | null;
}

/** A sparse MoE feed-forward's weights for the fused decode path (DecodeMoeWeights without its norm). */
export type MoeDecodeWeights = Omit<DecodeMoeWeights, 'normWeight' | 'eps'>;

export interface SwigluWeights {
  /** (F, C), (F, C), (C, F): f32, or quantized blocks. */
  gate: DecodeWeight;
  up: DecodeWeight;
  down: DecodeWeight;
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
  swigluWeights(): SwigluWeights | null {
    if (!this.gate_proj.fusable || !this.up_proj.fusable || !this.down_proj.fusable) return null;
    return { gate: this.gate_proj.decodeWeight, up: this.up_proj.decodeWeight, down: this.down_proj.decodeWeight };
  }
}

/** A decoder layer's weights as the fused decode path takes them (decodeLayer's inputs). */
export interface DecodeLayerWeights {
  normWeight: Tensor;
  eps: number;
  /** f32, or quantized blocks (all seven projections of one type). */
  wq: DecodeWeight;
  wk: DecodeWeight;
  wv: DecodeWeight;
  wo: DecodeWeight;
  /** The feed-forward: a SwiGLU MLP, or a sparse MoE (isMoeWeights). */
  mlp: DecodeMlpWeights | DecodeMoeWeights;
}

export interface BlockOptions {
  /**
   * Module name of the feed-forward (default 'mlp', LlamaDecoderLayer's); Mixtral's sparse
   * layer is 'block_sparse_moe'. It is the middle of the checkpoint names of its parameters.
   */
  feedForwardName?: string;
}

/** Pre-norm decoder layer: x + attn(norm(x)), then + ffn(norm(x)). LlamaDecoderLayer. */
export class Block extends Module {
  readonly self_attn: Attention;
  readonly feedForward: FeedForward;
  readonly feedForwardName: string;
  readonly input_layernorm: RMSNorm;
  readonly post_attention_layernorm: RMSNorm;

  constructor(shape: AttentionShape & { normEps: number }, feedForward: FeedForward, init: ParamInit = zeroInit, opts: BlockOptions = {}) {
    super();
    this.feedForwardName = opts.feedForwardName ?? 'mlp';
    this.self_attn = this.registerModule('self_attn', new Attention(shape, init));
    this.feedForward = this.registerModule(this.feedForwardName, feedForward);
    this.input_layernorm = this.registerModule('input_layernorm', new RMSNorm(shape.dim, shape.normEps, init));
    this.post_attention_layernorm = this.registerModule('post_attention_layernorm', new RMSNorm(shape.dim, shape.normEps, init));
  }

  /**
   * x (N, C) -> (N, C); `layer` picks this layer's KV cache in a paged step. With outRows (i32,
   * packed batches only) -> (R, C): the same rows of the full output, computing the attention
   * output projection and the feed-forward for those rows alone (a last layer whose other rows
   * nothing reads).
   */
  forward(x: Tensor, meta: AttentionMetadata, ctx: ForwardContext, layer = 0, outRows?: Tensor): Tensor {
    const run = (): Tensor => {
      const a = this.self_attn.forward(this.input_layernorm.forward(x), meta, layer, outRows);
      const h = add(outRows ? gatherRows(x, outRows) : x, a);
      return add(h, this.feedForward.forward(this.post_attention_layernorm.forward(h), ctx));
    };
    // The rows computed alone are named to row-keyed dropout (src/nn/dropout-rows.ts), so an
    // adapter's mask on them is theirs whatever rows are left out.
    return outRows && inDropoutRows() ? withDropoutRowSubset(outRows, run) : run();
  }

  /**
   * The fused decode path's weights, or null when the feed-forward is neither a plain SwiGLU MLP
   * nor a sparse MoE of plain experts, or a projection is not its weight alone (an adapter attached).
   */
  decodeWeights(): DecodeLayerWeights | null {
    const ff = this.feedForward.swigluWeights?.() ?? this.feedForward.moeDecodeWeights?.() ?? null;
    const a = this.self_attn, n = this.input_layernorm, post = this.post_attention_layernorm;
    const proj = [a.q_proj, a.k_proj, a.v_proj, a.o_proj];
    if (!ff || !proj.every((l) => l.fusable)) return null;
    // One weight type per fused call: a layer quantized in part (or a quantized MoE) runs as modules.
    const type = (w: DecodeWeight): string => (w instanceof Tensor ? 'f32' : w.type);
    const ffTypes = 'gate' in ff ? [ff.gate, ff.up, ff.down].map(type) : ['f32'];
    if (new Set([...proj.map((l) => type(l.decodeWeight)), ...ffTypes]).size > 1) return null;
    return {
      normWeight: n.weight, eps: n.eps, wq: a.q_proj.decodeWeight, wk: a.k_proj.decodeWeight, wv: a.v_proj.decodeWeight, wo: a.o_proj.decodeWeight,
      mlp: { normWeight: post.weight, eps: post.eps, ...ff },
    };
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
