// The model runner: one serving step of a LlamaForCausalLM over a mixed batch of prefill chunks
// and decode tokens, with the keys and values kept in a paged cache (one K and one V tensor per
// layer, shape (numBlocks, blockSize, Hkv, D)).
//
// The runner is host bookkeeping: it packs the new tokens of every scheduled sequence into N rows,
// writes the step's indices (tokens, positions, cache slots, block tables, the rows whose logits
// are wanted) into one i32 buffer, describes them as paged attention metadata and calls the
// model's forwardPaged, which owns the decoder forward and picks its kernels. In a large step,
// sequences whose chunk starts at position 0 (fresh prompts) go first and attend over their own
// keys and values; the rest (decode rows, later prefill chunks, prompts with a cached prefix) read
// the cache through their block tables. A step of at most GEMV_MAX_ROWS rows (decoding) uses a
// fixed index layout and metadata objects made once, and offers the model a decode workspace, so
// that the model can run its fused decode path with calls prepared once: such a step costs
// JavaScript little more than filling the index buffer.
// Only the last row of a sequence whose chunk reaches its end is normed and projected to logits,
// or, for an item that scores given tokens (logitsFrom), every row of it from that position on.
//
// Batch invariance (RunnerOptions.batchInvariant): matmuls of at most GEMV_MAX_ROWS rows take the
// GEMV kernels, larger ones GEMM, and the two round differently; each kernel alone computes a row
// the same whatever the other rows. So a step's rows, and its logits rows, decide a sequence's bits.
// In this mode every step takes the general layout and is padded with a throwaway fresh sequence
// (cache slots -1: nothing stored; its logits dropped) to more than GEMV_MAX_ROWS rows and logits
// rows: every row goes through GEMM, and a sequence's numbers no longer depend on its batch-mates.
import { PatentGPTError } from '../errors.js';
import { ropeParams, type ModelConfig } from '../models/config.js';
import type { DecodeWorkspace, LlamaForCausalLM, PagedStep } from '../models/llama.js';
import type { PagedAttentionMetadata, PagedKvCache, RopeSegment } from '../nn/index.js';
import { GEMV_MAX_ROWS, Tensor, copyRows, keep, scope, type KvCacheDType } from '../tensor/index.js';
import type { BlockCopy, BlockTable } from './blocks.js';

/** One sequence's share of a step: compute tokens [start, end) of `tokens`. */
export interface StepItem {
  tokens: ArrayLike<number>;
  start: number;
  end: number;
  table: BlockTable;
  /**
   * Scoring given tokens: the logits of every row at positions >= logitsFrom are wanted, not
   * only the last row's (step() then returns this item's rows from there on, (k, V) row-major).
   */
  logitsFrom?: number;
}

/** Where a decode step's indices sit in the index buffer (i32 elements), for up to GEMV_MAX_ROWS rows and sequences. */
const DECODE_INDEX = (() => {
  const R = GEMV_MAX_ROWS;
  return { tokens: 0, positions: R, slots: 2 * R, logitRows: 3 * R, cuQ: 4 * R, contextLens: 5 * R + 1, tables: 6 * R + 1 };
})();

export interface RunnerOptions {
  numBlocks: number;
  blockSize: number;
  /** Tokens per attention partition of long contexts (default 512). */
  partitionSize?: number;
  /** Longest sequence served (default: the whole cache); sizes the decode buffers. */
  maxModelLen?: number;
  /** Element type of the K and V caches (default f32). */
  kvCacheDType?: KvCacheDType;
  /** Also keep, each step, the final-normed hidden row of each returned logits row (see `hidden`; default false). */
  hiddenStates?: boolean;
  /** Pad every step past the GEMV kernels' row limit, so a row's bits do not depend on the step's other rows (see above; default false). */
  batchInvariant?: boolean;
}

/** A step item, or the padding of a batch-invariant step (table null: its rows store nothing). */
type LaidOutItem = Omit<StepItem, 'table'> & { table: BlockTable | null };

export class ModelRunner {
  readonly config: ModelConfig;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly headDim: number;
  readonly partitionSize: number;
  readonly #model: LlamaForCausalLM;
  readonly #cache: PagedKvCache;
  /** The i32 indices of a step (tokens, positions, slots, attention index), rewritten each step; its host copy. */
  readonly #index: Tensor;
  readonly #hostIndex: Int32Array;
  /** Block-table columns of a decode step: blocks of the longest sequence the workspace serves. */
  readonly #tableStride: number;
  readonly #workspace: DecodeWorkspace;
  /** A decode step's request, made once over fixed places in #index; each step sets its counts. */
  readonly #decodeStep: PagedStep & { attention: PagedAttentionMetadata & { cached: NonNullable<PagedAttentionMetadata['cached']> } };
  /** Logits of up to GEMV_MAX_ROWS rows, natively and on the host, rewritten each step. */
  readonly #logits: Tensor;
  readonly #hostLogits: Float32Array;
  /** With hiddenStates: the normed rows of up to GEMV_MAX_ROWS logits rows, natively and on the host; the latest step's per item. */
  readonly #hidden: Tensor | null;
  readonly #hostHidden: Float32Array;
  #lastHidden: (Float32Array | null)[] = [];
  #closed = false;
  readonly #batchInvariant: boolean;

  constructor(model: LlamaForCausalLM, opts: RunnerOptions) {
    this.#model = model;
    this.config = model.config;
    this.numBlocks = opts.numBlocks;
    this.blockSize = opts.blockSize;
    this.partitionSize = opts.partitionSize ?? 512;
    this.#batchInvariant = opts.batchInvariant ?? false;
    const { nLayers, nHeads, nKvHeads, dim } = this.config;
    this.headDim = dim / nHeads;
    const device = model.device, dtype = opts.kvCacheDType ?? 'f32';
    const k: Tensor[] = [], v: Tensor[] = [];
    for (let i = 0; i < nLayers; i++) {
      k.push(keep(Tensor.empty([this.numBlocks, this.blockSize, nKvHeads, this.headDim], { device, dtype })));
      v.push(keep(Tensor.empty([this.numBlocks, this.blockSize, nKvHeads, this.headDim], { device, dtype })));
    }
    this.#cache = { k, v };
    // The decode path's buffers and the logits of its rows, made once: a decode step allocates nothing.
    const longest = Math.min(opts.maxModelLen ?? Infinity, this.numBlocks * this.blockSize);
    const R = GEMV_MAX_ROWS, at = DECODE_INDEX;
    this.#workspace = model.createDecodeWorkspace({ maxContextLen: longest, partitionSize: this.partitionSize });
    this.#tableStride = Math.ceil(longest / this.blockSize);
    // Room for the indices of a decode step of R sequences of the longest length.
    this.#index = keep(Tensor.empty([at.tables + R * this.#tableStride], { dtype: 'i32', device }));
    this.#hostIndex = new Int32Array(this.#index.size);
    this.#logits = keep(Tensor.empty([R, this.config.vocabSize], { device }));
    this.#hostLogits = new Float32Array(R * this.config.vocabSize);
    this.#hidden = opts.hiddenStates ? keep(Tensor.empty([R, dim], { device })) : null;
    this.#hostHidden = new Float32Array(opts.hiddenStates ? R * dim : 0);
    const ix = (from: number, n: number): Tensor => keep(this.#index.narrow(from, n));
    this.#decodeStep = {
      tokens: ix(at.tokens, R), logitRows: ix(at.logitRows, R), logitRowCount: 0, logits: this.#logits, hidden: this.#hidden, workspace: this.#workspace,
      attention: {
        kind: 'paged', rows: 0, positions: ix(at.positions, R), slotMapping: ix(at.slots, R), rope: ropeParams(this.config), cache: this.#cache, fresh: null,
        cached: {
          seqs: 0, blockTables: ix(at.tables, R * this.#tableStride), maxBlocks: this.#tableStride, cuQ: ix(at.cuQ, R + 1),
          contextLens: ix(at.contextLens, R), maxContextLen: 0, partitionSize: this.partitionSize,
        },
      },
    };
  }

  /** Element type of the caches, as allocated. */
  get kvCacheDType(): KvCacheDType {
    return this.#cache.k[0]!.dtype as KvCacheDType;
  }

  /**
   * With hiddenStates: per item of the latest step, the final-normed hidden row (C) that its
   * returned logits were projected from (null where step() returned none). Valid until the next step.
   */
  get hidden(): (Float32Array | null)[] {
    if (!this.#hidden) throw new PatentGPTError('E_ARGUMENT', 'ModelRunner: hidden rows need a runner made with hiddenStates: true');
    return this.#lastHidden;
  }

  /** Bytes held by the K and V caches of every layer. */
  get cacheBytes(): number {
    return this.#cache.k.reduce((a, t) => a + 2 * t.byteLength, 0);
  }

  /** Copies whole blocks in every layer's caches (copy-on-write before a write). */
  copyBlocks(copies: readonly BlockCopy[]): void {
    for (const t of [...this.#cache.k, ...this.#cache.v]) for (const { src, dst } of copies) copyRows(t, dst, t, src, 1);
  }

  /**
   * Runs one step; returns the next-token logits (V) of each item whose chunk ends at the end of
   * its tokens (in item order; null for the others), or for an item with logitsFrom those of its
   * rows from that position on ((k, V), k >= 1; null when none). Block tables must already cover `end`.
   * The arrays are valid until the next step (they may be views of a buffer the runner reuses).
   */
  step(items: readonly StepItem[]): (Float32Array | null)[] {
    if (this.#closed) throw new PatentGPTError('E_DISPOSED', 'ModelRunner: step() after close()');
    const cfg = this.config;
    const N = items.reduce((a, it) => a + it.end - it.start, 0);
    for (const [i, it] of items.entries())
      if (it.end > it.table.blocks.length * this.blockSize || it.start >= it.end)
        throw new PatentGPTError('E_INTERNAL', `ModelRunner: item ${i} [${it.start}, ${it.end}) does not fit its ${it.table.blocks.length} blocks`);
    // A step of a few rows (decoding) takes the fixed index layout that the model's fused decode
    // path is prepared for; every row then reads the cache. Dynamic-base RoPE (a base per
    // sequence) takes the general layout, as do contexts longer than the decode buffers.
    const longest = Math.max(...items.map((it) => it.end));
    if (this.#batchInvariant) return this.#paddedStep(items, N);
    if (N <= GEMV_MAX_ROWS && cfg.ropeScaling?.type !== 'dynamic-base' &&
      Math.ceil(longest / this.blockSize) <= this.#tableStride && Math.ceil(longest / this.partitionSize) <= this.#workspace.partitions)
      return this.#decodeLayoutStep(items, N);
    return this.#generalStep(items, N);
  }

  /**
   * Per item, the last of its rows whose logits are wanted (its chunk's last row when the chunk
   * ends the tokens; with logitsFrom, each row from there on), else -1; and how many (0 or 1, or
   * with logitsFrom the rows at positions [max(start, logitsFrom), end)), contiguous up to it.
   */
  static #lastRows(items: readonly LaidOutItem[], order: readonly number[]): { lastRow: number[]; counts: number[] } {
    const last = new Array<number>(items.length).fill(-1);
    const counts = new Array<number>(items.length).fill(0);
    let row = 0;
    for (const i of order) {
      const it = items[i]!;
      row += it.end - it.start;
      const k = it.logitsFrom === undefined ? (it.end === it.tokens.length ? 1 : 0) : Math.max(0, it.end - Math.max(it.start, it.logitsFrom));
      if (k > 0) {
        last[i] = row - 1;
        counts[i] = k;
      }
    }
    return { lastRow: last, counts };
  }

  /** Every wanted row, ascending: each item's `count` rows ending at its last row. */
  static #wanted(last: readonly number[], counts: readonly number[]): number[] {
    const rows: number[] = [];
    last.forEach((r, i) => {
      for (let k = counts[i]! - 1; k >= 0; k--) rows.push(r - k);
    });
    return rows.sort((a, b) => a - b);
  }

  /** With hiddenStates: reads the step's hidden rows (`from`, its first rows) and hands item i row slot[i] (-1: none). */
  #keepHidden(from: Tensor | null, slot: readonly number[]): void {
    if (!this.#hidden) return;
    const C = this.config.dim, n = slot.reduce((a, k) => Math.max(a, k + 1), 0);
    const host = !from || n === 0 ? null : from.read(n <= this.#hidden.shape[0]! ? this.#hostHidden.subarray(0, n * C) : new Float32Array(n * C));
    this.#lastHidden = slot.map((k) => (host && k >= 0 ? host.subarray(k * C, (k + 1) * C) : null));
  }

  /** Each item's rows of `logits` (n, V, in row order of `want`): its count rows ending at its last row, in item order. */
  #split(logits: Float32Array, lastRow: readonly number[], counts: readonly number[], want: readonly number[]): (Float32Array | null)[] {
    const V = this.config.vocabSize;
    const byRow = new Map(want.map((r, w) => [r, w]));
    return lastRow.map((r, i) => (r >= 0 ? logits.subarray((byRow.get(r)! - counts[i]! + 1) * V, (byRow.get(r)! + 1) * V) : null));
  }

  /**
   * A step of N <= GEMV_MAX_ROWS rows, each reading the cache, in the fixed layout: the indices go
   * to fixed places in the index buffer (block tables at a fixed row stride) and the request
   * object is the runner's own, so that only the step's counts change between steps.
   */
  #decodeLayoutStep(items: readonly StepItem[], N: number): (Float32Array | null)[] {
    const bs = this.blockSize;
    const stride = this.#tableStride, at = DECODE_INDEX;
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
    const { lastRow, counts } = ModelRunner.#lastRows(items, items.map((_, i) => i));
    const rows = ModelRunner.#wanted(lastRow, counts);
    const want = rows.length;
    idx.set(rows, at.logitRows);
    this.#index.write(idx.subarray(0, at.tables + items.length * stride), 0);
    const step = this.#decodeStep;
    step.attention.rows = N;
    step.attention.cached.seqs = items.length;
    step.attention.cached.maxContextLen = maxContext;
    step.logitRowCount = want;
    this.#model.forwardPaged(step);
    const slot = new Map(rows.map((r, w) => [r, w]));
    this.#keepHidden(want === 0 ? null : this.#hidden, lastRow.map((r) => (r >= 0 ? slot.get(r)! : -1)));
    if (want === 0) return lastRow.map(() => null);
    const host = this.#logits.read(this.#hostLogits.subarray(0, want * this.config.vocabSize));
    return this.#split(host, lastRow, counts, rows);
  }

  /**
   * A batch-invariant step: the general layout, with a throwaway fresh sequence of as many rows as
   * it takes to bring the step's logits rows (and so its rows) past GEMV_MAX_ROWS; every one of its
   * rows is a logits row, none is stored. Its results are dropped.
   */
  #paddedStep(items: readonly StepItem[], N: number): (Float32Array | null)[] {
    const wanted = ModelRunner.#lastRows(items, items.map((_, i) => i)).counts.reduce((a, b) => a + b, 0);
    const pad = Math.max(0, GEMV_MAX_ROWS + 1 - wanted);
    if (pad === 0) return this.#generalStep(items, N);
    const filler: LaidOutItem = { tokens: new Int32Array(pad), start: 0, end: pad, table: null, logitsFrom: 0 };
    const out = this.#generalStep([...items, filler], N + pad);
    this.#lastHidden = this.#lastHidden.slice(0, items.length);
    return out.slice(0, items.length);
  }

  /**
   * Any step in a layout of its own: fresh prompts (start 0) go first and attend over their own
   * keys and values; the other rows read the cache through their block tables.
   */
  #generalStep(items: readonly LaidOutItem[], N: number): (Float32Array | null)[] {
    const bs = this.blockSize;
    const cfg = this.config;
    const perSeqRope = cfg.ropeScaling?.type === 'dynamic-base';
    const order = items.map((_, i) => i);
    order.sort((a, b) => Number(items[b]!.start === 0) - Number(items[a]!.start === 0));
    const nFresh = order.filter((i) => items[i]!.start === 0).length;
    const nPaged = order.length - nFresh;
    const maxBlocks = Math.max(1, ...items.map((it) => Math.ceil(it.end / bs)));
    const { lastRow, counts } = ModelRunner.#lastRows(items, order);
    const want = ModelRunner.#wanted(lastRow, counts);
    // i32 indices, one buffer: tokens, positions, slots (N each), the wanted rows, then for the
    // paged sequences cuQ (nPaged + 1), contextLens (nPaged), block tables (nPaged, maxBlocks), then cuFresh.
    const at = { tokens: 0, positions: N, slots: 2 * N, logitRows: 3 * N, cuQ: 3 * N + want.length };
    const contextLensAt = at.cuQ + nPaged + 1, tablesAt = contextLensAt + nPaged, cuFreshAt = tablesAt + nPaged * maxBlocks;
    const idx = new Int32Array(cuFreshAt + nFresh + 1);
    idx.set(want, at.logitRows);
    let row = 0;
    let maxPos = 0;
    let maxContext = 0;
    order.forEach((i, j) => {
      const it = items[i]!;
      for (let p = it.start; p < it.end; p++, row++) {
        idx[at.tokens + row] = it.tokens[p]!;
        idx[at.positions + row] = p;
        idx[at.slots + row] = it.table ? it.table.blocks[Math.floor(p / bs)]! * bs + (p % bs) : -1;
      }
      if (it.table) maxPos = Math.max(maxPos, it.end - 1); // the padding leaves the step's RoPE setting alone
      if (j < nFresh) idx[cuFreshAt + j + 1] = row;
      else {
        const k = j - nFresh;
        idx[at.cuQ + k + 1] = idx[at.cuQ + k]! + it.end - it.start;
        idx[contextLensAt + k] = it.end;
        maxContext = Math.max(maxContext, it.end);
        const blocks = it.table!.blocks; // paged rows are real sequences' (the padding is fresh)
        for (let c = 0; c < Math.min(blocks.length, maxBlocks); c++) idx[tablesAt + k * maxBlocks + c] = blocks[c]!;
      }
    });
    const nFreshRows = nFresh > 0 ? idx[cuFreshAt + nFresh]! : 0;
    // RoPE settings: one for the whole step, except with dynamic-base scaling, whose base depends
    // on each sequence's length (as Hugging Face computes it per sequence): then per sequence.
    let rope: PagedAttentionMetadata['rope'] = ropeParams(cfg, maxPos);
    if (perSeqRope) {
      const segments: RopeSegment[] = [];
      let r0 = 0;
      for (const i of order) {
        const it = items[i]!;
        segments.push({ row: r0, rows: it.end - it.start, rope: ropeParams(cfg, it.end - 1) });
        r0 += it.end - it.start;
      }
      rope = segments;
    }
    const V = cfg.vocabSize;
    const logits = scope(() => {
      const index = this.#writeIndex(idx);
      const part = (from: number, n: number): Tensor => index.narrow(from, n);
      const out = want.length <= this.#logits.shape[0]! ? this.#logits : Tensor.empty([want.length, V], { like: this.#logits });
      const hidden = !this.#hidden ? null : want.length <= this.#hidden.shape[0]! ? this.#hidden : Tensor.empty([want.length, cfg.dim], { like: this.#hidden });
      this.#model.forwardPaged({
        tokens: part(at.tokens, N), logitRows: part(at.logitRows, want.length), logitRowCount: want.length, logits: out, hidden,
        attention: {
          kind: 'paged', rows: N, positions: part(at.positions, N), slotMapping: part(at.slots, N), rope, cache: this.#cache,
          fresh: nFresh > 0 ? { rows: nFreshRows, cuSeqlens: part(cuFreshAt, nFresh + 1) } : null,
          cached: nPaged > 0 ? {
            seqs: nPaged, blockTables: part(tablesAt, nPaged * maxBlocks), maxBlocks, cuQ: part(at.cuQ, nPaged + 1),
            contextLens: part(contextLensAt, nPaged), maxContextLen: maxContext, partitionSize: this.partitionSize,
          } : null,
        },
      });
      // hidden rows in row order, as the logits: item i takes the row of its last row
      const byRow = new Map(want.map((r, w) => [r, w]));
      this.#keepHidden(want.length === 0 ? null : hidden, lastRow.map((r) => (r >= 0 ? byRow.get(r)! : -1)));
      if (want.length === 0) return null;
      return out.read(out === this.#logits ? this.#hostLogits.subarray(0, want.length * V) : new Float32Array(want.length * V));
    });
    if (!logits) return lastRow.map(() => null);
    // Logits are in row order; items are returned in item order.
    return this.#split(logits, lastRow, counts, want);
  }

  /** The i32 indices of a step in one native buffer: the runner's own, or a new one (in the step's scope) when too small. */
  #writeIndex(idx: Int32Array): Tensor {
    if (idx.length > this.#index.size) return Tensor.from(idx, [idx.length], { dtype: 'i32', device: this.#index.device });
    this.#index.write(idx, 0);
    return this.#index;
  }

  /** Frees the caches and buffers. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#decodeStep, a = s.attention;
    for (const t of [...this.#cache.k, ...this.#cache.v, s.tokens, s.logitRows, a.positions, a.slotMapping, a.cached.blockTables, a.cached.cuQ,
      a.cached.contextLens, this.#index, this.#logits]) t.dispose();
    this.#hidden?.dispose();
    this.#workspace.dispose();
  }
}
