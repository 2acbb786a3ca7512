// Batches of preference pairs. A batch of B pairs is one packed batch of 2B sequences, the B
// chosen sides first, then the B rejected sides in the same order (TRL's concatenated forward),
// each sequence its own attention segment with positions from 0, so no token sees another
// sequence. `scored` lists the positions whose next token is a response token: the log-prob of
// a side is the sum over its scored positions (DPO), and a reward model reads sequence s at
// cuSeqlens[s + 1] - 1, its last token.
// The stream: global pair g of the run is pair perm(seed, epoch)[g mod n] of epoch g div n (in
// file order without shuffling), and rank r of W takes pairs [r B, (r + 1) B) of every global
// batch of W B; its position is the batch count alone, checked against a fingerprint of the
// pairs, batch shape and seed on restore.
import { PatentGPTError } from '../../errors.js';
import { hash32, permutation } from '../../util/rng.js';
import { IGNORE_INDEX } from '../sft/render.js';
import type { PreferenceExample, PreferenceSequence } from './tokenize.js';

export interface PreferenceBatch {
  /** Pairs in the batch (B); the batch holds 2B sequences. */
  pairs: number;
  /** (N) token ids of the 2B sequences, packed: chosen 0..B-1, then rejected 0..B-1. */
  tokens: Int32Array;
  /** (N) next-token targets: the next token where it is a response token, IGNORE_INDEX elsewhere. */
  targets: Int32Array;
  /** (N) position of each token in its sequence, from 0. */
  positions: Int32Array;
  /** (2B + 1) sequence boundaries, 0 ... N. */
  cuSeqlens: Int32Array;
  /** The M scored positions: rows (M) into the batch, the token ids (M) they predict, the sequence (M) in [0, 2B) each belongs to. */
  scored: { rows: Int32Array; ids: Int32Array; seq: Int32Array };
  /** (2B) response tokens of each sequence. */
  responseTokens: Int32Array;
  /** Targets that are not ignored (M). */
  targetCount: number;
  /** Indices (into the stream's examples) of the B pairs. */
  examples: number[];
}

/** Packs pairs into one batch (see the file comment). */
export function collatePairs(examples: readonly PreferenceExample[], which: readonly number[]): PreferenceBatch {
  const seqs: PreferenceSequence[] = [...which.map((j) => examples[j]!.chosen), ...which.map((j) => examples[j]!.rejected)];
  const N = seqs.reduce((a, s) => a + s.ids.length, 0);
  const tokens = new Int32Array(N);
  const targets = new Int32Array(N).fill(IGNORE_INDEX);
  const positions = new Int32Array(N);
  const cuSeqlens = new Int32Array(seqs.length + 1);
  const responseTokens = new Int32Array(seqs.length);
  const rows: number[] = [];
  const ids: number[] = [];
  const seq: number[] = [];
  let o = 0;
  seqs.forEach((s, k) => {
    tokens.set(s.ids, o);
    for (let i = 0; i < s.ids.length; i++) {
      positions[o + i] = i;
      if (i + 1 < s.ids.length && s.responseMask[i + 1] === 1) {
        targets[o + i] = s.ids[i + 1]!;
        rows.push(o + i);
        ids.push(s.ids[i + 1]!);
        seq.push(k);
      }
    }
    responseTokens[k] = s.responseTokens;
    o += s.ids.length;
    cuSeqlens[k + 1] = o;
  });
  return {
    pairs: which.length, tokens, targets, positions, cuSeqlens, responseTokens, targetCount: rows.length, examples: [...which],
    scored: { rows: Int32Array.from(rows), ids: Int32Array.from(ids), seq: Int32Array.from(seq) },
  };
}

export interface PreferenceStreamOptions {
  /** Pairs per batch on this rank. */
  batchSize: number;
  /** Seed of the pair order (default 0). */
  seed?: number;
  /** Shuffle pairs per epoch (default true; false: file order every epoch, for parity runs). */
  shuffle?: boolean;
  rank?: number;
  worldSize?: number;
}

export interface PreferenceStreamPosition {
  version: 1;
  kind: 'preference';
  /** Batches already produced. */
  batch: number;
  /** What the position is only valid for: the pairs, batch shape and seed. */
  fingerprint: string;
}

export interface PreferenceStreamBatch extends PreferenceBatch {
  /** Index of the batch in the stream (0-based). */
  index: number;
  /** Epoch of the batch's first pair. */
  epoch: number;
}

function fingerprintOf(examples: readonly PreferenceExample[], opts: PreferenceStreamOptions, worldSize: number): string {
  const parts: number[] = [examples.length];
  const mix = (h: number, s: PreferenceSequence): number => {
    for (let i = 0; i < s.ids.length; i++) h = (Math.imul(h, 31) + s.ids[i]! + s.responseMask[i]! * 7) >>> 0;
    return h;
  };
  for (const e of examples) parts.push(mix(mix(e.chosen.ids.length, e.chosen), e.rejected));
  return hash32(...parts, opts.batchSize, worldSize, opts.seed ?? 0, opts.shuffle === false ? 0 : 1).toString(16).padStart(8, '0');
}

export class PreferenceBatchStream {
  readonly examples: readonly PreferenceExample[];
  readonly batchSize: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly fingerprint: string;
  private readonly seed: number;
  private readonly shuffle: boolean;
  private batch = 0;
  private perm: { epoch: number; order: Uint32Array } | null = null;

  constructor(examples: readonly PreferenceExample[], opts: PreferenceStreamOptions, position?: PreferenceStreamPosition) {
    const { batchSize } = opts;
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new PatentGPTError('E_CONFIG', `field "batchSize" must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(this.worldSize) || this.worldSize < 1 || !Number.isInteger(this.rank) || this.rank < 0 || this.rank >= this.worldSize)
      throw new PatentGPTError('E_CONFIG', `rank ${this.rank} of worldSize ${this.worldSize}: need 0 <= rank < worldSize`);
    if (examples.length === 0) throw new PatentGPTError('E_DATA', 'no preference pairs to train on: every record was skipped or the files are empty (see the skip counts)');
    this.examples = examples;
    this.batchSize = batchSize;
    this.seed = opts.seed ?? 0;
    this.shuffle = opts.shuffle !== false;
    this.fingerprint = fingerprintOf(examples, opts, this.worldSize);
    if (position) this.restore(position);
  }

  /** Global batches in one pass over the pairs (the last one may wrap into the next epoch). */
  get batchesPerEpoch(): number {
    return Math.ceil(this.examples.length / (this.batchSize * this.worldSize));
  }

  /** Index (into examples) of global pair g, and its epoch. */
  pairAt(g: number): { index: number; epoch: number } {
    const n = this.examples.length;
    const epoch = Math.floor(g / n);
    if (!this.shuffle) return { index: g % n, epoch };
    if (this.perm?.epoch !== epoch) this.perm = { epoch, order: permutation(n, this.seed, 'preference-pairs', epoch) };
    return { index: this.perm.order[g % n]!, epoch };
  }

  next(): PreferenceStreamBatch {
    const first = (this.batch * this.worldSize + this.rank) * this.batchSize;
    const picked = Array.from({ length: this.batchSize }, (_, r) => this.pairAt(first + r));
    const b = collatePairs(this.examples, picked.map((p) => p.index));
    return { ...b, index: this.batch++, epoch: picked[0]!.epoch };
  }

  position(): PreferenceStreamPosition {
    return { version: 1, kind: 'preference', batch: this.batch, fingerprint: this.fingerprint };
  }

  restore(pos: PreferenceStreamPosition): void {
    const bad = (field: string, why: string): never => {
      throw new PatentGPTError('E_DATA', `preference data position: ${field}: ${why}`);
    };
    if (typeof pos !== 'object' || pos === null) bad('position', 'must be an object');
    if (pos.version !== 1 || pos.kind !== 'preference') bad('version', `must be a preference position of version 1, got ${JSON.stringify({ version: pos.version, kind: pos.kind })}`);
    if (pos.fingerprint !== this.fingerprint)
      bad('fingerprint', `${pos.fingerprint} was saved for other pairs, batch shape or seed than this stream's (${this.fingerprint}); resume with the same data config`);
    if (!Number.isSafeInteger(pos.batch) || pos.batch < 0) bad('batch', `must be a non-negative integer, got ${pos.batch}`);
    this.batch = pos.batch;
  }
}

/** Validation batches: the pairs in order, B a batch (the last may be short). */
export function preferenceEvalBatches(examples: readonly PreferenceExample[], batchSize: number): PreferenceBatch[] {
  const out: PreferenceBatch[] = [];
  for (let i = 0; i < examples.length; i += batchSize) out.push(collatePairs(examples, Array.from({ length: Math.min(batchSize, examples.length - i) }, (_, k) => i + k)));
  return out;
}
