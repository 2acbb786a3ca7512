// SFT rows and batches. 'pack' puts several conversations into a row of at most seqLen tokens,
// either greedily in order (a conversation that does not fit opens the next row) or best-fit
// decreasing (longest first, each into the open row it fills most tightly; TRL's "bfd"), which
// wastes fewer tokens on padding; 'pad' gives each conversation its own row. Within a row every conversation is its own segment in cuSeqlens
// with positions from 0, so the packed attention never lets a token see another conversation,
// and the loss of a conversation is what it would be alone. Padding (to seqLen, when asked)
// is one more segment of padId tokens whose targets are ignored.
// Targets are next-token: target[i] = labels[i + 1] within a conversation, -100 at its end and
// wherever the label is ignored (prompts, template scaffolding, padding).
import { PatentGPTError } from '../../errors.js';
import { IGNORE_INDEX, type SftExample } from './render.js';

export type SftBatching = 'pack' | 'pad';

export interface PackOptions {
  /** Tokens per row, at most. */
  seqLen: number;
  /** 'pack' (default) several conversations per row, or 'pad' one per row. */
  mode?: SftBatching;
  /** Fill every row to seqLen (default true; false leaves rows at their length, no padding). */
  padToSeqLen?: boolean;
  /** How 'pack' fills rows: 'greedy' keeps the examples' order (default), 'bfd' packs tighter. */
  strategy?: 'greedy' | 'bfd';
  /** Id of the padding token (default 0; its targets are ignored, so the id only needs to exist). */
  padId?: number;
}

export interface SftRow {
  /** (L) token ids, L <= seqLen. */
  tokens: Int32Array;
  /** (L) next-token targets, IGNORE_INDEX where nothing is learned. */
  targets: Int32Array;
  /** (L) position of each token within its conversation (or padding run), from 0. */
  positions: Int32Array;
  /** (segments + 1) boundaries within the row, 0 ... L. */
  cuSeqlens: Int32Array;
  /** Indices (into the examples given) of the conversations in this row, in order. */
  examples: number[];
}

/** Next-token targets of one example. */
export function exampleTargets(ex: SftExample): Int32Array {
  const n = ex.ids.length;
  const t = new Int32Array(n).fill(IGNORE_INDEX);
  for (let i = 0; i + 1 < n; i++) t[i] = ex.labels[i + 1]!;
  return t;
}

function buildRow(examples: readonly SftExample[], which: number[], padTo: number, padId: number): SftRow {
  const used = which.reduce((a, j) => a + examples[j]!.ids.length, 0);
  const L = Math.max(used, padTo);
  const tokens = new Int32Array(L).fill(padId);
  const targets = new Int32Array(L).fill(IGNORE_INDEX);
  const positions = new Int32Array(L);
  const cu = [0];
  let o = 0;
  for (const j of which) {
    const ex = examples[j]!;
    tokens.set(ex.ids, o);
    targets.set(exampleTargets(ex), o);
    for (let i = 0; i < ex.ids.length; i++) positions[o + i] = i;
    o += ex.ids.length;
    cu.push(o);
  }
  if (L > o) {
    for (let i = o; i < L; i++) positions[i] = i - o;
    cu.push(L);
  }
  return { tokens, targets, positions, cuSeqlens: Int32Array.from(cu), examples: which };
}

/**
 * Best-fit decreasing: rows as lists of example indices (each list in index order, rows in the
 * order they were opened). A segment tree over remaining capacities (0..seqLen) finds the
 * tightest open row in O(log seqLen).
 */
function bestFitDecreasing(lengths: readonly number[], seqLen: number): number[][] {
  let size = 1;
  while (size < seqLen + 1) size *= 2;
  const count = new Int32Array(2 * size); // open rows per remaining capacity; inner nodes sum
  const byCap: number[][] = Array.from({ length: seqLen + 1 }, () => []);
  const bump = (cap: number, d: number): void => {
    for (let i = cap + size; i >= 1; i >>= 1) count[i]! += d;
  };
  /** Smallest capacity >= need with an open row, or -1. */
  const find = (need: number, node = 1, lo = 0, hi = size - 1): number => {
    if (hi < need || count[node] === 0) return -1;
    if (lo === hi) return lo;
    const mid = (lo + hi) >> 1;
    const left = find(need, 2 * node, lo, mid);
    return left >= 0 ? left : find(need, 2 * node + 1, mid + 1, hi);
  };
  const order = lengths.map((_, j) => j).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const rows: number[][] = [];
  for (const j of order) {
    const L = lengths[j]!;
    const cap = find(L);
    let r: number;
    if (cap < 0) {
      r = rows.length;
      rows.push([]);
    } else {
      r = byCap[cap]!.pop()!;
      bump(cap, -1);
    }
    rows[r]!.push(j);
    const left = (cap < 0 ? seqLen : cap) - L;
    byCap[left]!.push(r);
    bump(left, 1);
  }
  return rows.map((r) => r.sort((a, b) => a - b));
}

/** Rows of at most seqLen tokens from examples (each must fit: truncate with maxLength <= seqLen). */
export function packExamples(examples: readonly SftExample[], opts: PackOptions): SftRow[] {
  const { seqLen } = opts;
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new PatentGPTError('E_CONFIG', `field "seqLen" must be an integer >= 2, got ${seqLen}`);
  const mode = opts.mode ?? 'pack';
  if (mode !== 'pack' && mode !== 'pad') throw new PatentGPTError('E_CONFIG', `field "packing" must be "pack" or "pad", got ${JSON.stringify(mode)}`);
  const padTo = opts.padToSeqLen === false ? 0 : seqLen;
  const padId = opts.padId ?? 0;
  examples.forEach((ex, j) => {
    if (ex.ids.length > seqLen)
      throw new PatentGPTError('E_CONFIG', `SFT example ${j} has ${ex.ids.length} tokens, more than seqLen ${seqLen}; set maxLength <= seqLen so long conversations are truncated`);
  });
  const strategy = opts.strategy ?? 'greedy';
  if (strategy !== 'greedy' && strategy !== 'bfd') throw new PatentGPTError('E_CONFIG', `field "strategy" must be "greedy" or "bfd", got ${JSON.stringify(strategy)}`);
  if (mode === 'pack' && strategy === 'bfd') return bestFitDecreasing(examples.map((e) => e.ids.length), seqLen).map((w) => buildRow(examples, w, padTo, padId));
  const rows: SftRow[] = [];
  let cur: number[] = [];
  let len = 0;
  examples.forEach((ex, j) => {
    if (cur.length > 0 && (mode === 'pad' || len + ex.ids.length > seqLen)) {
      rows.push(buildRow(examples, cur, padTo, padId));
      cur = [];
      len = 0;
    }
    cur.push(j);
    len += ex.ids.length;
  });
  if (cur.length > 0) rows.push(buildRow(examples, cur, padTo, padId));
  return rows;
}

/** Rows flattened into one packed batch (the model's PackedBatch plus counts). */
export interface SftBatch {
  /** (N) all rows' tokens, one after another. */
  tokens: Int32Array;
  targets: Int32Array;
  positions: Int32Array;
  /** (segments + 1) boundaries over the N tokens: every conversation, padding run and row. */
  cuSeqlens: Int32Array;
  maxSeqlen: number;
  /** Targets that are not ignored (the loss's denominator). */
  targetCount: number;
  rows: number;
}

export function collateRows(rows: readonly SftRow[]): SftBatch {
  const N = rows.reduce((a, r) => a + r.tokens.length, 0);
  const tokens = new Int32Array(N);
  const targets = new Int32Array(N);
  const positions = new Int32Array(N);
  const cu = [0];
  let o = 0;
  let maxSeqlen = 0;
  for (const r of rows) {
    tokens.set(r.tokens, o);
    targets.set(r.targets, o);
    positions.set(r.positions, o);
    for (let s = 1; s < r.cuSeqlens.length; s++) {
      cu.push(o + r.cuSeqlens[s]!);
      maxSeqlen = Math.max(maxSeqlen, r.cuSeqlens[s]! - r.cuSeqlens[s - 1]!);
    }
    o += r.tokens.length;
  }
  let targetCount = 0;
  for (let i = 0; i < N; i++) if (targets[i] !== IGNORE_INDEX) targetCount++;
  return { tokens, targets, positions, cuSeqlens: Int32Array.from(cu), maxSeqlen, targetCount, rows: rows.length };
}
