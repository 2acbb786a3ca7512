// Packed training batches from token shards: a deterministic, resumable stream.
//
// Each category (over all shard sets given) is a pool of documents, visited in an order that
// is a fresh permutation per epoch, a pure function of (seed, category, epoch). A batch is
// B * worldSize rows of T tokens; row g of the whole run draws its category by weight from
// hash(seed, g), then takes the next T tokens of that category's document stream: documents
// are concatenated and cut at T, and a document cut at the end of a row continues at the start
// of that category's next row. Every rank walks the same global rows (cheaply: cursors move
// over document lengths, nothing is read) and materialises only its B rows, so the union of
// the ranks' batches is the one-rank batch of B * worldSize rows.
//
// Per row: positions restart at 0 at every document piece (a piece is all a row's attention
// sees of that document); cuSeqlens (over the flattened B * T tokens) close a segment at every
// document boundary and every row end, so attention never crosses documents or rows; the
// target of a token is the next token of its document, or IGNORE_INDEX (-100) when the
// document ends there. The stream's position is a small JSON object; restoring it continues
// with exactly the batches that would have come next.
import { PatentGPTError } from '../errors.js';
import { hash32, hashUniform, permutation } from '../util/rng.js';
import type { Shard, ShardSet } from './shards.js';

export const IGNORE_INDEX = -100;

export type Split = 'train' | 'val' | 'all';

export interface BatchStreamOptions {
  /** Rows per batch on this rank. */
  batchSize: number;
  /** Tokens per row (T). */
  seqLen: number;
  seed: number;
  /**
   * Mixture weights by category (any non-negative numbers; normalised). Categories left out get
   * weight 0. Default: each category in proportion to its tokens.
   */
  weights?: Record<string, number>;
  /** This rank and the number of ranks (data parallelism). Default 0 and 1. */
  rank?: number;
  worldSize?: number;
  /**
   * Which documents: a held-out fraction ('val'), the rest ('train'), or all. A document is
   * held out when hash(its shard's sha256, its index) < valFraction; a category whose documents
   * all miss that mark but has two or more documents holds out the one with the smallest hash,
   * so a tiny corpus still has validation text. Default 'all'.
   */
  split?: Split;
  /** Default 0.01 for 'train'/'val' splits. */
  valFraction?: number;
}

export interface Batch {
  /** Index of this batch in the stream (0-based). */
  index: number;
  batchSize: number;
  seqLen: number;
  /** (B * T) input ids. */
  tokens: Int32Array;
  /** (B * T) next-token targets, IGNORE_INDEX where the document ends. */
  targets: Int32Array;
  /** (B * T) position of each token in its document piece, from 0. */
  positions: Int32Array;
  /** (nseq + 1) cumulative segment lengths over the flattened B * T tokens: 0, ..., B * T. */
  cuSeqlens: Int32Array;
  /** Longest segment (for kernels that want it). */
  maxSeqlen: number;
  /** Number of targets that are not IGNORE_INDEX (the loss's denominator). */
  targetCount: number;
  /** Category of each row. */
  categories: string[];
}

interface Cursor {
  epoch: number;
  /** Index into the epoch's permutation. */
  doc: number;
  /** Token offset inside that document. */
  offset: number;
}

/** Where a stream stands: JSON-able, a few numbers per category. */
export interface StreamPosition {
  version: 1;
  /** Batches already produced. */
  batch: number;
  /** Global rows already consumed (batch * batchSize * worldSize). */
  row: number;
  cursors: Record<string, Cursor>;
  /** Hash of what the position is only valid for: shards, split, weights, shapes, seed. */
  fingerprint: string;
}

interface Pool {
  name: string;
  weight: number;
  /** Shard (index into this.shards) and document of each pool entry. */
  shard: Uint32Array;
  doc: Uint32Array;
  tokens: number;
}

export class BatchStream {
  readonly batchSize: number;
  readonly seqLen: number;
  readonly seed: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly split: Split;
  private readonly shards: Shard[];
  private readonly pools: Pool[];
  /** Cumulative normalised weights, for the category draw. */
  private readonly cumulative: Float64Array;
  private readonly fingerprint: string;
  private cursors: Cursor[];
  private perms: ({ epoch: number; perm: Uint32Array } | null)[];
  private batch = 0;
  private row = 0;
  private readonly one = new Int32Array(1);

  constructor(sets: readonly ShardSet[], opts: BatchStreamOptions, position?: StreamPosition) {
    const posInt = (v: number | undefined, name: string, min: number): number => {
      if (!Number.isSafeInteger(v) || (v as number) < min)
        throw new PatentGPTError('E_ARGUMENT', `BatchStream: ${name} must be an integer >= ${min}, got ${v}`);
      return v as number;
    };
    this.batchSize = posInt(opts.batchSize, 'batchSize', 1);
    this.seqLen = posInt(opts.seqLen, 'seqLen', 1);
    this.seed = posInt(opts.seed, 'seed', 0);
    this.worldSize = posInt(opts.worldSize ?? 1, 'worldSize', 1);
    this.rank = posInt(opts.rank ?? 0, 'rank', 0);
    if (this.rank >= this.worldSize) throw new PatentGPTError('E_ARGUMENT', `BatchStream: rank ${this.rank} is not below worldSize ${this.worldSize}`);
    this.split = opts.split ?? 'all';
    if (!['train', 'val', 'all'].includes(this.split)) throw new PatentGPTError('E_ARGUMENT', `BatchStream: split must be train, val or all, got ${this.split}`);
    const valFraction = opts.valFraction ?? 0.01;
    if (!(valFraction >= 0 && valFraction < 1)) throw new PatentGPTError('E_ARGUMENT', `BatchStream: valFraction must be in [0, 1), got ${valFraction}`);
    if (sets.length === 0) throw new PatentGPTError('E_ARGUMENT', 'BatchStream: no shard sets given');
    const vocab = sets[0]!.vocabSize;
    for (const s of sets)
      if (s.vocabSize !== vocab)
        throw new PatentGPTError('E_DATA', `${s.manifestPath}: vocabSize: ${s.vocabSize} differs from ${sets[0]!.manifestPath}'s ${vocab}; mix shards of one tokenizer`);
    this.shards = sets.flatMap((s) => [...s.shards]);

    // Pools per category: the documents of this split with at least one token.
    const byCat = new Map<string, number[]>();
    this.shards.forEach((s, i) => {
      const list = byCat.get(s.category) ?? [];
      list.push(i);
      byCat.set(s.category, list);
    });
    const names = [...byCat.keys()].sort();
    if (opts.weights) {
      for (const [k, w] of Object.entries(opts.weights)) {
        if (!(w >= 0) || !Number.isFinite(w)) throw new PatentGPTError('E_ARGUMENT', `BatchStream: weights.${k} must be a non-negative number, got ${w}`);
        if (w > 0 && !byCat.has(k))
          throw new PatentGPTError('E_DATA', `BatchStream: weights.${k}: no shard has category "${k}" (the shards have: ${names.join(', ')})`);
      }
    }
    const pools: Pool[] = [];
    for (const name of names) {
      const weight0 = opts.weights ? (opts.weights[name] ?? 0) : undefined;
      if (weight0 === 0) continue;
      const pool = this.buildPool(name, byCat.get(name)!, valFraction);
      if (pool.tokens === 0) {
        if (this.split === 'val' || weight0 === undefined) continue; // nothing held out (or no text) here: leave the category out
        throw new PatentGPTError('E_DATA', `BatchStream: category "${name}" has weight ${weight0} but no ${this.split === 'all' ? '' : this.split + ' '}tokens`);
      }
      pool.weight = weight0 ?? pool.tokens;
      pools.push(pool);
    }
    if (pools.length === 0)
      throw new PatentGPTError('E_DATA', `BatchStream: no ${this.split === 'all' ? '' : this.split + ' '}tokens in the shards for the weights given`);
    this.pools = pools;
    const total = pools.reduce((a, p) => a + p.weight, 0);
    this.cumulative = new Float64Array(pools.length);
    let acc = 0;
    pools.forEach((p, i) => {
      acc += p.weight / total;
      this.cumulative[i] = acc;
    });
    this.cumulative[pools.length - 1] = 1;

    const fp = hash32(
      'stream',
      this.seed,
      this.seqLen,
      this.batchSize * this.worldSize,
      this.split,
      String(valFraction),
      ...pools.flatMap((p) => [p.name, String(p.weight)]),
      ...this.shards.map((s) => s.sha256),
    );
    this.fingerprint = fp.toString(16).padStart(8, '0');
    this.cursors = pools.map(() => ({ epoch: 0, doc: 0, offset: 0 }));
    this.perms = pools.map(() => null);
    if (position) this.restore(position);
  }

  /** The categories this stream draws from and their normalised weights. */
  get mixture(): { category: string; weight: number; tokens: number; documents: number }[] {
    return this.pools.map((p, i) => ({
      category: p.name,
      weight: this.cumulative[i]! - (i > 0 ? this.cumulative[i - 1]! : 0),
      tokens: p.tokens,
      documents: p.doc.length,
    }));
  }

  /** Where the stream stands now (before the next batch). */
  position(): StreamPosition {
    const cursors: Record<string, Cursor> = {};
    this.pools.forEach((p, i) => (cursors[p.name] = { ...this.cursors[i]! }));
    return { version: 1, batch: this.batch, row: this.row, cursors, fingerprint: this.fingerprint };
  }

  /** Continues from a position() of a stream over the same shards and options. */
  restore(pos: StreamPosition): void {
    const bad = (field: string, why: string): never => {
      throw new PatentGPTError('E_DATA', `data position: ${field}: ${why}`);
    };
    if (typeof pos !== 'object' || pos === null) bad('position', 'must be an object');
    if (pos.version !== 1) bad('version', `must be 1, got ${JSON.stringify(pos.version)}`);
    if (pos.fingerprint !== this.fingerprint)
      bad('fingerprint', `${pos.fingerprint} was saved for other shards, weights, split, seed or batch shape than this stream's (${this.fingerprint}); resume with the same data config`);
    if (!Number.isSafeInteger(pos.batch) || pos.batch < 0) bad('batch', `must be a non-negative integer, got ${pos.batch}`);
    if (pos.row !== pos.batch * this.batchSize * this.worldSize) bad('row', `${pos.row} does not match batch ${pos.batch}`);
    const cursors = this.pools.map((p) => {
      const c = pos.cursors?.[p.name];
      if (!c) return bad(`cursors.${p.name}`, 'missing');
      for (const k of ['epoch', 'doc', 'offset'] as const)
        if (!Number.isSafeInteger(c[k]) || c[k] < 0) bad(`cursors.${p.name}.${k}`, `must be a non-negative integer, got ${c[k]}`);
      if (c.doc >= p.doc.length) bad(`cursors.${p.name}.doc`, `${c.doc} is past the ${p.doc.length} documents`);
      return { epoch: c.epoch, doc: c.doc, offset: c.offset };
    });
    this.cursors = cursors;
    this.batch = pos.batch;
    this.row = pos.row;
    this.cursors.forEach((c, i) => {
      const len = this.docLen(i, c);
      if (c.offset >= len) bad(`cursors.${this.pools[i]!.name}.offset`, `${c.offset} is past the document's ${len} tokens`);
    });
  }

  /** Back to the first batch (an evaluation stream reads the same batches every time). */
  reset(): void {
    this.cursors = this.pools.map(() => ({ epoch: 0, doc: 0, offset: 0 }));
    this.batch = 0;
    this.row = 0;
  }

  /** The next batch of this rank. */
  next(): Batch {
    const B = this.batchSize;
    const T = this.seqLen;
    const tokens = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    const positions = new Int32Array(B * T);
    const cu: number[] = [0];
    const categories: string[] = [];
    const rows = B * this.worldSize;
    const first = this.rank * B;
    for (let r = 0; r < rows; r++) {
      const p = this.drawCategory(this.row + r);
      const mine = r >= first && r < first + B;
      if (mine) {
        categories.push(this.pools[p]!.name);
        this.fillRow(p, (r - first) * T, tokens, targets, positions, cu);
      } else this.skipRow(p);
    }
    let maxSeqlen = 0;
    for (let i = 1; i < cu.length; i++) maxSeqlen = Math.max(maxSeqlen, cu[i]! - cu[i - 1]!);
    let targetCount = 0;
    for (let i = 0; i < targets.length; i++) if (targets[i] !== IGNORE_INDEX) targetCount++;
    const batch: Batch = {
      index: this.batch,
      batchSize: B,
      seqLen: T,
      tokens,
      targets,
      positions,
      cuSeqlens: Int32Array.from(cu),
      maxSeqlen,
      targetCount,
      categories,
    };
    this.batch++;
    this.row += rows;
    return batch;
  }

  *[Symbol.iterator](): Iterator<Batch> {
    for (;;) yield this.next();
  }

  // ---- internals

  private buildPool(name: string, shardIds: number[], valFraction: number): Pool {
    const shard: number[] = [];
    const doc: number[] = [];
    let tokens = 0;
    const keep = (s: number, d: number): void => {
      const len = this.shards[s]!.docLength(d);
      if (len === 0) return;
      shard.push(s);
      doc.push(d);
      tokens += len;
    };
    if (this.split === 'all' || valFraction === 0) {
      if (this.split !== 'val') for (const s of shardIds) for (let d = 0; d < this.shards[s]!.documents; d++) keep(s, d);
    } else {
      // Held-out rule: hash < valFraction; else the category's smallest hash when it has >= 2 documents.
      let count = 0;
      let anyVal = false;
      let best = { u: 2, s: -1, d: -1 };
      for (const s of shardIds) {
        const sh = this.shards[s]!;
        for (let d = 0; d < sh.documents; d++) {
          if (sh.docLength(d) === 0) continue;
          count++;
          const u = hashUniform('val', sh.sha256, d);
          if (u < valFraction) anyVal = true;
          if (u < best.u) best = { u, s, d };
        }
      }
      const forced = !anyVal && count >= 2 ? best : { s: -1, d: -1 };
      for (const s of shardIds) {
        const sh = this.shards[s]!;
        for (let d = 0; d < sh.documents; d++) {
          const isVal = hashUniform('val', sh.sha256, d) < valFraction || (s === forced.s && d === forced.d);
          if (isVal === (this.split === 'val')) keep(s, d);
        }
      }
    }
    return { name, weight: 0, shard: Uint32Array.from(shard), doc: Uint32Array.from(doc), tokens };
  }

  private drawCategory(row: number): number {
    if (this.pools.length === 1) return 0;
    const u = hashUniform('row', this.seed, row);
    const c = this.cumulative;
    let lo = 0;
    let hi = c.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (u < c[mid]!) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  private perm(p: number, epoch: number): Uint32Array {
    const cached = this.perms[p];
    if (cached && cached.epoch === epoch) return cached.perm;
    const pool = this.pools[p]!;
    const perm = permutation(pool.doc.length, 'epoch', this.seed, pool.name, epoch);
    this.perms[p] = { epoch, perm };
    return perm;
  }

  /** The (shard, document) under a cursor. */
  private docAt(p: number, c: Cursor): { shard: Shard; doc: number } {
    const pool = this.pools[p]!;
    const k = this.perm(p, c.epoch)[c.doc]!;
    return { shard: this.shards[pool.shard[k]!]!, doc: pool.doc[k]! };
  }

  private docLen(p: number, c: Cursor): number {
    const { shard, doc } = this.docAt(p, c);
    return shard.docLength(doc);
  }

  private advanceDoc(p: number, c: Cursor): void {
    c.offset = 0;
    c.doc++;
    if (c.doc === this.pools[p]!.doc.length) {
      c.doc = 0;
      c.epoch++;
    }
  }

  private skipRow(p: number): void {
    const c = this.cursors[p]!;
    let n = 0;
    while (n < this.seqLen) {
      const len = this.docLen(p, c);
      const take = Math.min(len - c.offset, this.seqLen - n);
      n += take;
      c.offset += take;
      if (c.offset === len) this.advanceDoc(p, c);
    }
  }

  private fillRow(p: number, base: number, tokens: Int32Array, targets: Int32Array, positions: Int32Array, cu: number[]): void {
    const c = this.cursors[p]!;
    const T = this.seqLen;
    let n = 0;
    while (n < T) {
      const { shard, doc } = this.docAt(p, c);
      const start = shard.offsets[doc]!;
      const len = shard.offsets[doc + 1]! - start;
      const take = Math.min(len - c.offset, T - n);
      const at = base + n;
      shard.read(start + c.offset, take, tokens, at);
      for (let j = 0; j < take; j++) positions[at + j] = j;
      for (let j = 0; j + 1 < take; j++) targets[at + j] = tokens[at + j + 1]!;
      c.offset += take;
      n += take;
      if (c.offset === len) {
        targets[at + take - 1] = IGNORE_INDEX;
        this.advanceDoc(p, c);
      } else {
        // The row is full mid-document: the last target is the document's next token.
        shard.read(start + c.offset, 1, this.one, 0);
        targets[at + take - 1] = this.one[0]!;
      }
      cu.push(base + n);
    }
  }
}
