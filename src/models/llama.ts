// LlamaForCausalLM: the LLaMA-2 decoder. One decoder forward (LlamaModel.forward) serves
// training and serving alike; the attention metadata says which kernel each layer's attention
// takes (src/nn/metadata.ts):
//   packed: a batch concatenates documents into one row of N tokens; cuSeqlens marks where each
//           document starts, attention never crosses a boundary, and positions restart at 0 in
//           every document. This is the same computation as Hugging Face's LlamaForCausalLM run
//           on each document separately (hidden, forward, loss).
//   paged:  a serving step's new tokens against a paged KV cache (forwardPaged). When a step is
//           a few decode rows and every layer's feed-forward is a plain SwiGLU MLP or a sparse
//           MoE of plain experts, the model runs it through the fused native decode (one call
//           per layer, prepared once per set of weights, into a DecodeWorkspace's buffers)
//           instead of the separate ops.
//
// Module tree and parameter names (Hugging Face's):
//   model.embed_tokens.weight (V, C)
//   model.layers.{i}.input_layernorm.weight (C)
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight
//   model.layers.{i}.post_attention_layernorm.weight (C)
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight      ('mlp' is LlamaOptions.feedForwardName)
//   model.layers.{i}.block_sparse_moe.gate.weight (E, C)                 numExperts > 1 (Mixtral's names)
//   model.layers.{i}.block_sparse_moe.experts.{e}.{w1,w3,w2}.weight      (F, C), (F, C), (C, F)
//   model.norm.weight (C)
//   lm_head.weight (V, C)            absent when tieEmbeddings: the output layer reads embed_tokens
import { PatentGPTError } from '../errors.js';
import {
  Block, Embedding, ForwardRecorder, Linear, Module, ModuleList, RMSNorm, SparseMoE, SwiGLUMLP, prefixContext, zeroInit,
  type AttentionMetadata, type DecodeLayerWeights, type FeedForward, type ForwardContext, type PackedAttentionMetadata,
  type PagedAttentionMetadata, type ParamInit, type RopeSetting,
} from '../nn/index.js';
import {
  GEMV_MAX_ROWS, Rng, Tensor, add, copyRows, decodeMoeScratchSize, dequantize, gatherRows, isMoeWeights, keep, linear, linearCrossEntropy, moeExpertTensors,
  noGrad, prepareDecodeLayer, prepareDecodeLogits, prepareGatherRows, quantLinear, scope, type DecodeWeight, type Device, type QuantizedMatrix,
} from '../tensor/index.js';
import { isMoE, ropeParams, validateConfig, type ModelConfig } from './config.js';
import { checkModelFits } from './limits.js';

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
  /** Module name of the feed-forward in every layer (default 'mlp'; Mixtral's is 'block_sparse_moe'). */
  feedForwardName?: string;
  /** Rows per chunk of the fused output layer + loss (default: linearCrossEntropy's). */
  lossChunkSize?: number;
}

/** Embedding, decoder layers and the final norm: Hugging Face's LlamaModel. */
export class LlamaModel extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<Block>;
  readonly norm: RMSNorm;
  constructor(cfg: ModelConfig, init: ParamInit, feedForward: NonNullable<LlamaOptions['feedForward']>, feedForwardName?: string) {
    super();
    this.embed_tokens = this.registerModule('embed_tokens', new Embedding(cfg.vocabSize, cfg.dim, init));
    const blocks: Block[] = [];
    for (let i = 0; i < cfg.nLayers; i++) {
      const shape = { dim: cfg.dim, nHeads: cfg.nHeads, nKvHeads: cfg.nKvHeads, normEps: cfg.normEps };
      blocks.push(new Block(shape, feedForward(i, cfg, init), init, { feedForwardName }));
    }
    this.layers = this.registerModule('layers', new ModuleList(blocks));
    this.norm = this.registerModule('norm', new RMSNorm(cfg.dim, cfg.normEps, init));
  }

  /**
   * The one decoder forward: token ids i32 (N) -> the residual stream after the last layer
   * (N, C), before the final norm; with outRows (i32, R) only those rows (R, C), which the last
   * layer computes alone past its attention. Layer i reports to ctx under `layers.i.`.
   */
  forward(tokens: Tensor, meta: AttentionMetadata, ctx: ForwardContext, outRows?: Tensor): Tensor {
    let x = this.embed_tokens.forward(tokens); // (N, C)
    // A scope per layer: what a layer made and backward does not read (and, without gradients,
    // all of it) is freed when the layer ends instead of at the end of the whole forward.
    const last = this.layers.length - 1;
    this.layers.items.forEach((layer, i) => (x = scope(() => layer.forward(x, meta, prefixContext(ctx, `layers.${i}.`), i, i === last ? outRows : undefined))));
    return x;
  }
}

/** One serving step for LlamaForCausalLM.forwardPaged. */
export interface PagedStep {
  /** i32: the token of each of the step's rows (attention.rows of them) at its start. */
  tokens: Tensor;
  attention: PagedAttentionMetadata;
  /** i32: the rows whose next-token logits are wanted, ascending, at its start (logitRowCount of them). */
  logitRows: Tensor;
  logitRowCount: number;
  /** (>= logitRowCount, V): receives those logits, in the order of logitRows, at its start. */
  logits: Tensor;
  /**
   * (>= logitRowCount, C), optional: receives the final-normed hidden rows those logits were
   * projected from, in the same order (what a score head on the trunk reads, e.g. PPO's value head).
   */
  hidden?: Tensor | null;
  /**
   * Buffers for the fused decode path (createDecodeWorkspace), offered with metadata whose
   * tensors stay the same from step to step (the calls are prepared for them once); absent,
   * the step runs the separate ops.
   */
  workspace?: DecodeWorkspace | null;
}

/** The fused decode path's prepared calls, for one set of weights and one step's tensors. */
interface DecodePlan {
  generation: number;
  /** The weights the calls hold. */
  weights: unknown[];
  /** The step's tensors and settings the calls hold. */
  stepKey: StepKey;
  step: PagedStep;
  embed: (n: number) => void;
  layers: ((M: number, nseq: number, partitions: number) => void)[];
  logits: (n: number) => void;
  pick: (n: number) => void;
  pickedLogits: (n: number) => void;
}

/**
 * Scratch of the fused decode path for up to GEMV_MAX_ROWS rows with contexts of up to
 * `partitions` attention partitions, and the calls prepared over it. Made by
 * LlamaForCausalLM.createDecodeWorkspace; the caller owns it (dispose()).
 */
export class DecodeWorkspace {
  readonly rows = GEMV_MAX_ROWS;
  readonly partitions: number;
  /** @internal (R, C) residual, (R, C) normed, (R, H, D) q, (R, Hkv, D) k and v, (R, H, D) o, (R, F) g and u. */
  readonly buffers: { x: Tensor; h: Tensor; q: Tensor; k: Tensor; v: Tensor; o: Tensor; g: Tensor; u: Tensor; partOut: Tensor; partStats: Tensor; picked: Tensor };
  /** @internal the calls prepared for the latest weights and step. */
  plan: DecodePlan | null | 'unfusable' = null;
  /** @internal the parameter generation for which the model was found unfusable. */
  unfusableAt = -1;
  /** Views over the buffers (and a step's tensors) that the current plan holds. */
  #views: Tensor[] = [];

  /** @internal */
  constructor(cfg: ModelConfig, partitions: number, device: Device) {
    this.partitions = partitions;
    const R = this.rows, C = cfg.dim, H = cfg.nHeads, Hkv = cfg.nKvHeads, D = cfg.dim / cfg.nHeads, F = cfg.ffnDim, P = partitions;
    const make = (shape: number[]): Tensor => keep(Tensor.empty(shape, { device }));
    this.buffers = {
      x: make([R, C]), h: make([R, C]), q: make([R, H, D]), k: make([R, Hkv, D]), v: make([R, Hkv, D]), o: make([R, H, D]),
      g: make([R, F]), u: make([R, F]), partOut: make([R, H, P, D]), partStats: make([R, H, P, 2]), picked: make([R, C]),
    };
  }

  /** @internal the buffers' first R rows (the buffers themselves for R = rows); views are freed with the next plan. */
  rowsView(R: number): DecodeWorkspace['buffers'] {
    for (const t of this.#views) t.dispose();
    this.#views = [];
    if (R === this.rows) return this.buffers;
    const out = {} as Record<string, Tensor>;
    for (const [name, t] of Object.entries(this.buffers)) out[name] = this.keepView(t.narrow(0, R));
    return out as DecodeWorkspace['buffers'];
  }

  /** @internal holds a view until the next plan or dispose(). */
  keepView(t: Tensor): Tensor {
    this.#views.push(keep(t));
    return t;
  }

  dispose(): void {
    for (const t of [...this.#views, ...Object.values(this.buffers)]) t.dispose();
    this.#views = [];
    this.plan = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
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
    checkModelFits(this.#config, 'LlamaForCausalLM'); // a clear error before any allocation, not a RangeError
    const init = opts.init === 'zeros' ? zeroInit : normalInit(opts.seed ?? 0, opts.initStd ?? 0.02);
    const moe = isMoE(this.#config) && !opts.feedForward;
    const ff = opts.feedForward ?? (moe ? sparseMoE : (_i, c, pi) => new SwiGLUMLP(c.dim, c.ffnDim, pi));
    const ffName = opts.feedForwardName ?? (moe ? 'block_sparse_moe' : undefined);
    this.model = this.registerModule('model', new LlamaModel(this.config, init, ff, ffName));
    this.lm_head = this.config.tieEmbeddings ? null : this.registerModule('lm_head', new Linear(this.config.dim, this.config.vocabSize, init));
    this.lossChunkSize = opts.lossChunkSize;
    this.plainFeedForward = !moe && !opts.feedForward;
  }

  /**
   * Whether the layers hold the model's own SwiGLU MLPs, which report nothing to a forward's
   * recorder: a loss may then ask hidden() for its rows alone (a sparse or custom feed-forward
   * must see every token, for what it reports).
   */
  readonly plainFeedForward: boolean;

  get config(): ModelConfig {
    return this.#config;
  }

  /** Where the parameters live (Module.to moves them). */
  get device(): Device {
    return this.model.embed_tokens.weight.device;
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

  /**
   * The (V, C) matrix of the output layer (the embedding table when tied). A quantized head
   * (Linear.setQuantized) gives its dequantized values, made once on first use (for scoring;
   * serving reads the blocks).
   */
  get outputWeight(): Tensor {
    const q = this.lm_head?.quantized;
    if (q) return (this.#dequantizedHead ??= keep(dequantize(q)));
    return this.lm_head?.weight ?? this.model.embed_tokens.weight;
  }
  #dequantizedHead: Tensor | null = null;
  #tiedHead: QuantizedMatrix | null = null;

  /**
   * A tied model's output layer as quantized blocks (the model owns them; null drops them): the
   * head then reads them, as llama.cpp reads its quantized token_embd for the output, while the
   * embedding lookup keeps the f32 table (which should hold the blocks' values).
   */
  setQuantizedTiedHead(q: QuantizedMatrix | null): void {
    if (q && (!this.config.tieEmbeddings || q.rows !== this.config.vocabSize || q.cols !== this.config.dim))
      throw new PatentGPTError('E_ARGUMENT', `setQuantizedTiedHead: ${q.describe()} is not the tied (${this.config.vocabSize}, ${this.config.dim}) head of this model`);
    this.#tiedHead?.dispose();
    this.#tiedHead = q;
  }

  /** The head's quantized blocks (a quantized lm_head, or a tied model's setQuantizedTiedHead), or null. */
  get #quantizedHead(): QuantizedMatrix | null {
    return this.lm_head?.quantized ?? (this.lm_head ? null : this.#tiedHead);
  }

  /** What the fused decode path reads for the head: the f32 matrix or the quantized blocks. */
  get #headWeight(): DecodeWeight {
    return this.#quantizedHead ?? this.lm_head?.weight ?? this.model.embed_tokens.weight;
  }

  protected override disposeBuffers(): void {
    this.#dequantizedHead?.dispose();
    this.#dequantizedHead = null;
    this.#tiedHead?.dispose();
    this.#tiedHead = null;
  }

  /**
   * Final hidden states after the last norm: (N, C), or with `rows` (i32, R) those rows alone
   * (R, C), equal to gathering them from the full result but cheaper: the last layer computes
   * the other rows' keys and values only (a loss that reads some positions: PPO's responses, a
   * reward model's last tokens). What the feed-forward reports goes to `ctx` (the caller owns
   * the recorder); without one it is dropped; with `rows` the last layer's reports cover those rows.
   */
  hidden(batch: PackedBatch, ctx?: ForwardContext, rows?: Tensor): Tensor {
    const own = ctx ? null : new ForwardRecorder();
    try {
      return scope(() => {
        const p = preparedBatch(batch, this.config, this.device);
        const meta: PackedAttentionMetadata = { kind: 'packed', positions: p.positions, cuSeqlens: p.cuSeqlens, rope: p.rope };
        return this.model.norm.forward(this.model.forward(p.tokens, meta, ctx ?? own!, rows));
      });
    } finally {
      own?.dispose();
    }
  }

  /** Logits (N, V) of the next token at every position. */
  forward(batch: PackedBatch): Tensor {
    return scope(() => linear(this.hidden(batch), this.outputWeight));
  }

  /**
   * Mean next-token cross-entropy over the targets that are not -100 (a scalar), plus every
   * auxiliary loss the feed-forward reports. The (N, V) logits are never materialised whole.
   * Pass a ForwardRecorder to read the reported metrics and auxiliary losses (then dispose it).
   */
  loss(batch: PackedBatch, ctx?: ForwardRecorder): Tensor {
    if (batch.targets === undefined) throw new PatentGPTError('E_ARGUMENT', 'LlamaForCausalLM.loss: the batch has no targets');
    const rec = ctx ?? new ForwardRecorder();
    try {
      return scope(() => {
        const N = batch.tokens instanceof Tensor ? batch.tokens.size : batch.tokens.length;
        let targets = onDevice(intTensor(batch.targets!, 'targets', N), this.device); // checked before anything is recorded
        // Host targets that ignore a tenth of the positions or more (SFT's prompts) on a model
        // of plain SwiGLU MLPs: the last layer runs past attention for the scored rows alone (a
        // sparse or custom feed-forward runs whole, so what it reports, a load-balancing loss,
        // still sees every token; packed pretraining, with one ignored position a document,
        // gains too little to gather).
        const scored = batch.targets instanceof Int32Array && this.plainFeedForward ? scoredRows(batch.targets) : null;
        let rows: Tensor | undefined;
        if (scored && scored.length > 0 && scored.length <= 0.9 * N) {
          rows = Tensor.from(scored, [scored.length], { dtype: 'i32', device: this.device });
          targets = Tensor.from(scored.map((i) => (batch.targets as Int32Array)[i]!), [scored.length], { dtype: 'i32', device: this.device });
        }
        const h = this.hidden(batch, rec, rows);
        let loss = linearCrossEntropy(h, this.outputWeight, targets, { ignoreIndex: -100, chunkSize: this.lossChunkSize });
        for (const aux of rec.auxLosses.values()) loss = add(loss, aux);
        return loss;
      });
    } finally {
      if (!ctx) rec.dispose();
    }
  }

  /**
   * loss() with what the forward reported: metrics by name (layer i's under `layers.i.`), each
   * auxiliary loss's value among them. For a training stage's { loss, metrics }.
   */
  lossWithMetrics(batch: PackedBatch): { loss: Tensor; metrics: Record<string, number> } {
    const rec = new ForwardRecorder();
    try {
      const loss = this.loss(batch, rec);
      const metrics: Record<string, number> = Object.fromEntries(rec.metrics);
      for (const [name, t] of rec.auxLosses) metrics[name] = t.item();
      return { loss, metrics };
    } finally {
      rec.dispose();
    }
  }

  /**
   * Buffers for the fused decode path of forwardPaged, for contexts up to `maxContextLen`
   * tokens in partitions of `partitionSize`. The caller owns it (dispose()).
   */
  createDecodeWorkspace(opts: { maxContextLen: number; partitionSize: number }): DecodeWorkspace {
    const partitions = Math.max(1, Math.ceil(opts.maxContextLen / opts.partitionSize));
    return new DecodeWorkspace(this.config, partitions, this.device);
  }

  /**
   * A serving step (inference only): the decoder forward over the step's rows with the paged
   * KV cache, the new keys and values stored in it, then the next-token logits of the wanted
   * rows written into step.logits. The fused decode path runs it when it applies (a workspace,
   * at most GEMV_MAX_ROWS rows all reading the cache, one RoPE setting, contexts within the
   * workspace, every feed-forward a plain SwiGLU MLP or sparse MoE, weights on the CPU).
   */
  forwardPaged(step: PagedStep): void {
    const plan = this.#fusedPlan(step);
    if (plan) return this.#fusedStep(step, plan);
    noGrad(() => scope(() => {
      const rec = new ForwardRecorder(); // a serving step has no loss to add to
      try {
        const N = step.attention.rows;
        const x = this.model.forward(head(step.tokens, N), step.attention, rec); // (N, C)
        const n = step.logitRowCount;
        if (n === 0) return;
        const rows = n === N ? x : gatherRows(x, head(step.logitRows, n)); // (n, C)
        const h = this.model.norm.forward(rows), q = this.#quantizedHead;
        copyRows(step.logits, 0, q ? quantLinear(h, q) : linear(h, this.outputWeight), 0, n);
        if (step.hidden) copyRows(step.hidden, 0, h, 0, n);
      } finally {
        rec.dispose();
      }
    }));
  }

  #fusedStep(step: PagedStep, plan: DecodePlan): void {
    const meta = step.attention, c = meta.cached!;
    const M = meta.rows, n = step.logitRowCount;
    plan.embed(M);
    const partitions = Math.max(1, Math.ceil(c.maxContextLen / c.partitionSize));
    for (const layer of plan.layers) layer(M, c.seqs, partitions);
    if (n === 0) return;
    if (n === M) plan.logits(M); // every row: norm and head in place
    else {
      plan.pick(n); // a prompt chunk's last row: gathered first
      plan.pickedLogits(n);
    }
    // decodeLogits leaves the normed rows of its logits in the workspace's h
    if (step.hidden) copyRows(step.hidden, 0, step.workspace!.buffers.h, 0, n);
  }

  /** The fused decode path's calls for this step, or null when the step takes the separate ops. */
  #fusedPlan(step: PagedStep): DecodePlan | null {
    const ws = step.workspace, meta = step.attention, c = meta.cached;
    if (!ws || meta.fresh || !c || Array.isArray(meta.rope) || meta.rows > stepRows(step, ws) || c.seqs > c.contextLens.size) return null;
    if (Math.ceil(c.maxContextLen / c.partitionSize) > ws.partitions) return null;
    const gen = Module.parameterGeneration;
    const plan = ws.plan;
    if (plan === 'unfusable' && ws.unfusableAt === gen) return null;
    // A decode step of the same runner and weights: nothing to look at but the step's fields.
    const current = plan && plan !== 'unfusable' && plan.step === step && sameStep(plan.stepKey, step) ? plan : null;
    if (current && current.generation === gen) return current;
    // Weights may have been replaced (a state dict loaded) or the step's tensors changed: look again.
    const layers = this.model.layers.items.map((l) => l.decodeWeights());
    if (layers.some((w) => w === null) || this.device !== 'cpu') {
      ws.plan = 'unfusable';
      ws.unfusableAt = gen;
      return null;
    }
    const weights: DecodeWeight[] = [this.model.embed_tokens.weight, this.model.norm.weight, this.#headWeight];
    for (const w of layers as DecodeLayerWeights[]) {
      weights.push(w.normWeight, w.wq, w.wk, w.wv, w.wo, w.mlp.normWeight);
      const f = w.mlp;
      if (isMoeWeights(f)) weights.push(f.router, ...moeExpertTensors(f));
      else weights.push(f.gate, f.up, f.down);
    }
    if (current && current.weights.length === weights.length && current.weights.every((w, i) => w === weights[i])) {
      current.generation = gen;
      return current;
    }
    ws.plan = this.#prepare(step, ws, layers as DecodeLayerWeights[], weights, gen);
    return ws.plan;
  }

  #prepare(step: PagedStep, ws: DecodeWorkspace, layerWeights: DecodeLayerWeights[], weights: unknown[], generation: number): DecodePlan {
    const meta = step.attention, c = meta.cached!;
    // The calls run on the first R rows of the buffers: as many as the step's tensors hold.
    const R = stepRows(step, ws);
    const b = ws.rowsView(R);
    const logits = step.logits.shape[0] === R ? step.logits : ws.keepView(step.logits.narrow(0, R));
    const attention = {
      blockTables: c.blockTables, maxBlocks: c.maxBlocks, cuQ: c.cuQ, contextLens: c.contextLens, partitionSize: c.partitionSize,
      maxPartitions: ws.partitions,
    };
    // A MoE feed-forward's scratch for R rows, the largest any layer needs, shared by the layers
    // (they run one after another); freed with the plan's views.
    let floats = 0, ints = 0;
    for (const { mlp: f } of layerWeights) {
      if (!isMoeWeights(f)) continue;
      const need = decodeMoeScratchSize(R, this.config.dim, f.experts[0]!.w1.shape[0]!, f.experts.length, f.topK, f.shared.length);
      floats = Math.max(floats, need.floats);
      ints = Math.max(ints, need.ints);
    }
    const moe = floats === 0 ? undefined : {
      scratch: ws.keepView(Tensor.empty([floats], { device: this.device })),
      index: ws.keepView(Tensor.empty([ints], { dtype: 'i32', device: this.device })),
    };
    const layers = layerWeights.map((w, l) => prepareDecodeLayer({
      x: b.x, normWeight: w.normWeight, eps: w.eps, wq: w.wq, wk: w.wk, wv: w.wv, positions: meta.positions, slotMapping: meta.slotMapping,
      kCache: meta.cache.k[l]!, vCache: meta.cache.v[l]!, rope: meta.rope as RopeSetting, wo: w.wo, attention, mlp: w.mlp,
    }, { ...b, moe }));
    const norm = this.model.norm;
    return {
      generation, weights, stepKey: stepKey(step), step, layers,
      embed: prepareGatherRows(b.x, this.model.embed_tokens.weight, step.tokens),
      logits: prepareDecodeLogits(logits, b.x, norm, this.#headWeight, b.h),
      pick: prepareGatherRows(b.picked, b.x, step.logitRows),
      pickedLogits: prepareDecodeLogits(logits, b.picked, norm, this.#headWeight, b.h),
    };
  }
}

/** Rows the fused path can run for this step: what the workspace and every per-row tensor of the step hold. */
function stepRows(step: PagedStep, ws: DecodeWorkspace): number {
  const m = step.attention;
  return Math.min(ws.rows, step.tokens.size, step.logitRows.size, step.logits.shape[0]!, m.positions.size, m.slotMapping.size);
}

/** The first n entries (rows) of t. */
function head(t: Tensor, n: number): Tensor {
  return t.shape[0] === n ? t : t.narrow(0, n);
}

/** What prepared decode calls hold of a step (the counts change freely). */
interface StepKey {
  tokens: Tensor; logitRows: Tensor; logits: Tensor; positions: Tensor; slotMapping: Tensor; blockTables: Tensor; maxBlocks: number;
  cuQ: Tensor; contextLens: Tensor; partitionSize: number; theta: number; posScale: number; k: readonly Tensor[]; v: readonly Tensor[];
}

function stepKey(step: PagedStep): StepKey {
  const m = step.attention, c = m.cached!, r = m.rope as RopeSetting;
  return {
    tokens: step.tokens, logitRows: step.logitRows, logits: step.logits, positions: m.positions, slotMapping: m.slotMapping,
    blockTables: c.blockTables, maxBlocks: c.maxBlocks, cuQ: c.cuQ, contextLens: c.contextLens, partitionSize: c.partitionSize,
    theta: r.theta, posScale: r.posScale, k: m.cache.k, v: m.cache.v,
  };
}

/** Whether the step still holds what the calls were prepared with (no allocation: checked every decode step). */
function sameStep(k: StepKey, step: PagedStep): boolean {
  const m = step.attention, c = m.cached!, r = m.rope as RopeSetting;
  return k.tokens === step.tokens && k.logitRows === step.logitRows && k.logits === step.logits && k.positions === m.positions &&
    k.slotMapping === m.slotMapping && k.blockTables === c.blockTables && k.maxBlocks === c.maxBlocks && k.cuQ === c.cuQ &&
    k.contextLens === c.contextLens && k.partitionSize === c.partitionSize && k.theta === r.theta && k.posScale === r.posScale &&
    k.k === m.cache.k && k.v === m.cache.v;
}

/**
 * Layer i's Mixtral feed-forward. The aux and z-loss coefficients are split over the layers, so
 * the model adds their mean, as transformers' load_balancing_loss_func averages over layers.
 */
function sparseMoE(i: number, c: ModelConfig, init: ParamInit): FeedForward {
  return new SparseMoE({
    dim: c.dim, hiddenDim: c.ffnDim, numExperts: c.numExperts, topK: c.topK, numSharedExperts: c.numSharedExperts ?? 0,
    auxLossWeight: (c.routerAuxLossCoef ?? 0) / c.nLayers, zLossWeight: (c.routerZLossCoef ?? 0) / c.nLayers,
    jitter: c.routerJitter ?? 0, seed: i,
  }, init);
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

/** The positions whose target is not -100, ascending. */
function scoredRows(targets: Int32Array): Int32Array {
  let n = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] !== -100) n++;
  const rows = new Int32Array(n);
  for (let i = 0, j = 0; i < targets.length; i++) if (targets[i] !== -100) rows[j++] = i;
  return rows;
}

/** `t` on `device`: itself where it already is, else a copy the current scope owns. */
function onDevice(t: Tensor, device: Device): Tensor {
  return t.device === device ? t : t.to(device);
}

/**
 * Tensors for tokens, positions and boundaries on the model's device, with checks (on the host)
 * that name the field at fault.
 */
function preparedBatch(batch: PackedBatch, cfg: ModelConfig, device: Device): Prepared {
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
  return { tokens: onDevice(tokens, device), positions: onDevice(positions, device), cuSeqlens: onDevice(cuSeqlens, device), rope: ropeParams(cfg, maxPos) };
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
