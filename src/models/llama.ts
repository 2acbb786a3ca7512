// LlamaForCausalLM: the LLaMA-2 decoder over packed batches. A packed batch concatenates
// documents into one row of N tokens; cuSeqlens marks where each document starts, attention
// never crosses a boundary, and positions restart at 0 in every document. This is the same
// computation as Hugging Face's LlamaForCausalLM run on each document separately.
//
// Module tree and parameter names (Hugging Face's):
//   model.embed_tokens.weight (V, C)
//   model.layers.{i}.input_layernorm.weight (C)
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight
//   model.layers.{i}.post_attention_layernorm.weight (C)
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight
//   model.norm.weight (C)
//   lm_head.weight (V, C)            absent when tieEmbeddings: the output layer reads embed_tokens
import { PatentGPTError } from '../errors.js';
import {
  Block, Embedding, Linear, Module, ModuleList, RMSNorm, SwiGLUMLP, zeroInit, type AttentionContext, type FeedForward,
  type ParamInit,
} from '../nn/index.js';
import { Rng, Tensor, add, linear, linearCrossEntropy, scope } from '../tensor/index.js';
import { ropeParams, validateConfig, type ModelConfig } from './config.js';

/** N tokens of one or more documents, packed. */
export interface PackedBatch {
  /** Token ids (N). */
  tokens: Int32Array | Tensor;
  /** Next-token targets (N); -100 adds no loss (document ends, padding, prompts). */
  targets?: Int32Array | Tensor;
  /** Document boundaries (nDocs + 1), from 0 to N. Default: one document. */
  cuSeqlens?: Int32Array | readonly number[] | Tensor;
  /** Position of each token in its document (N). Default: 0, 1, ... restarting at each boundary. */
  positions?: Int32Array | Tensor;
}

export interface LlamaOptions {
  /** Seed of the initial weights (default 0). */
  seed?: number;
  /** Standard deviation of the normal init of matrices (HF initializer_range, default 0.02). */
  initStd?: number;
  /** 'normal' (default) draws weights; 'zeros' leaves matrices at 0 (weights to be loaded). */
  init?: 'normal' | 'zeros';
  /** Builds layer i's feed-forward (default SwiGLUMLP); the SMoE decoder passes its MoE here. */
  feedForward?: (layer: number, cfg: ModelConfig, init: ParamInit) => FeedForward;
  /** Rows per chunk of the fused output layer + loss (default: linearCrossEntropy's). */
  lossChunkSize?: number;
}

/** Embedding, decoder layers and the final norm: Hugging Face's LlamaModel. */
export class LlamaModel extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<Block>;
  readonly norm: RMSNorm;
  constructor(cfg: ModelConfig, init: ParamInit, feedForward: NonNullable<LlamaOptions['feedForward']>) {
    super();
    this.embed_tokens = this.registerModule('embed_tokens', new Embedding(cfg.vocabSize, cfg.dim, init));
    const blocks: Block[] = [];
    for (let i = 0; i < cfg.nLayers; i++) {
      const shape = { dim: cfg.dim, nHeads: cfg.nHeads, nKvHeads: cfg.nKvHeads, normEps: cfg.normEps };
      blocks.push(new Block(shape, feedForward(i, cfg, init), init));
    }
    this.layers = this.registerModule('layers', new ModuleList(blocks));
    this.norm = this.registerModule('norm', new RMSNorm(cfg.dim, cfg.normEps, init));
  }
}

export class LlamaForCausalLM extends Module {
  #config: ModelConfig;
  readonly model: LlamaModel;
  /** Null when the output layer is tied to model.embed_tokens. */
  readonly lm_head: Linear | null;
  readonly lossChunkSize: number | undefined;

  constructor(config: ModelConfig, opts: LlamaOptions = {}) {
    super();
    this.#config = validateConfig(config);
    const init = opts.init === 'zeros' ? zeroInit : normalInit(opts.seed ?? 0, opts.initStd ?? 0.02);
    const ff = opts.feedForward ?? ((_i, c, pi) => new SwiGLUMLP(c.dim, c.ffnDim, pi));
    this.model = this.registerModule('model', new LlamaModel(this.config, init, ff));
    this.lm_head = this.config.tieEmbeddings ? null : this.registerModule('lm_head', new Linear(this.config.dim, this.config.vocabSize, init));
    this.lossChunkSize = opts.lossChunkSize;
  }

  get config(): ModelConfig {
    return this.#config;
  }

  /**
   * Swaps in a config that describes the same parameter shapes: RoPE settings and maxSeqLen
   * for stage-2 context extension, or vocabSize after resizeVocabulary.
   */
  setConfig(config: ModelConfig): void {
    const next = validateConfig(config);
    const now = this.#config;
    const fixed: (keyof ModelConfig)[] = ['dim', 'normEps', 'nLayers', 'nHeads', 'nKvHeads', 'ffnDim', 'tieEmbeddings', 'numExperts', 'topK'];
    for (const k of fixed)
      if (next[k] !== now[k]) throw new PatentGPTError('E_CONFIG', `setConfig: field "${k}" cannot change on a built model (${String(now[k])} -> ${String(next[k])})`);
    if (next.vocabSize !== this.model.embed_tokens.numEmbeddings)
      throw new PatentGPTError('E_CONFIG', `setConfig: field "vocabSize" ${next.vocabSize} does not match the embedding table's ${this.model.embed_tokens.numEmbeddings} rows (use resizeVocabulary)`);
    this.#config = next;
  }

  /** The (V, C) matrix of the output layer (the embedding table when tied). */
  get outputWeight(): Tensor {
    return this.lm_head?.weight ?? this.model.embed_tokens.weight;
  }

  /** Final hidden states after the last norm: (N, C). */
  hidden(batch: PackedBatch): Tensor {
    return scope(() => {
      const p = preparedBatch(batch, this.config);
      const ctx: AttentionContext = { positions: p.positions, cuSeqlens: p.cuSeqlens, rope: p.rope };
      let x = this.model.embed_tokens.forward(p.tokens); // (N, C)
      for (const layer of this.model.layers.items) x = layer.forward(x, ctx);
      return this.model.norm.forward(x);
    });
  }

  /** Logits (N, V) of the next token at every position. */
  forward(batch: PackedBatch): Tensor {
    return scope(() => linear(this.hidden(batch), this.outputWeight));
  }

  /**
   * Mean next-token cross-entropy over the targets that are not -100 (a scalar), plus any
   * auxiliary loss of the feed-forward. The (N, V) logits are never materialised whole.
   */
  loss(batch: PackedBatch): Tensor {
    if (batch.targets === undefined) throw new PatentGPTError('E_ARGUMENT', 'LlamaForCausalLM.loss: the batch has no targets');
    return scope(() => {
      const N = batch.tokens instanceof Tensor ? batch.tokens.size : batch.tokens.length;
      const targets = intTensor(batch.targets!, 'targets', N); // checked before anything is recorded
      const h = this.hidden(batch);
      let loss = linearCrossEntropy(h, this.outputWeight, targets, { ignoreIndex: -100, chunkSize: this.lossChunkSize });
      for (const layer of this.model.layers.items) {
        const aux = layer.mlp.takeAuxLoss?.();
        if (aux) loss = add(loss, aux);
      }
      return loss;
    });
  }
}

function normalInit(seed: number, std: number): ParamInit {
  const rng = new Rng(seed);
  return (shape, kind) => {
    if (kind === 'ones') return Tensor.full(shape, 1);
    const s = rng.nextUint32() * 2 ** 21 + (rng.nextUint32() >>> 11); // 53 bits
    return Tensor.randn(shape, { seed: s, std });
  };
}

// ---- batch preparation ----

interface Prepared {
  tokens: Tensor;
  positions: Tensor;
  cuSeqlens: Tensor;
  rope: { theta: number; posScale: number };
}

function intTensor(v: Int32Array | Tensor | readonly number[], what: string, n?: number): Tensor {
  let t: Tensor;
  if (v instanceof Tensor) {
    if (v.dtype !== 'i32' || v.shape.length !== 1)
      throw new PatentGPTError('E_SHAPE', `batch.${what} must be an i32 vector, got ${v.describe()}`);
    t = v;
  } else {
    const arr = v instanceof Int32Array ? v : Int32Array.from(v);
    t = Tensor.from(arr, [arr.length], { dtype: 'i32' });
  }
  if (n !== undefined && t.size !== n) throw new PatentGPTError('E_SHAPE', `batch.${what} has ${t.size} entries, expected ${n} (one per token)`);
  return t;
}

/** Tensors for tokens, positions and boundaries, with checks that name the field at fault. */
function preparedBatch(batch: PackedBatch, cfg: ModelConfig): Prepared {
  const tokens = intTensor(batch.tokens, 'tokens');
  const N = tokens.size;
  if (N === 0) throw new PatentGPTError('E_SHAPE', 'batch.tokens is empty');
  const ids = batch.tokens instanceof Tensor ? (tokens.toArray() as Int32Array) : (batch.tokens as Int32Array);
  for (let i = 0; i < N; i++)
    if (!(ids[i]! >= 0 && ids[i]! < cfg.vocabSize))
      throw new PatentGPTError('E_ARGUMENT', `batch.tokens[${i}] = ${ids[i]} is outside the vocabulary [0, ${cfg.vocabSize})`);
  const cu = batch.cuSeqlens === undefined ? Int32Array.of(0, N) : batch.cuSeqlens instanceof Tensor
    ? (batch.cuSeqlens.toArray() as Int32Array) : Int32Array.from(batch.cuSeqlens);
  if (cu.length < 2 || cu[0] !== 0 || cu[cu.length - 1] !== N)
    throw new PatentGPTError('E_ARGUMENT', `batch.cuSeqlens must run from 0 to N = ${N}, got [${Array.from(cu.slice(0, 8)).join(', ')}${cu.length > 8 ? ', ...' : ''}]`);
  for (let i = 1; i < cu.length; i++)
    if (cu[i]! < cu[i - 1]!) throw new PatentGPTError('E_ARGUMENT', `batch.cuSeqlens decreases at index ${i} (${cu[i - 1]} -> ${cu[i]})`);
  let positions: Tensor;
  let maxPos = 0;
  if (batch.positions === undefined) {
    const pos = new Int32Array(N);
    for (let d = 0; d + 1 < cu.length; d++) for (let i = cu[d]!; i < cu[d + 1]!; i++) pos[i] = i - cu[d]!;
    for (let d = 0; d + 1 < cu.length; d++) maxPos = Math.max(maxPos, cu[d + 1]! - cu[d]! - 1);
    positions = Tensor.from(pos, [N], { dtype: 'i32' });
  } else {
    positions = intTensor(batch.positions, 'positions', N);
    const pos = positions.toArray() as Int32Array;
    for (let i = 0; i < N; i++) {
      if (pos[i]! < 0) throw new PatentGPTError('E_ARGUMENT', `batch.positions[${i}] = ${pos[i]} is negative`);
      if (pos[i]! > maxPos) maxPos = pos[i]!;
    }
  }
  const cuSeqlens = batch.cuSeqlens instanceof Tensor ? batch.cuSeqlens : Tensor.from(cu, [cu.length], { dtype: 'i32' });
  return { tokens, positions, cuSeqlens, rope: ropeParams(cfg, maxPos) };
}

export interface PackedArrays {
  tokens: Int32Array;
  targets: Int32Array;
  positions: Int32Array;
  cuSeqlens: Int32Array;
}

/** Packs documents (arrays of token ids) into one batch: next-token targets within each document, -100 at its end. */
export function packDocuments(docs: readonly ArrayLike<number>[]): PackedArrays {
  const N = docs.reduce((a, d) => a + d.length, 0);
  const tokens = new Int32Array(N);
  const targets = new Int32Array(N).fill(-100);
  const positions = new Int32Array(N);
  const cuSeqlens = new Int32Array(docs.length + 1);
  let o = 0;
  docs.forEach((d, j) => {
    for (let i = 0; i < d.length; i++) {
      tokens[o + i] = d[i]!;
      positions[o + i] = i;
      if (i + 1 < d.length) targets[o + i] = d[i + 1]!;
    }
    o += d.length;
    cuSeqlens[j + 1] = o;
  });
  return { tokens, targets, positions, cuSeqlens };
}
