// Where a stage's training batch sits in the global batch, for row-keyed dropout (src/nn/
// dropout-rows.ts): the global rows of its tokens, from the stream's contract (batch `index` of
// rank r of W holds global items (index W + r) B .. + B - 1, src/data/epoch-order.ts), and the
// optimizer step (index div the rank's micro-batches per step). The same item has the same key on
// any rank, micro-batch or number of ranks, and after a resume.
import type { PreferenceBatch } from '../../data/preference/index.js';
import type { SftBatchStream, SftStreamBatch } from '../../data/sft/index.js';
import type { DropoutRows } from '../../nn/dropout-rows.js';

/** The stream's placement of a rank's batches (EpochOrder's fields). */
interface Placement {
  readonly rank: number;
  readonly worldSize: number;
  readonly batchSize: number;
}

const firstItem = (s: Placement, index: number): number => (index * s.worldSize + s.rank) * s.batchSize;

/** An SFT batch: global row g keeps its packed row's tokens (at most seqLen, packExamples' bound). */
export function sftDropoutRows(stream: SftBatchStream, b: SftStreamBatch, accum: number, seqLen: number): DropoutRows {
  const first = firstItem(stream, b.index);
  const runs = Array.from({ length: b.rows }, (_, r) => ({ row: first + r, length: stream.rows[stream.at(first + r).index]!.tokens.length }));
  return { step: Math.floor(b.index / accum), stride: seqLen, runs };
}

/**
 * A preference batch (chosen 0..B-1, then rejected 0..B-1, packed): global pair g's chosen
 * sequence is row 2g, its rejected one 2g + 1; `maxLength` bounds a sequence (the data's cut).
 */
export function preferenceDropoutRows(stream: Placement, b: PreferenceBatch & { index: number }, accum: number, maxLength: number): DropoutRows {
  const first = firstItem(stream, b.index);
  const B = b.pairs;
  const runs = Array.from({ length: 2 * B }, (_, s) => ({ row: 2 * (first + (s % B)) + (s < B ? 0 : 1), length: b.cuSeqlens[s + 1]! - b.cuSeqlens[s]! }));
  return { step: Math.floor(b.index / accum), stride: maxLength, runs };
}

/**
 * A PPO micro-batch: global micro-batch `micro` of rollout `rollout` (of `perRollout`, `stepMicro`
 * a step over all ranks) holding rows `rows` of the rollout (index into its `rolloutBatch` rows;
 * prompt + response, at most seqLen): global row rollout * rolloutBatch + index. The step tells a
 * row's epochs apart (an epoch's minibatches fill whole steps).
 */
export function ppoDropoutRows(
  at: { rollout: number; micro: number; perRollout: number; stepMicro: number; rolloutBatch: number; seqLen: number },
  rows: readonly { index: number; length: number }[],
): DropoutRows {
  const runs = rows.map((r) => ({ row: at.rollout * at.rolloutBatch + r.index, length: r.length }));
  return { step: Math.floor((at.rollout * at.perRollout + at.micro) / at.stepMicro), stride: at.seqLen, runs };
}

/** A pretraining batch: B rows of exactly seqLen tokens, global rows (index W + r) B .. + B - 1 (BatchStream's contract). */
export function pretrainDropoutRows(stream: Placement, b: { index: number; batchSize: number; seqLen: number }, accum: number): DropoutRows {
  const first = firstItem(stream, b.index);
  const runs = Array.from({ length: b.batchSize }, (_, r) => ({ row: first + r, length: b.seqLen }));
  return { step: Math.floor(b.index / accum), stride: b.seqLen, runs };
}
