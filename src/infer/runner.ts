// The model runner: one forward step of a LlamaForCausalLM over a mixed batch of prefill chunks
// and decode tokens, with the keys and values kept in a paged cache (one K and one V tensor per
// layer, shape (numBlocks, blockSize, Hkv, D)).
//
// A step packs the new tokens of every scheduled sequence into N rows. Per layer:
//   norm -> q, k, v projections -> RoPE -> store k, v through the slot mapping ->
//   attention -> o projection + residual -> the layer's feed-forward (whatever its kind) + residual.
// Attention: in a large step, sequences whose chunk starts at position 0 (fresh prompts) go first
// and use the fused attention on their own keys/values; the rest (decode rows, later prefill
// chunks, prompts with a cached prefix) read the cache through their block tables
// (pagedAttention). A step of at most GEMV_MAX_ROWS rows (decoding) reads the cache for every
// row and runs each layer as one native call (decodeLayer) into buffers reused across steps,
// with the calls' arguments checked and built once (per set of weight tensors), so that such a
// step costs JavaScript little more than filling the index buffer.
// Only the last row of a sequence whose chunk reaches its end is normed and projected to logits.
import { PatentGPTError } from '../errors.js';
import { ropeParams, type ModelConfig } from '../models/config.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import { SwiGLUMLP } from '../nn/index.js';
import {
  GEMV_MAX_ROWS, Tensor, add, addLinear, attention, decodeLogits, decodeQkv, embedding, keep, linear, noGrad,
  pagedAttention, pagedKvStore, prepareDecodeLayer, prepareDecodeLogits, rope, scope,
} from '../tensor/index.js';
import type { BlockCopy, BlockTable } from './blocks.js';

/** One sequence's share of a step: compute tokens [start, end) of `tokens`. */
export interface StepItem {
  tokens: ArrayLike<number>;
  start: number;
  end: number;
  table: BlockTable;
}

/** The fused decode path's buffers, for GEMV_MAX_ROWS rows and contexts of up to `partitions` attention partitions. */
interface DecodeBuffers {
  x: Tensor;
  h: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  g: Tensor;
  u: Tensor;
  partOut: Tensor;
  partStats: Tensor;
  /** Attention partitions the scratch holds: contexts up to partitions * partitionSize. */
  partitions: number;
  /** Columns of each block-table row in the index buffer: blocks of the longest sequence. */
  tableStride: number;
}

/** Where a decode step's indices sit in the index buffer (i32 elements), for up to GEMV_MAX_ROWS rows and sequences. */
const DECODE_INDEX = (() => {
  const R = GEMV_MAX_ROWS;
  return { tokens: 0, positions: R, slots: 2 * R, cuQ: 3 * R, contextLens: 4 * R + 1, tables: 5 * R + 1 };
})();

export interface RunnerOptions {
  numBlocks: number;
  blockSize: number;
  /** Tokens per attention partition of long contexts (default 512). */
  partitionSize?: number;
  /** Longest sequence served (default: the whole cache); sizes the decode buffers. */
  maxModelLen?: number;
}

export class ModelRunner {
  readonly config: ModelConfig;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly headDim: number;
  readonly partitionSize: number;
  readonly #model: LlamaForCausalLM;
  readonly #k: Tensor[] = [];
  readonly #v: Tensor[] = [];
  /** The i32 indices of a step (tokens, positions, slots, attention index), rewritten each step; its host copy. */
  readonly #index: Tensor;
  readonly #hostIndex: Int32Array;
  readonly #decode: DecodeBuffers;
  /** Logits of up to GEMV_MAX_ROWS rows, natively and on the host, rewritten each step. */
  readonly #logits: Tensor;
  readonly #hostLogits: Float32Array;
  #prepared: { weights: Tensor[]; layers: ((M: number, nseq: number, partitions: number) => void)[]; logits: (M: number) => void } | null = null;
  #closed = false;

  constructor(model: LlamaForCausalLM, opts: RunnerOptions) {
    this.#model = model;
    this.config = model.config;
    this.numBlocks = opts.numBlocks;
    this.blockSize = opts.blockSize;
    this.partitionSize = opts.partitionSize ?? 512;
    const { nLayers, nHeads, nKvHeads, dim } = this.config;
    this.headDim = dim / nHeads;
    for (let i = 0; i < nLayers; i++) {
      this.#k.push(keep(Tensor.empty([this.numBlocks, this.blockSize, nKvHeads, this.headDim])));
      this.#v.push(keep(Tensor.empty([this.numBlocks, this.blockSize, nKvHeads, this.headDim])));
    }
    // The decode path's buffers and the logits of its rows, made once: a decode step allocates nothing.
    const longest = Math.min(opts.maxModelLen ?? Infinity, this.numBlocks * this.blockSize);
    const R = GEMV_MAX_ROWS, D = this.headDim, C = dim, P = Math.max(1, Math.ceil(longest / this.partitionSize));
    const make = (shape: number[], dtype: 'f32' | 'i32' = 'f32'): Tensor => keep(Tensor.empty(shape, { dtype }));
    this.#decode = {
      x: make([R, C]), h: make([R, C]), q: make([R, nHeads, D]), k: make([R, nKvHeads, D]), v: make([R, nKvHeads, D]), o: make([R, nHeads, D]),
      g: make([R, this.config.ffnDim]), u: make([R, this.config.ffnDim]),
      partOut: make([R, nHeads, P, D]), partStats: make([R, nHeads, P, 2]), partitions: P,
      tableStride: Math.ceil(longest / this.blockSize),
    };
    // Room for the indices of a decode step of R sequences of the longest length.
    this.#index = make([DECODE_INDEX.tables + R * this.#decode.tableStride], 'i32');
    this.#hostIndex = new Int32Array(this.#index.size);
    this.#logits = make([R, this.config.vocabSize]);
    this.#hostLogits = new Float32Array(R * this.config.vocabSize);
  }

  /** Bytes held by the K and V caches of every layer. */
  get cacheBytes(): number {
    return this.#k.reduce((a, t) => a + 2 * t.byteLength, 0);
  }

  /** Copies whole blocks in every layer's caches (copy-on-write before a write). */
  copyBlocks(copies: readonly BlockCopy[]): void {
    for (const t of [...this.#k, ...this.#v]) {
      const bytes = t.byteLength / this.numBlocks;
      for (const { src, dst } of copies) t.storage.copyFrom(t.storage, t.byteOffset + dst * bytes, t.byteOffset + src * bytes, bytes);
    }
  }

  /**
   * Runs one step; returns the next-token logits (V) of each item whose chunk ends at the end of
   * its tokens (in item order; null for the others). Block tables must already cover `end`.
   * The arrays are valid until the next step (they may be views of a buffer the runner reuses).
   */
  step(items: readonly StepItem[]): (Float32Array | null)[] {
    if (this.#closed) throw new PatentGPTError('E_DISPOSED', 'ModelRunner: step() after close()');
    const cfg = this.config;
    const N = items.reduce((a, it) => a + it.end - it.start, 0);
    for (const [i, it] of items.entries())
      if (it.end > it.table.blocks.length * this.blockSize || it.start >= it.end)
        throw new PatentGPTError('E_INTERNAL', `ModelRunner: item ${i} [${it.start}, ${it.end}) does not fit its ${it.table.blocks.length} blocks`);
    // A step of a few rows (decoding) takes the fused layers of decode.ts; every row then reads
    // the cache. Dynamic-base RoPE (a base per sequence) keeps the separate ops, as do contexts
    // longer than the decode buffers were made for.
    const longest = Math.max(...items.map((it) => it.end));
    if (N <= GEMV_MAX_ROWS && cfg.ropeScaling?.type !== 'dynamic-base' && this.#model.model.embed_tokens.weight.dtype === 'f32' &&
      Math.ceil(longest / this.blockSize) <= this.#decode.tableStride && Math.ceil(longest / this.partitionSize) <= this.#decode.partitions)
      return this.#decodeStep(items, N);
    return this.#generalStep(items, N);
  }

  /** Per item, its chunk's last row if that row's logits are wanted (the chunk ends the tokens), else -1. */
  static #lastRows(items: readonly StepItem[], order: readonly number[]): number[] {
    const last = new Array<number>(items.length).fill(-1);
    let row = 0;
    for (const i of order) {
      const it = items[i]!;
      row += it.end - it.start;
      if (it.end === it.tokens.length) last[i] = row - 1;
    }
    return last;
  }

  /** Row r of `logits` (n, V) for each item whose last row is r, in item order. */
  #split(logits: Float32Array, lastRow: readonly number[]): (Float32Array | null)[] {
    const V = this.config.vocabSize;
    let w = 0;
    return lastRow.map((r) => (r >= 0 ? logits.subarray(w * V, ++w * V) : null));
  }

  /**
   * A decode step: N <= GEMV_MAX_ROWS rows, each reading the cache, through the fused layers with
   * arguments prepared once (#prepared). The indices go to fixed places in the index buffer
   * (block tables at a fixed row stride) so that only the step's sizes change between steps.
   */
  #decodeStep(items: readonly StepItem[], N: number): (Float32Array | null)[] {
    const bs = this.blockSize;
    const stride = this.#decode.tableStride, at = DECODE_INDEX;
    const idx = this.#hostIndex;
    let row = 0;
    let maxContext = 0;
    idx[at.cuQ] = 0;
    items.forEach((it, k) => {
      const blocks = it.table.blocks;
      for (let p = it.start; p < it.end; p++, row++) {
        idx[at.tokens + row] = it.tokens[p]!;
        idx[at.positions + row] = p;
        idx[at.slots + row] = blocks[Math.floor(p / bs)]! * bs + (p % bs);
      }
      idx[at.cuQ + k + 1] = row;
      idx[at.contextLens + k] = it.end;
      maxContext = Math.max(maxContext, it.end);
      const n = Math.ceil(it.end / bs);
      for (let c = 0; c < n; c++) idx[at.tables + k * stride + c] = blocks[c]!;
    });
    this.#index.storage.write(idx.subarray(0, at.tables + items.length * stride), this.#index.byteOffset);
    const m = this.#model.model;
    const x = this.#decode.x;
    const table = m.embed_tokens.weight;
    const rowBytes = x.byteLength / x.shape[0]!;
    for (let r = 0; r < N; r++)
      x.storage.copyFrom(table.storage, x.byteOffset + r * rowBytes, table.byteOffset + idx[at.tokens + r]! * rowBytes, rowBytes);
    const partitions = Math.max(1, Math.ceil(maxContext / this.partitionSize));
    const plan = this.#plan();
    for (const layer of plan.layers) layer(N, items.length, partitions);
    const lastRow = ModelRunner.#lastRows(items, items.map((_, i) => i));
    const want = lastRow.filter((r) => r >= 0);
    if (want.length === 0) return lastRow.map(() => null);
    if (want.length === N) plan.logits(N); // every row: norm and head in place
    else noGrad(() => scope(() => { // a prompt's chunk: only its last row, gathered first
      const rows = embedding(Tensor.from(Int32Array.from(want), [want.length], { dtype: 'i32' }), x.narrow(0, N));
      decodeLogits(this.#logits.narrow(0, want.length), rows, m.norm, this.#model.outputWeight, this.#decode.h.narrow(0, want.length));
    }));
    const host = this.#hostLogits.subarray(0, want.length * this.config.vocabSize);
    this.#logits.storage.read(host, this.#logits.byteOffset);
    return this.#split(host, lastRow);
  }

  /**
   * The decode step's native calls, prepared for the model's current weights: one per layer and
   * the head. Made again when a weight tensor was replaced (a state dict loaded); in-place
   * updates (an optimizer step) need nothing.
   */
  #plan(): { layers: ((M: number, nseq: number, partitions: number) => void)[]; logits: (M: number) => void } {
    const m = this.#model.model;
    // The tensors the prepared calls hold (a feed-forward of another kind runs as its module).
    const weights = [m.norm.weight, this.#model.outputWeight];
    for (const { input_layernorm: n, self_attn: a, post_attention_layernorm: post, mlp } of m.layers.items) {
      weights.push(n.weight, a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, a.o_proj.weight);
      if (mlp instanceof SwiGLUMLP) weights.push(post.weight, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight);
    }
    const cached = this.#prepared;
    if (cached && cached.weights.length === weights.length && cached.weights.every((w, i) => w === weights[i])) return cached;
    const b = this.#decode;
    const H = this.config.nHeads, R = GEMV_MAX_ROWS, D = this.headDim, at = DECODE_INDEX;
    const ix = (from: number, n: number): Tensor => this.#index.narrow(from, n);
    const positions = ix(at.positions, R), slotMapping = ix(at.slots, R);
    const attention = {
      blockTables: ix(at.tables, R * b.tableStride), maxBlocks: b.tableStride, cuQ: ix(at.cuQ, R + 1),
      contextLens: ix(at.contextLens, R), partitionSize: this.partitionSize, maxPartitions: b.partitions,
    };
    const rp = ropeParams(this.config);
    const layers = m.layers.items.map((layer, l) => {
      const attn = layer.self_attn, mlp = layer.mlp, norm = layer.input_layernorm;
      const qkv = {
        x: b.x, normWeight: norm.weight, eps: norm.eps, wq: attn.q_proj.weight, wk: attn.k_proj.weight, wv: attn.v_proj.weight,
        positions, slotMapping, kCache: this.#k[l]!, vCache: this.#v[l]!, rope: rp,
      };
      if (mlp instanceof SwiGLUMLP) {
        const post = layer.post_attention_layernorm;
        return prepareDecodeLayer({
          ...qkv, wo: attn.o_proj.weight, attention,
          mlp: { normWeight: post.weight, eps: post.eps, gate: mlp.gate_proj.weight, up: mlp.up_proj.weight, down: mlp.down_proj.weight },
        }, b);
      }
      // Another feed-forward kind: the attention half fused, the feed-forward as its module.
      return (M: number, nseq: number, partitions: number): void => noGrad(() => scope(() => {
        const rows = (t: Tensor): Tensor => t.narrow(0, M);
        const x = rows(b.x), q = rows(b.q), o = rows(b.o);
        decodeQkv({ ...qkv, x, positions: positions.narrow(0, M), slotMapping: slotMapping.narrow(0, M) }, { q, k: rows(b.k), v: rows(b.v), h: rows(b.h) });
        pagedAttention(q, qkv.kCache, qkv.vCache, {
          blockTables: attention.blockTables.narrow(0, nseq * b.tableStride), maxBlocks: b.tableStride, cuQ: attention.cuQ.narrow(0, nseq + 1),
          contextLens: attention.contextLens.narrow(0, nseq), partitionSize: this.partitionSize, maxContextLen: partitions * this.partitionSize, out: o,
        });
        addLinear(x, o.reshape([M, H * D]), attn.o_proj.weight); // x += o_proj(o)
        const y = add(x, mlp.forward(layer.post_attention_layernorm.forward(x)));
        x.storage.copyFrom(y.storage, x.byteOffset, y.byteOffset, y.byteLength); // the residual stays in the buffer
      }));
    });
    const logits = prepareDecodeLogits(this.#logits, b.x, m.norm, this.#model.outputWeight, b.h);
    this.#prepared = { weights, layers, logits };
    return this.#prepared;
  }

  /**
   * Any step with the separate ops: fresh prompts (start 0) go first and take the fused attention
   * on their own keys and values; the other rows read the cache through their block tables.
   */
  #generalStep(items: readonly StepItem[], N: number): (Float32Array | null)[] {
    const bs = this.blockSize;
    const cfg = this.config;
    const perSeqRope = cfg.ropeScaling?.type === 'dynamic-base';
    const order = items.map((_, i) => i);
    order.sort((a, b) => Number(items[b]!.start === 0) - Number(items[a]!.start === 0));
    const nFresh = order.filter((i) => items[i]!.start === 0).length;
    const nPaged = order.length - nFresh;
    const maxBlocks = Math.max(1, ...items.map((it) => Math.ceil(it.end / bs)));
    // i32 indices, one buffer: tokens, positions, slots (N each), then for the paged sequences
    // cuQ (nPaged + 1), contextLens (nPaged), block tables (nPaged, maxBlocks), then cuFresh.
    const idx = new Int32Array(3 * N + 2 * nPaged + 1 + nPaged * maxBlocks + nFresh + 1);
    const at = { tokens: 0, positions: N, slots: 2 * N, cuQ: 3 * N, contextLens: 3 * N + nPaged + 1, tables: 3 * N + 2 * nPaged + 1 };
    const cuFreshAt = at.tables + nPaged * maxBlocks;
    let row = 0;
    let maxPos = 0;
    let maxContext = 0;
    order.forEach((i, j) => {
      const it = items[i]!;
      for (let p = it.start; p < it.end; p++, row++) {
        idx[at.tokens + row] = it.tokens[p]!;
        idx[at.positions + row] = p;
        idx[at.slots + row] = it.table.blocks[Math.floor(p / bs)]! * bs + (p % bs);
      }
      maxPos = Math.max(maxPos, it.end - 1);
      if (j < nFresh) idx[cuFreshAt + j + 1] = row;
      else {
        const k = j - nFresh;
        idx[at.cuQ + k + 1] = idx[at.cuQ + k]! + it.end - it.start;
        idx[at.contextLens + k] = it.end;
        maxContext = Math.max(maxContext, it.end);
        const blocks = it.table.blocks;
        for (let c = 0; c < Math.min(blocks.length, maxBlocks); c++) idx[at.tables + k * maxBlocks + c] = blocks[c]!;
      }
    });
    const nFreshRows = nFresh > 0 ? idx[cuFreshAt + nFresh]! : 0;
    const lastRow = ModelRunner.#lastRows(items, order);
    const want = lastRow.filter((r) => r >= 0).sort((a, b) => a - b);
    const { nHeads: H, nKvHeads: Hkv } = cfg;
    const D = this.headDim;
    // RoPE settings: one for the whole step, except with dynamic-base scaling, whose base depends
    // on each sequence's length (as Hugging Face computes it per sequence): then per sequence.
    const rp = ropeParams(cfg, maxPos);
    const segments: { row: number; n: number; rope: ReturnType<typeof ropeParams> }[] = [];
    if (perSeqRope) {
      let r0 = 0;
      for (const i of order) {
        const it = items[i]!;
        segments.push({ row: r0, n: it.end - it.start, rope: ropeParams(cfg, it.end - 1) });
        r0 += it.end - it.start;
      }
    }
    /** RoPE of x (N, heads, D) at the step's positions. */
    const applyRope = (x: Tensor, pos: Tensor): Tensor => {
      if (!perSeqRope) return rope(x, pos, rp);
      const out = Tensor.empty(x.shape);
      const rowBytes = out.byteLength / N;
      for (const sg of segments) {
        const r = rope(x.narrow(sg.row, sg.n), pos.narrow(sg.row, sg.n), sg.rope);
        out.storage.copyFrom(r.storage, out.byteOffset + sg.row * rowBytes, r.byteOffset, r.byteLength);
      }
      return out;
    };
    const logits = noGrad(() => scope(() => {
      const index = this.#writeIndex(idx);
      const part = (from: number, n: number): Tensor => index.narrow(from, n);
      const pos = part(at.positions, N);
      const slotT = part(at.slots, N);
      const m = this.#model.model;
      let x = m.embed_tokens.forward(part(at.tokens, N)); // (N, C)
      m.layers.items.forEach((layer, l) => {
        const attn = layer.self_attn;
        const kCache = this.#k[l]!, vCache = this.#v[l]!;
        const h = layer.input_layernorm.forward(x);
        const q = applyRope(attn.q_proj.forward(h).reshape([N, H, D]), pos); // (N, H, D)
        const k = applyRope(attn.k_proj.forward(h).reshape([N, Hkv, D]), pos); // (N, Hkv, D)
        const v = attn.v_proj.forward(h).reshape([N, Hkv, D]); // (N, Hkv, D)
        pagedKvStore(kCache, vCache, k, v, slotT);
        const o = Tensor.empty([N, H, D]);
        if (nFreshRows > 0) {
          const cuFresh = part(cuFreshAt, nFresh + 1);
          const a = attention(q.narrow(0, nFreshRows), k.narrow(0, nFreshRows), v.narrow(0, nFreshRows), { cuSeqlens: cuFresh, causal: true });
          o.storage.copyFrom(a.storage, o.byteOffset, a.byteOffset, a.byteLength);
        }
        if (nPaged > 0)
          pagedAttention(q.narrow(nFreshRows, N - nFreshRows), kCache, vCache, {
            blockTables: part(at.tables, nPaged * maxBlocks), maxBlocks, cuQ: part(at.cuQ, nPaged + 1), contextLens: part(at.contextLens, nPaged),
            partitionSize: this.partitionSize, maxContextLen: maxContext, out: o.narrow(nFreshRows, N - nFreshRows),
          });
        x = add(x, attn.o_proj.forward(o.reshape([N, H * D])));
        x = add(x, layer.mlp.forward(layer.post_attention_layernorm.forward(x)));
      });
      if (want.length === 0) return null;
      const rows = want.length === N ? x : embedding(Tensor.from(Int32Array.from(want), [want.length], { dtype: 'i32' }), x); // (n, C)
      return linear(m.norm.forward(rows), this.#model.outputWeight).toArray() as Float32Array; // (n, V)
    }));
    if (!logits) return lastRow.map(() => null);
    // Logits are in row order; items are returned in item order.
    const byRow = new Map(want.map((r, w) => [r, w]));
    const V = cfg.vocabSize;
    return lastRow.map((r) => (r >= 0 ? logits.subarray(byRow.get(r)! * V, (byRow.get(r)! + 1) * V) : null));
  }

  /** The i32 indices of a step in one native buffer: the runner's own, or a new one (in the step's scope) when too small. */
  #writeIndex(idx: Int32Array): Tensor {
    if (idx.length > this.#index.size) return Tensor.from(idx, [idx.length], { dtype: 'i32' });
    this.#index.storage.write(idx, this.#index.byteOffset);
    return this.#index;
  }

  /** Frees the caches. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [...this.#k, ...this.#v]) t.dispose();
    const b = this.#decode;
    for (const t of [this.#index, this.#logits, b.x, b.h, b.q, b.k, b.v, b.o, b.g, b.u, b.partOut, b.partStats]) t.dispose();
  }
}
