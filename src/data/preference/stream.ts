// Batches of preference pairs. A batch of B pairs is one packed batch of 2B sequences, the B
// chosen sides first, then the B rejected sides in the same order (TRL's concatenated forward),
// each sequence its own attention segment with positions from 0, so no token sees another
// sequence. `scored` lists the positions whose next token is a response token: the log-prob of
// a side is the sum over its scored positions (DPO), and a reward model reads sequence s at
// cuSeqlens[s + 1] - 1, its last token.
// The stream reads the pairs in src/data/epoch-order.ts's order (file order without shuffling);
// its position is the batch count, checked against a fingerprint of the pairs, batch shape, world
// size and seed on restore (a position of another world is restated there).
import { hash32 } from '../../util/rng.js';
import { EpochOrder, type EpochOrderOptions, type EpochOrderPosition, type EpochOrderSpec } from '../epoch-order.js';
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

/** Pairs per batch on this rank, seed, shuffling, rank and world size (src/data/epoch-order.ts). */
export type PreferenceStreamOptions = EpochOrderOptions;

export type PreferenceStreamPosition = EpochOrderPosition<'preference'>;

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

const PREFERENCE_ORDER: EpochOrderSpec<'preference'> = {
  kind: 'preference', label: 'preference', positionName: 'a preference position', permLabel: 'preference-pairs', covers: 'pairs, batch shape or seed',
  empty: 'no preference pairs to train on: every record was skipped or the files are empty (see the skip counts)',
};

export class PreferenceBatchStream extends EpochOrder<'preference'> {
  constructor(readonly examples: readonly PreferenceExample[], opts: PreferenceStreamOptions, position?: PreferenceStreamPosition) {
    super(examples.length, opts, (worldSize) => fingerprintOf(examples, opts, worldSize), PREFERENCE_ORDER);
    if (position) this.restore(position);
  }

  /** Index (into examples) of global pair g, and its epoch. */
  pairAt(g: number): { index: number; epoch: number } {
    return this.at(g);
  }

  next(): PreferenceStreamBatch {
    const { indices, index, epoch } = this.nextIndices();
    return { ...collatePairs(this.examples, indices), index, epoch };
  }
}

/** Validation batches: the pairs in order, B a batch (the last may be short). */
export function preferenceEvalBatches(examples: readonly PreferenceExample[], batchSize: number): PreferenceBatch[] {
  const out: PreferenceBatch[] = [];
  for (let i = 0; i < examples.length; i += batchSize) out.push(collatePairs(examples, Array.from({ length: Math.min(batchSize, examples.length - i) }, (_, k) => i + k)));
  return out;
}
