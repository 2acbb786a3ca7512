// The SFT stage's data stream: examples packed (or padded) into rows once, then batches of B
// rows per rank, the rows of each epoch in a fresh order that is a pure function of (seed,
// epoch). Global row g of the run is row perm(seed, epoch)[g mod rows] of epoch g div rows, and
// rank r of W takes rows [r * B, (r + 1) * B) of every global batch of B * W, so the position is
// the batch count alone and restoring it continues with exactly the batches that came next.
import { PatentGPTError } from '../../errors.js';
import { hash32, permutation } from '../../util/rng.js';
import { collateRows, packExamples, type PackOptions, type SftBatch, type SftRow } from './pack.js';
import type { SftExample } from './render.js';

export interface SftStreamOptions extends PackOptions {
  /** Rows per batch on this rank. */
  batchSize: number;
  /** Seed of the row order (default 0). */
  seed?: number;
  /** Shuffle rows per epoch (default true; false: packed order every epoch, for parity runs). */
  shuffle?: boolean;
  rank?: number;
  worldSize?: number;
}

export interface SftStreamPosition {
  version: 1;
  kind: 'sft';
  /** Batches already produced. */
  batch: number;
  /** What the position is only valid for: the examples, packing, batch shape and seed. */
  fingerprint: string;
}

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

export class SftBatchStream {
  readonly rows: readonly SftRow[];
  readonly batchSize: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly fingerprint: string;
  private readonly seed: number;
  private readonly shuffle: boolean;
  private batch = 0;
  private perm: { epoch: number; order: Uint32Array } | null = null;

  constructor(examples: readonly SftExample[], opts: SftStreamOptions, position?: SftStreamPosition) {
    const { batchSize } = opts;
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new PatentGPTError('E_CONFIG', `field "batchSize" must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(this.worldSize) || this.worldSize < 1 || !Number.isInteger(this.rank) || this.rank < 0 || this.rank >= this.worldSize)
      throw new PatentGPTError('E_CONFIG', `rank ${this.rank} of worldSize ${this.worldSize}: need 0 <= rank < worldSize`);
    if (examples.length === 0) throw new PatentGPTError('E_DATA', 'no SFT examples to train on: every record was skipped or the files are empty (see the skip counts)');
    this.batchSize = batchSize;
    this.seed = opts.seed ?? 0;
    this.shuffle = opts.shuffle !== false;
    this.rows = packExamples(examples, opts);
    this.fingerprint = fingerprintOf(examples, opts, this.worldSize);
    if (position) this.restore(position);
  }

  /** Global batches in one pass over the rows (the last one may wrap into the next epoch). */
  get batchesPerEpoch(): number {
    return Math.ceil(this.rows.length / (this.batchSize * this.worldSize));
  }

  private rowAt(g: number): { row: SftRow; epoch: number } {
    const n = this.rows.length;
    const epoch = Math.floor(g / n);
    if (!this.shuffle) return { row: this.rows[g % n]!, epoch };
    if (this.perm?.epoch !== epoch) this.perm = { epoch, order: permutation(n, this.seed, 'sft-rows', epoch) };
    return { row: this.rows[this.perm.order[g % n]!]!, epoch };
  }

  next(): SftStreamBatch {
    const first = (this.batch * this.worldSize + this.rank) * this.batchSize;
    const picked = Array.from({ length: this.batchSize }, (_, r) => this.rowAt(first + r));
    const b = collateRows(picked.map((p) => p.row));
    return { ...b, index: this.batch++, epoch: picked[0]!.epoch };
  }

  position(): SftStreamPosition {
    return { version: 1, kind: 'sft', batch: this.batch, fingerprint: this.fingerprint };
  }

  restore(pos: SftStreamPosition): void {
    const bad = (field: string, why: string): never => {
      throw new PatentGPTError('E_DATA', `SFT data position: ${field}: ${why}`);
    };
    if (typeof pos !== 'object' || pos === null) bad('position', 'must be an object');
    if (pos.version !== 1 || pos.kind !== 'sft') bad('version', `must be an SFT position of version 1, got ${JSON.stringify({ version: pos.version, kind: pos.kind })}`);
    if (pos.fingerprint !== this.fingerprint)
      bad('fingerprint', `${pos.fingerprint} was saved for other data, packing, batch shape or seed than this stream's (${this.fingerprint}); resume with the same data config`);
    if (!Number.isSafeInteger(pos.batch) || pos.batch < 0) bad('batch', `must be a non-negative integer, got ${pos.batch}`);
    this.batch = pos.batch;
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
