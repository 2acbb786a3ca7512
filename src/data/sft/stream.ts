// The SFT stage's data stream: examples packed (or padded) into rows once, then batches of B
// rows per rank, the rows of each epoch in a fresh order that is a pure function of (seed,
// epoch) (src/data/epoch-order.ts: global row g, rank r of W, the position the batch count alone).
import { hash32 } from '../../util/rng.js';
import { EpochOrder, type EpochOrderOptions, type EpochOrderPosition, type EpochOrderSpec } from '../epoch-order.js';
import { collateRows, packExamples, type PackOptions, type SftBatch, type SftRow } from './pack.js';
import type { SftExample } from './render.js';

export interface SftStreamOptions extends PackOptions, EpochOrderOptions {}

export type SftStreamPosition = EpochOrderPosition<'sft'>;

export interface SftStreamBatch extends SftBatch {
  /** Index of the batch in the stream (0-based). */
  index: number;
  /** Epoch of the batch's first row. */
  epoch: number;
}

function fingerprintOf(examples: readonly SftExample[], opts: SftStreamOptions, worldSize: number): string {
  const parts: number[] = [examples.length];
  for (const e of examples) {
    let h = e.ids.length;
    for (let i = 0; i < e.ids.length; i++) h = (Math.imul(h, 31) + e.ids[i]! + (e.labels[i]! < 0 ? 7 : 0)) >>> 0;
    parts.push(h);
  }
  const h = hash32(...parts, opts.seqLen, opts.mode ?? 'pack', opts.strategy ?? 'greedy', opts.padToSeqLen === false ? 0 : 1, opts.batchSize, worldSize, opts.seed ?? 0, opts.shuffle === false ? 0 : 1);
  return h.toString(16).padStart(8, '0');
}

const SFT_ORDER: EpochOrderSpec<'sft'> = {
  kind: 'sft', label: 'SFT', positionName: 'an SFT position', permLabel: 'sft-rows', covers: 'data, packing, batch shape or seed',
  empty: 'no SFT examples to train on: every record was skipped or the files are empty (see the skip counts)',
};

export class SftBatchStream extends EpochOrder<'sft'> {
  readonly rows: readonly SftRow[];

  constructor(examples: readonly SftExample[], opts: SftStreamOptions, position?: SftStreamPosition) {
    const rows = packExamples(examples, opts);
    super(rows.length, opts, (worldSize) => fingerprintOf(examples, opts, worldSize), SFT_ORDER);
    this.rows = rows;
    if (position) this.restore(position);
  }

  next(): SftStreamBatch {
    const { indices, index, epoch } = this.nextIndices();
    return { ...collateRows(indices.map((i) => this.rows[i]!)), index, epoch };
  }
}

/** Validation batches: the examples packed the same way, in order, B rows a batch (the last may be short). */
export function sftEvalBatches(examples: readonly SftExample[], opts: PackOptions & { batchSize: number }): SftBatch[] {
  if (examples.length === 0) return [];
  const rows = packExamples(examples, opts);
  const out: SftBatch[] = [];
  for (let i = 0; i < rows.length; i += opts.batchSize) out.push(collateRows(rows.slice(i, i + opts.batchSize)));
  return out;
}
