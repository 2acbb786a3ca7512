// The model runner: one forward step of a LlamaForCausalLM over a mixed batch of prefill chunks
// and decode tokens, with the keys and values kept in a paged cache (one K and one V tensor per
// layer, shape (numBlocks, blockSize, Hkv, D)).
//
// A step packs the new tokens of every scheduled sequence into N rows. Per layer:
//   norm -> q, k, v projections -> RoPE -> store k, v through the slot mapping ->
//   attention -> o projection + residual -> the layer's feed-forward (whatever its kind) + residual.
// Attention: sequences whose chunk starts at position 0 (fresh prompts) go first and use the
// fused attention on their own keys/values; the rest (decode rows, later prefill chunks, prompts
// with a cached prefix) read the cache through their block tables (pagedAttention).
// Only the last row of a sequence whose chunk reaches its end is normed and projected to logits.
import { PatentGPTError } from '../errors.js';
import { ropeParams, type ModelConfig } from '../models/config.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import { SwiGLUMLP } from '../nn/index.js';
import {
  GEMV_MAX_ROWS, Tensor, add, addLinear, attention, decodeQkv, decodeSwigluMlp, embedding, keep, linear, noGrad,
  pagedAttention, pagedKvStore, rope, scope,
} from '../tensor/index.js';
import type { BlockCopy, BlockTable } from './blocks.js';

/** One sequence's share of a step: compute tokens [start, end) of `tokens`. */
export interface StepItem {
  tokens: ArrayLike<number>;
  start: number;
  end: number;
  table: BlockTable;
}

export interface RunnerOptions {
  numBlocks: number;
  blockSize: number;
  /** Tokens per attention partition of long contexts (default 512). */
  partitionSize?: number;
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
   */
  step(items: readonly StepItem[]): (Float32Array | null)[] {
    if (this.#closed) throw new PatentGPTError('E_DISPOSED', 'ModelRunner: step() after close()');
    const bs = this.blockSize;
    // Fresh prompts (start 0) first: they take the fused attention.
    const order = items.map((_, i) => i).sort((a, b) => Number(items[b]!.start === 0) - Number(items[a]!.start === 0));
    const nFresh = order.filter((i) => items[i]!.start === 0).length;
    const N = items.reduce((a, it) => a + it.end - it.start, 0);
    const tokens = new Int32Array(N);
    const positions = new Int32Array(N);
    const slots = new Int32Array(N);
    const cuFresh = [0];
    const nPaged = order.length - nFresh;
    const maxBlocks = Math.max(1, ...items.map((it) => Math.ceil(it.end / bs)));
    const tables = new Int32Array(nPaged * maxBlocks);
    const cuQ = new Int32Array(nPaged + 1);
    const contextLens = new Int32Array(nPaged);
    const lastRow: number[] = new Array<number>(items.length).fill(-1);
    let row = 0;
    let maxPos = 0;
    order.forEach((i, j) => {
      const it = items[i]!;
      if (it.end > it.table.blocks.length * bs || it.start >= it.end)
        throw new PatentGPTError('E_INTERNAL', `ModelRunner: item ${i} [${it.start}, ${it.end}) does not fit its ${it.table.blocks.length} blocks`);
      for (let p = it.start; p < it.end; p++, row++) {
        tokens[row] = it.tokens[p]!;
        positions[row] = p;
        slots[row] = it.table.blocks[Math.floor(p / bs)]! * bs + (p % bs);
      }
      maxPos = Math.max(maxPos, it.end - 1);
      if (it.end === it.tokens.length) lastRow[i] = row - 1;
      if (j < nFresh) cuFresh.push(row);
      else {
        const k = j - nFresh;
        cuQ[k + 1] = cuQ[k]! + it.end - it.start;
        contextLens[k] = it.end;
        it.table.blocks.forEach((b, c) => {
          if (c < maxBlocks) tables[k * maxBlocks + c] = b;
        });
      }
    });
    const nFreshRows = cuFresh[cuFresh.length - 1]!;
    const want = lastRow.filter((r) => r >= 0);
    const cfg = this.config;
    const { nHeads: H, nKvHeads: Hkv } = cfg;
    const D = this.headDim;
    // RoPE settings: one for the whole step, except with dynamic-base scaling, whose base depends
    // on each sequence's length (as Hugging Face computes it per sequence): then per sequence.
    const rp = ropeParams(cfg, maxPos);
    const perSeqRope = cfg.ropeScaling?.type === 'dynamic-base';
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
    // A step of a few rows (decoding) takes the fused pieces of decode.ts: each streams its
    // weights once through the GEMV and wakes the thread pool once, into buffers made per step.
    const fused = N <= GEMV_MAX_ROWS && !perSeqRope;
    const logits = noGrad(() => scope(() => {
      const pos = Tensor.from(positions, [N], { dtype: 'i32' });
      const slotT = Tensor.from(slots, [N], { dtype: 'i32' });
      const cuFreshT = Tensor.from(Int32Array.from(cuFresh), [cuFresh.length], { dtype: 'i32' });
      const pagedIndex = nPaged > 0 ? {
        blockTables: Tensor.from(tables, [tables.length], { dtype: 'i32' }), maxBlocks,
        cuQ: Tensor.from(cuQ, [cuQ.length], { dtype: 'i32' }), contextLens: Tensor.from(contextLens, [nPaged], { dtype: 'i32' }),
      } : null;
      const m = this.#model.model;
      let x = m.embed_tokens.forward(Tensor.from(tokens, [N], { dtype: 'i32' })); // (N, C)
      const buf = fused ? {
        q: Tensor.empty([N, H, D]), k: Tensor.empty([N, Hkv, D]), v: Tensor.empty([N, Hkv, D]), h: Tensor.empty([N, cfg.dim]),
        g: Tensor.empty([N, cfg.ffnDim]), u: Tensor.empty([N, cfg.ffnDim]),
      } : null;
      m.layers.items.forEach((layer, l) => {
        const attn = layer.self_attn;
        let q: Tensor, k: Tensor, v: Tensor;
        if (buf) {
          const norm = layer.input_layernorm;
          decodeQkv({
            x, normWeight: norm.weight, eps: norm.eps, wq: attn.q_proj.weight, wk: attn.k_proj.weight, wv: attn.v_proj.weight,
            positions: pos, slotMapping: slotT, kCache: this.#k[l]!, vCache: this.#v[l]!, rope: rp,
          }, buf);
          ({ q, k, v } = buf);
        } else {
          const h = layer.input_layernorm.forward(x);
          q = applyRope(attn.q_proj.forward(h).reshape([N, H, D]), pos); // (N, H, D)
          k = applyRope(attn.k_proj.forward(h).reshape([N, Hkv, D]), pos); // (N, Hkv, D)
          v = attn.v_proj.forward(h).reshape([N, Hkv, D]); // (N, Hkv, D)
          pagedKvStore(this.#k[l]!, this.#v[l]!, k, v, slotT);
        }
        const o = Tensor.empty([N, H, D]);
        if (nFreshRows > 0) {
          const a = attention(q.narrow(0, nFreshRows), k.narrow(0, nFreshRows), v.narrow(0, nFreshRows), { cuSeqlens: cuFreshT, causal: true });
          o.storage.copyFrom(a.storage, o.byteOffset, a.byteOffset, a.byteLength);
        }
        if (pagedIndex)
          pagedAttention(q.narrow(nFreshRows, N - nFreshRows), this.#k[l]!, this.#v[l]!, {
            ...pagedIndex, partitionSize: this.partitionSize, out: o.narrow(nFreshRows, N - nFreshRows),
          });
        if (buf) {
          addLinear(x, o.reshape([N, H * D]), attn.o_proj.weight); // x += o_proj(o)
          o.dispose();
        } else x = add(x, attn.o_proj.forward(o.reshape([N, H * D])));
        const mlp = layer.mlp;
        if (buf && mlp instanceof SwiGLUMLP) {
          const norm = layer.post_attention_layernorm;
          decodeSwigluMlp(x, { normWeight: norm.weight, eps: norm.eps, gate: mlp.gate_proj.weight, up: mlp.up_proj.weight, down: mlp.down_proj.weight }, buf);
        } else x = add(x, mlp.forward(layer.post_attention_layernorm.forward(x)));
      });
      if (want.length === 0) return null;
      const rows = embedding(Tensor.from(Int32Array.from(want), [want.length], { dtype: 'i32' }), x); // (n, C)
      return linear(m.norm.forward(rows), this.#model.outputWeight).toArray() as Float32Array; // (n, V)
    }));
    const V = cfg.vocabSize;
    const out: (Float32Array | null)[] = lastRow.map(() => null);
    let w = 0;
    lastRow.forEach((r, i) => {
      if (r >= 0) out[i] = logits!.subarray(w * V, ++w * V);
    });
    return out;
  }

  /** Frees the caches. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [...this.#k, ...this.#v]) t.dispose();
  }
}
