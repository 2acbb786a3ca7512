// Attention metadata: what the one decoder forward needs to know about a batch's rows besides
// their hidden states, and what picks the attention kernel.
//   packed: training and scoring. N tokens of whole documents concatenated; cuSeqlens marks the
//           boundaries (flash-attention's cu_seqlens); attention runs over the batch's own keys.
//   paged:  serving. The rows are the new tokens of several sequences whose earlier keys and
//           values sit in a paged cache (vLLM's layout): new keys/values are stored through a
//           slot mapping, whole prompts from position 0 may attend over their own keys (fused
//           attention), and the other rows read the cache through block tables.
// All index tensors are i32. A paged batch's tensors hold their entries at their start and may
// be longer (buffers reused across serving steps); the counts say how much is live.
import type { RopeOptions, Tensor } from '../tensor/index.js';

/** RoPE base and position scale. */
export type RopeSetting = Required<RopeOptions>;

export interface PackedAttentionMetadata {
  kind: 'packed';
  /** (N): position of each token within its document (restarts at 0). */
  positions: Tensor;
  /** (nDocs + 1): document boundaries; attention never crosses them. */
  cuSeqlens: Tensor;
  rope: RopeSetting;
}

/** Consecutive rows [row, row + rows) sharing one RoPE setting (dynamic-base scaling: one per sequence). */
export interface RopeSegment {
  row: number;
  rows: number;
  rope: RopeSetting;
}

/** Per layer, the key and value caches: (numBlocks, blockSize, Hkv, D) each. */
export interface PagedKvCache {
  k: readonly Tensor[];
  v: readonly Tensor[];
}

/** Rows [0, rows) are whole prompts starting at position 0: fused causal attention over their own keys. */
export interface FreshPrompts {
  rows: number;
  /** (prompts + 1): their boundaries, from 0 to rows. */
  cuSeqlens: Tensor;
}

/** The rows after the fresh prompts read the cache: seqs sequences, in row order. */
export interface CachedRows {
  seqs: number;
  /** (seqs * maxBlocks) or (seqs, maxBlocks): physical block of each logical block. */
  blockTables: Tensor;
  maxBlocks: number;
  /** (seqs + 1): sequence s owns rows [cuQ[s], cuQ[s + 1]) of the cached part. */
  cuQ: Tensor;
  /** (seqs): tokens of each sequence in the cache after this step, its new rows included. */
  contextLens: Tensor;
  /** The largest of contextLens. */
  maxContextLen: number;
  /** Tokens per attention partition of long contexts. */
  partitionSize: number;
}

export interface PagedAttentionMetadata {
  kind: 'paged';
  /** Query rows of the step (N). */
  rows: number;
  /** (N): each row's position in its sequence. */
  positions: Tensor;
  /** (N): cache slot of each row's key and value (block * blockSize + offset; -1 skips). */
  slotMapping: Tensor;
  /** One RoPE setting for all rows, or segments covering [0, N) in order. */
  rope: RopeSetting | readonly RopeSegment[];
  cache: PagedKvCache;
  fresh: FreshPrompts | null;
  cached: CachedRows | null;
}

export type AttentionMetadata = PackedAttentionMetadata | PagedAttentionMetadata;
