// The order in which a batch stream of the fine-tuning stages (SFT rows, preference pairs) reads
// its items: global item g of the run is item perm(seed, epoch)[g mod n] of epoch g div n (in
// stored order without shuffling), and rank r of W takes items [r B, (r + 1) B) of every global
// batch of W B. The position is the batch count, checked against a fingerprint of what the
// stream holds on restore, so resuming continues with exactly the batches that came next. It also
// names the world it was saved in: a run resumed on another number of ranks (launch
// --global-batch) restates it as the same global item, when that is a whole number of this
// world's batches.
import { PatentGPTError } from '../errors.js';
import { permutation } from '../util/rng.js';

export interface EpochOrderOptions {
  /** Items per batch on this rank. */
  batchSize: number;
  /** Seed of the order (default 0). */
  seed?: number;
  /** Shuffle items per epoch (default true; false: stored order every epoch, for parity runs). */
  shuffle?: boolean;
  rank?: number;
  worldSize?: number;
}

export interface EpochOrderPosition<K extends string> {
  version: 1;
  kind: K;
  /** Batches already produced. */
  batch: number;
  /** What the position is only valid for (the items, batch shape, world size and seed). */
  fingerprint: string;
  /** Ranks of the run that saved it (absent in positions saved before it was recorded: same world only). */
  worldSize?: number;
}

/** What a stream names in its errors and positions. */
export interface EpochOrderSpec<K extends string> {
  kind: K;
  /** Names the stream in position errors ("SFT", "preference"). */
  label: string;
  /** The position's kind in words, for the version error ("an SFT position"). */
  positionName: string;
  /** Label of the permutation's random stream ('sft-rows', 'preference-pairs'); changing it changes every shuffled run. */
  permLabel: string;
  /** What a fingerprint covers, for the mismatch error ("data, packing, batch shape or seed"). */
  covers: string;
  /** The E_DATA message when there is nothing to train on. */
  empty: string;
}

/** The order alone; a stream extends it with what its items are (SftBatchStream, PreferenceBatchStream). */
export class EpochOrder<K extends string> {
  readonly batchSize: number;
  readonly rank: number;
  readonly worldSize: number;
  private readonly seed: number;
  private readonly shuffle: boolean;
  private batch = 0;
  private perm: { epoch: number; order: Uint32Array } | null = null;

  readonly fingerprint: string;

  /**
   * `count` items; `fingerprintOf(worldSize)` fingerprints what they are for a world of that many
   * ranks (called again only to check a position saved in another world). Throws E_CONFIG on a
   * bad batch shape, E_DATA when count is 0.
   */
  constructor(readonly count: number, opts: EpochOrderOptions, private readonly fingerprintOf: (worldSize: number) => string, private readonly spec: EpochOrderSpec<K>) {
    const { batchSize } = opts;
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new PatentGPTError('E_CONFIG', `field "batchSize" must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(this.worldSize) || this.worldSize < 1 || !Number.isInteger(this.rank) || this.rank < 0 || this.rank >= this.worldSize)
      throw new PatentGPTError('E_CONFIG', `rank ${this.rank} of worldSize ${this.worldSize}: need 0 <= rank < worldSize`);
    if (count === 0) throw new PatentGPTError('E_DATA', spec.empty);
    this.batchSize = batchSize;
    this.seed = opts.seed ?? 0;
    this.shuffle = opts.shuffle !== false;
    this.fingerprint = fingerprintOf(this.worldSize);
  }

  /** Global batches in one pass over the items (the last one may wrap into the next epoch). */
  get batchesPerEpoch(): number {
    return Math.ceil(this.count / (this.batchSize * this.worldSize));
  }

  /** Index of global item g, and its epoch. */
  at(g: number): { index: number; epoch: number } {
    const n = this.count;
    const epoch = Math.floor(g / n);
    if (!this.shuffle) return { index: g % n, epoch };
    if (this.perm?.epoch !== epoch) this.perm = { epoch, order: permutation(n, this.seed, this.spec.permLabel, epoch) };
    return { index: this.perm.order[g % n]!, epoch };
  }

  /** The next batch on this rank: its items' indices, its index in the stream and the epoch of its first item. */
  nextIndices(): { indices: number[]; index: number; epoch: number } {
    const first = (this.batch * this.worldSize + this.rank) * this.batchSize;
    const picked = Array.from({ length: this.batchSize }, (_, r) => this.at(first + r));
    return { indices: picked.map((p) => p.index), index: this.batch++, epoch: picked[0]!.epoch };
  }

  position(): EpochOrderPosition<K> {
    return { version: 1, kind: this.spec.kind, batch: this.batch, fingerprint: this.fingerprint, worldSize: this.worldSize };
  }

  restore(pos: EpochOrderPosition<K>): void {
    const { label, kind, covers, positionName } = this.spec;
    const bad = (field: string, why: string): never => {
      throw new PatentGPTError('E_DATA', `${label} data position: ${field}: ${why}`);
    };
    if (typeof pos !== 'object' || pos === null) bad('position', 'must be an object');
    if (pos.version !== 1 || pos.kind !== kind) bad('version', `must be ${positionName} of version 1, got ${JSON.stringify({ version: pos.version, kind: pos.kind })}`);
    if (!Number.isSafeInteger(pos.batch) || pos.batch < 0) bad('batch', `must be a non-negative integer, got ${pos.batch}`);
    const saved = pos.worldSize;
    if (pos.fingerprint !== this.fingerprint && Number.isSafeInteger(saved) && saved! >= 1 && saved !== this.worldSize && pos.fingerprint === this.fingerprintOf(saved!)) {
      // saved on another number of ranks: the same global item, in this world's batches
      const items = pos.batch * saved! * this.batchSize;
      const per = this.worldSize * this.batchSize;
      if (items % per !== 0)
        bad('batch', `${pos.batch} batches of ${saved} ranks (${items} items) are not a whole number of this run's global batches of ${this.worldSize} x ${this.batchSize}; resume on a number of ranks that divides it (launch --global-batch keeps an optimizer step whole on any divisor of gradAccum)`);
      this.batch = items / per;
      return;
    }
    if (pos.fingerprint !== this.fingerprint)
      bad('fingerprint', `${pos.fingerprint} was saved for other ${covers} than this stream's (${this.fingerprint}); resume with the same data config`);
    this.batch = pos.batch;
  }
}
