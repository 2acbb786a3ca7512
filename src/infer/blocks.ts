// Paged KV cache bookkeeping (vLLM's block manager), plain host code with no tensors.
//
// The cache is a pool of `numBlocks` physical blocks of `blockSize` token slots each (one pool
// shared by every layer: block b holds slots [b * blockSize, (b + 1) * blockSize) in each
// layer's K and V caches). A sequence owns a block table: logical block i -> physical block.
//
// - Reference counts: a block may sit in several tables (forked sequences, shared prefixes).
//   Writing into a block whose count is > 1 first copies it (copy-on-write); the caller does
//   the copy of the cache contents, this module only says which block to copy where.
// - Prefix caching: when a block is full of computed tokens it gets a content hash, chained
//   with the previous block's hash so a hash names the whole prefix up to that block. A new
//   sequence looks its full prompt blocks up by hash and reuses them.
// - A block whose count drops to 0 keeps its hash and joins an LRU list of free cached blocks;
//   it can still be hit until allocation evicts it (least recently freed first). Blocks with
//   no hash go to a plain free list, which allocation drains first.
import { createHash } from 'node:crypto';
import { PatentGPTError } from '../errors.js';

/** Bytes that one token takes in the KV cache of a model: K and V, every layer. */
export function kvBytesPerToken(shape: { nLayers: number; nKvHeads: number; headDim: number; bytesPerElement?: number }): number {
  return 2 * shape.nLayers * shape.nKvHeads * shape.headDim * (shape.bytesPerElement ?? 4);
}

/** How many blocks of `blockSize` tokens a budget of `bytes` holds. */
export function blocksForBudget(bytes: number, blockSize: number, bytesPerToken: number): number {
  if (!(bytes > 0) || !Number.isFinite(bytes)) throw new PatentGPTError('E_ARGUMENT', `KV cache budget must be a positive number of bytes, got ${bytes}`);
  return Math.floor(bytes / (blockSize * bytesPerToken));
}

/** Hash of a full block: its tokens chained with the hash of the prefix before it. */
export function blockHash(parent: string | null, tokens: ArrayLike<number>): string {
  const h = createHash('sha256');
  h.update(parent ?? 'root');
  h.update(new Uint8Array(Int32Array.from(tokens).buffer));
  return h.digest('hex');
}

/** A copy the caller must make in every layer's K and V caches before writing. */
export interface BlockCopy {
  src: number;
  dst: number;
}

export interface BlockStats {
  numBlocks: number;
  /** Blocks in some block table. */
  used: number;
  /** Blocks in no table (plain free plus free cached). */
  free: number;
  /** Free blocks that still hold a reusable cached prefix. */
  cachedFree: number;
  /** Full prompt blocks looked up / found in the prefix cache since creation. */
  prefixQueries: number;
  prefixHits: number;
}

/** The block table and hash chain of one sequence. */
export class BlockTable {
  /** Physical block of each logical block. */
  readonly blocks: number[] = [];
  /** Hash of each full, hashed block (a prefix of `blocks`). */
  readonly hashes: string[] = [];
  constructor(readonly id: number) {}
}

export class BlockPool {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly #refs: Int32Array;
  readonly #hashOf: (string | null)[];
  readonly #byHash = new Map<string, number>();
  /** Free blocks without a hash (a stack). */
  readonly #plain: number[] = [];
  /** Free blocks with a hash, least recently freed first (Map keeps insertion order: O(1) LRU). */
  readonly #lru = new Map<number, true>();
  #queries = 0;
  #hits = 0;
  readonly enablePrefixCaching: boolean;

  constructor(numBlocks: number, blockSize = 16, opts: { enablePrefixCaching?: boolean } = {}) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new PatentGPTError('E_ARGUMENT', `BlockPool: numBlocks must be an integer >= 1, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new PatentGPTError('E_ARGUMENT', `BlockPool: blockSize must be an integer >= 1, got ${blockSize}`);
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.enablePrefixCaching = opts.enablePrefixCaching ?? true;
    this.#refs = new Int32Array(numBlocks);
    this.#hashOf = new Array<string | null>(numBlocks).fill(null);
    for (let b = numBlocks - 1; b >= 0; b--) this.#plain.push(b);
  }

  /** Blocks that allocation can hand out now (plain free + evictable cached). */
  get numFree(): number {
    return this.#plain.length + this.#lru.size;
  }

  refCount(block: number): number {
    return this.#refs[block]!;
  }

  hashOf(block: number): string | null {
    return this.#hashOf[block]!;
  }

  stats(): BlockStats {
    return {
      numBlocks: this.numBlocks, used: this.numBlocks - this.numFree, free: this.numFree, cachedFree: this.#lru.size,
      prefixQueries: this.#queries, prefixHits: this.#hits,
    };
  }

  /** Blocks needed to hold `numTokens` tokens. */
  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /** A block with count 1: a plain free one, else the least recently freed cached one (its hash is dropped). */
  #allocate(): number {
    let b = this.#plain.pop();
    if (b === undefined) {
      const first = this.#lru.keys().next();
      if (first.done) throw new PatentGPTError('E_KV_CACHE_FULL', 'BlockPool: no free block (the caller must check canAppend first)');
      b = first.value;
      this.#lru.delete(b);
      this.#byHash.delete(this.#hashOf[b]!);
      this.#hashOf[b] = null;
    }
    this.#refs[b] = 1;
    return b;
  }

  #incRef(b: number): void {
    if (this.#refs[b] === 0) this.#lru.delete(b); // a free cached block comes back to life
    this.#refs[b]!++;
  }

  #decRef(b: number): void {
    if (this.#refs[b]! <= 0) throw new PatentGPTError('E_INTERNAL', `BlockPool: block ${b} freed twice`);
    if (--this.#refs[b]! > 0) return;
    if (this.#hashOf[b] !== null) this.#lru.set(b, true);
    else this.#plain.push(b);
  }

  /**
   * Finds the longest run of cached full blocks at the start of `tokens` and puts them in a new
   * table (counts incremented). Returns the table and how many tokens it covers. Only whole
   * blocks are reused, and never the block holding the last token (its logits must be computed).
   */
  allocatePrefix(id: number, tokens: ArrayLike<number>): { table: BlockTable; cachedTokens: number; lookups: number } {
    const table = new BlockTable(id);
    if (!this.enablePrefixCaching) return { table, cachedTokens: 0, lookups: 0 };
    const before = this.#queries;
    const fullBlocks = Math.floor((tokens.length - 1) / this.blockSize);
    let parent: string | null = null;
    for (let i = 0; i < fullBlocks; i++) {
      const h = blockHash(parent, sliceOf(tokens, i * this.blockSize, (i + 1) * this.blockSize));
      this.#queries++;
      const b = this.#byHash.get(h);
      if (b === undefined) {
        this.#queries += fullBlocks - i - 1; // the rest are misses too: a chain breaks at the first miss
        break;
      }
      this.#hits++;
      this.#incRef(b);
      table.blocks.push(b);
      table.hashes.push(h);
      parent = h;
    }
    return { table, cachedTokens: table.blocks.length * this.blockSize, lookups: this.#queries - before };
  }

  /**
   * Undoes allocatePrefix for a sequence that could not be admitted after all: frees the table
   * and takes its lookups out of the hit-rate counters (it will look up again when admitted).
   */
  cancelPrefix(table: BlockTable, lookups: number): void {
    this.#hits -= table.blocks.length;
    this.#queries -= lookups;
    this.free(table);
  }

  /**
   * Whether `table` can be made to hold tokens [writeFrom, numTokens) (see prepareWrite), given
   * `reserved` free blocks promised elsewhere.
   */
  canAppend(table: BlockTable, writeFrom: number, numTokens: number, reserved = 0): boolean {
    return this.blocksNeeded(table, writeFrom, numTokens) + reserved <= this.numFree;
  }

  /** Free blocks that prepareWrite(table, writeFrom, numTokens) takes: growth plus copies. */
  blocksNeeded(table: BlockTable, writeFrom: number, numTokens: number): number {
    let n = Math.max(0, this.blocksFor(numTokens) - table.blocks.length);
    for (let i = Math.floor(writeFrom / this.blockSize); i < table.blocks.length && i * this.blockSize < numTokens; i++)
      if (this.#refs[table.blocks[i]!]! > 1) n++;
    return n;
  }

  /**
   * Makes `table` able to hold tokens [writeFrom, numTokens): grows it, and gives it a private
   * copy of every shared block that a write in that range would touch (copy-on-write). Returns
   * the copies the caller must make in the caches before writing.
   */
  prepareWrite(table: BlockTable, writeFrom: number, numTokens: number): BlockCopy[] {
    const copies: BlockCopy[] = [];
    const first = Math.floor(writeFrom / this.blockSize);
    for (let i = first; i < table.blocks.length && i * this.blockSize < numTokens; i++) {
      const b = table.blocks[i]!;
      if (this.#refs[b]! > 1) {
        const dst = this.#allocate();
        this.#decRef(b);
        table.blocks[i] = dst;
        table.hashes.length = Math.min(table.hashes.length, i); // the copy will diverge
        copies.push({ src: b, dst });
      }
    }
    while (table.blocks.length < this.blocksFor(numTokens)) table.blocks.push(this.#allocate());
    return copies;
  }

  /**
   * Records that tokens [0, numComputed) of the sequence are in the cache: every full block not
   * yet hashed gets its chained hash and becomes findable by later sequences.
   */
  markComputed(table: BlockTable, tokens: ArrayLike<number>, numComputed: number): void {
    if (!this.enablePrefixCaching) return;
    const full = Math.min(Math.floor(numComputed / this.blockSize), table.blocks.length);
    for (let i = table.hashes.length; i < full; i++) {
      const h = blockHash(i === 0 ? null : table.hashes[i - 1]!, sliceOf(tokens, i * this.blockSize, (i + 1) * this.blockSize));
      table.hashes.push(h);
      const b = table.blocks[i]!;
      // The first block to reach a hash owns it; a duplicate computed alongside stays private.
      if (!this.#byHash.has(h) && this.#hashOf[b] === null) {
        this.#byHash.set(h, b);
        this.#hashOf[b] = h;
      }
    }
  }

  /** A second table sharing all of `table`'s blocks (parallel sampling, beam forks). */
  fork(table: BlockTable, id: number): BlockTable {
    const child = new BlockTable(id);
    for (const b of table.blocks) {
      this.#incRef(b);
      child.blocks.push(b);
    }
    child.hashes.push(...table.hashes);
    return child;
  }

  /** Drops the table's blocks (counts decremented; blocks at 0 become free, cached ones stay findable). */
  free(table: BlockTable): void {
    // Last block first, so that a prefix's tail is evicted before its head.
    for (let i = table.blocks.length - 1; i >= 0; i--) this.#decRef(table.blocks[i]!);
    table.blocks.length = 0;
    table.hashes.length = 0;
  }
}

function sliceOf(tokens: ArrayLike<number>, start: number, end: number): number[] {
  const out: number[] = [];
  for (let i = start; i < end; i++) out.push(tokens[i]!);
  return out;
}
