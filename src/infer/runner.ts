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
// row and runs each layer as one native call (decodeLayer) into buffers reused across steps.
// Only the last row of a sequence whose chunk reaches its end is normed and projected to logits.
import { PatentGPTError } from '../errors.js';
import { ropeParams, type ModelConfig } from '../models/config.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import { SwiGLUMLP } from '../nn/index.js';
import {
  GEMV_MAX_ROWS, Tensor, add, addLinear, attention, decodeLayer, decodeQkv, embedding, keep, linear, noGrad,
  decodeLogits, pagedAttention, pagedKvStore, rope, scope, type DecodeLayerScratch,
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
  partitions: number;
}

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
  /** The i32 indices of a decode step (tokens, positions, slots, attention index), rewritten each step. */
  readonly #index: Tensor;
  readonly #decode: DecodeBuffers;
  /** Logits of up to GEMV_MAX_ROWS rows, natively and on the host, rewritten each step. */
  readonly #logits: Tensor;
  readonly #hostLogits: Float32Array;
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
    };
    // Room for the indices of a decode step of R sequences of the longest length.
    this.#index = make([R * (5 + Math.ceil(longest / this.blockSize)) + 1], 'i32');
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
    const bs = this.blockSize;
    const cfg = this.config;
    const N = items.reduce((a, it) => a + it.end - it.start, 0);
    // A step of a few rows (decoding) takes the fused layers of decode.ts; every row then reads
    // the cache. Dynamic-base RoPE (a base per sequence) keeps the separate ops.
    const perSeqRope = cfg.ropeScaling?.type === 'dynamic-base';
    const fused = N <= GEMV_MAX_ROWS && !perSeqRope;
    // Otherwise fresh prompts (start 0) go first: they take the fused attention.
    const order = items.map((_, i) => i);
    if (!fused) order.sort((a, b) => Number(items[b]!.start === 0) - Number(items[a]!.start === 0));
    const nFresh = fused ? 0 : order.filter((i) => items[i]!.start === 0).length;
    const nPaged = order.length - nFresh;
    const maxBlocks = Math.max(1, ...items.map((it) => Math.ceil(it.end / bs)));
    // i32 indices, one buffer: tokens, positions, slots (N each), then for the paged sequences
    // cuQ (nPaged + 1), contextLens (nPaged), block tables (nPaged, maxBlocks), then cuFresh.
    const idx = new Int32Array(3 * N + 2 * nPaged + 1 + nPaged * maxBlocks + nFresh + 1);
    const at = { tokens: 0, positions: N, slots: 2 * N, cuQ: 3 * N, contextLens: 3 * N + nPaged + 1, tables: 3 * N + 2 * nPaged + 1 };
    const cuFreshAt = at.tables + nPaged * maxBlocks;
    const lastRow: number[] = new Array<number>(items.length).fill(-1);
    let row = 0;
    let maxPos = 0;
    let maxContext = 0;
    order.forEach((i, j) => {
      const it = items[i]!;
      if (it.end > it.table.blocks.length * bs || it.start >= it.end)
        throw new PatentGPTError('E_INTERNAL', `ModelRunner: item ${i} [${it.start}, ${it.end}) does not fit its ${it.table.blocks.length} blocks`);
      for (let p = it.start; p < it.end; p++, row++) {
        idx[at.tokens + row] = it.tokens[p]!;
        idx[at.positions + row] = p;
        idx[at.slots + row] = it.table.blocks[Math.floor(p / bs)]! * bs + (p % bs);
      }
      maxPos = Math.max(maxPos, it.end - 1);
      if (it.end === it.tokens.length) lastRow[i] = row - 1;
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
    const want = lastRow.filter((r) => r >= 0);
    const { nHeads: H, nKvHeads: Hkv } = cfg;
    const D = this.headDim;
    const maxPartitions = Math.max(1, Math.ceil(maxContext / this.partitionSize));
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
      const pagedIndex = nPaged > 0 ? {
        blockTables: part(at.tables, nPaged * maxBlocks), maxBlocks, cuQ: part(at.cuQ, nPaged + 1),
        contextLens: part(at.contextLens, nPaged), partitionSize: this.partitionSize, maxPartitions,
      } : null;
      const m = this.#model.model;
      const buf = fused ? this.#decodeBuffers(N, maxPartitions) : null;
      const table = m.embed_tokens.weight;
      let x: Tensor; // (N, C)
      if (buf && table.dtype === 'f32') { // the residual in the runner's buffer: rows of the table copied in
        x = buf.x;
        const rowBytes = x.byteLength / N;
        for (let r = 0; r < N; r++)
          x.storage.copyFrom(table.storage, x.byteOffset + r * rowBytes, table.byteOffset + idx[at.tokens + r]! * rowBytes, rowBytes);
      } else x = m.embed_tokens.forward(part(at.tokens, N));
      m.layers.items.forEach((layer, l) => {
        const attn = layer.self_attn;
        const mlp = layer.mlp;
        const kCache = this.#k[l]!, vCache = this.#v[l]!;
        if (buf) {
          const norm = layer.input_layernorm;
          const qkv = {
            x, normWeight: norm.weight, eps: norm.eps, wq: attn.q_proj.weight, wk: attn.k_proj.weight, wv: attn.v_proj.weight,
            positions: pos, slotMapping: slotT, kCache, vCache, rope: rp,
          };
          if (mlp instanceof SwiGLUMLP) {
            const post = layer.post_attention_layernorm;
            decodeLayer({
              ...qkv, wo: attn.o_proj.weight, attention: pagedIndex!,
              mlp: { normWeight: post.weight, eps: post.eps, gate: mlp.gate_proj.weight, up: mlp.up_proj.weight, down: mlp.down_proj.weight },
            }, buf);
            return;
          }
          // Another feed-forward kind: the attention half fused, the feed-forward as its module.
          decodeQkv(qkv, buf);
          pagedAttention(buf.q, kCache, vCache, { ...pagedIndex!, maxContextLen: maxContext, out: buf.o });
          addLinear(x, buf.o.reshape([N, H * D]), attn.o_proj.weight); // x += o_proj(o)
          x = add(x, mlp.forward(layer.post_attention_layernorm.forward(x)));
          return;
        }
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
        if (pagedIndex)
          pagedAttention(q.narrow(nFreshRows, N - nFreshRows), kCache, vCache, {
            ...pagedIndex, maxContextLen: maxContext, out: o.narrow(nFreshRows, N - nFreshRows),
          });
        x = add(x, attn.o_proj.forward(o.reshape([N, H * D])));
        x = add(x, mlp.forward(layer.post_attention_layernorm.forward(x)));
      });
      if (want.length === 0) return null;
      const rows = want.length === N ? x : embedding(Tensor.from(Int32Array.from(want), [want.length], { dtype: 'i32' }), x); // (n, C)
      if (!buf) return linear(m.norm.forward(rows), this.#model.outputWeight).toArray() as Float32Array; // (n, V)
      // A decode step: norm and head in one call, into the runner's buffers (no allocation).
      const out = this.#logits.narrow(0, want.length);
      decodeLogits(out, rows, m.norm, this.#model.outputWeight, buf.h.narrow(0, want.length));
      const host = this.#hostLogits.subarray(0, out.size);
      out.storage.read(host, out.byteOffset);
      return host;
    }));
    const V = cfg.vocabSize;
    const out: (Float32Array | null)[] = lastRow.map(() => null);
    let w = 0;
    lastRow.forEach((r, i) => {
      if (r >= 0) out[i] = logits!.subarray(w * V, ++w * V);
    });
    return out;
  }

  /** The i32 indices of a step in one native buffer: the runner's own, or a new one (in the step's scope) when too small. */
  #writeIndex(idx: Int32Array): Tensor {
    if (idx.length > this.#index.size) return Tensor.from(idx, [idx.length], { dtype: 'i32' });
    this.#index.storage.write(idx, this.#index.byteOffset);
    return this.#index;
  }

  /** The fused path's buffers for N rows: views of the runner's (partition scratch made for the step if longer). */
  #decodeBuffers(N: number, partitions: number): DecodeLayerScratch & { x: Tensor } {
    const b = this.#decode;
    const rows = (t: Tensor): Tensor => t.narrow(0, N);
    const { nHeads: H } = this.config;
    const parts = (t: Tensor, last: number): Tensor => {
      if (partitions > b.partitions) return Tensor.empty([N, H, partitions, last]);
      return t.reshape([-1]).narrow(0, N * H * partitions * last).reshape([N, H, partitions, last]);
    };
    return {
      x: rows(b.x), h: rows(b.h), q: rows(b.q), k: rows(b.k), v: rows(b.v), o: rows(b.o), g: rows(b.g), u: rows(b.u),
      partOut: parts(b.partOut, this.headDim), partStats: parts(b.partStats, 2),
    };
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
