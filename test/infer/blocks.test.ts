// Block pool bookkeeping without kernels: counts, copy-on-write, prefix caching, LRU eviction.
import { describe, expect, it } from 'vitest';
import { BlockPool, blockHash, blocksForBudget, kvBytesPerToken } from '../../src/infer/blocks.js';

const seq = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

describe('BlockPool', () => {
  it('sizes the pool from a byte budget', () => {
    const perToken = kvBytesPerToken({ nLayers: 2, nKvHeads: 4, headDim: 8 });
    expect(perToken).toBe(2 * 2 * 4 * 8 * 4);
    expect(blocksForBudget(perToken * 16 * 10 + 5, 16, perToken)).toBe(10);
    expect(() => blocksForBudget(0, 16, perToken)).toThrow(/budget/);
  });

  it('allocates, grows and frees block tables', () => {
    const pool = new BlockPool(8, 4);
    const { table, cachedTokens } = pool.allocatePrefix(1, seq(10));
    expect(cachedTokens).toBe(0);
    expect(pool.canAppend(table, 0, 10)).toBe(true);
    expect(pool.prepareWrite(table, 0, 10)).toEqual([]);
    expect(table.blocks.length).toBe(3);
    expect(pool.stats().used).toBe(3);
    expect(pool.canAppend(table, 10, 33)).toBe(false); // 9 blocks > 8
    expect(pool.blocksNeeded(table, 10, 12)).toBe(0);
    expect(pool.blocksNeeded(table, 10, 13)).toBe(1);
    pool.free(table);
    expect(pool.stats()).toMatchObject({ used: 0, free: 8 });
    expect(() => pool.free({ id: 9, blocks: [0], hashes: [] } as never)).toThrow(/freed twice/);
  });

  it('chains hashes: equal blocks after different prefixes differ', () => {
    const a = blockHash(null, [1, 2]);
    expect(blockHash(a, [3, 4])).not.toBe(blockHash(blockHash(null, [9, 9]), [3, 4]));
    expect(blockHash(a, [3, 4])).toBe(blockHash(blockHash(null, [1, 2]), [3, 4]));
  });

  it('reuses full prompt blocks, never the block of the last token', () => {
    const pool = new BlockPool(16, 4);
    const prompt = seq(12);
    const a = pool.allocatePrefix(1, prompt).table;
    pool.prepareWrite(a, 0, 12);
    pool.markComputed(a, prompt, 12);
    expect(a.hashes.length).toBe(3);
    // Same 12 tokens: blocks 0 and 1 hit; block 2 holds the last token and is recomputed.
    const b = pool.allocatePrefix(2, prompt);
    expect(b.cachedTokens).toBe(8);
    expect(b.table.blocks).toEqual(a.blocks.slice(0, 2));
    expect(pool.refCount(a.blocks[0]!)).toBe(2);
    // A longer prompt sharing 8 tokens then diverging.
    const c = pool.allocatePrefix(3, [...seq(8), 100, 101, 102, 103, 104]);
    expect(c.cachedTokens).toBe(8);
    const s = pool.stats();
    expect(s.prefixHits).toBe(4);
    expect(s.prefixQueries).toBe(2 + 2 + 3); // a: 2 misses, b: 2 hits, c: 2 hits + 1 miss
    // A lookup undone (the sequence was not admitted) leaves the counters and counts as before.
    const d = pool.allocatePrefix(4, prompt);
    expect(d.lookups).toBe(2);
    pool.cancelPrefix(d.table, d.lookups);
    expect(pool.stats()).toEqual(s);
    expect(pool.refCount(a.blocks[0]!)).toBe(3);
  });

  it('keeps freed cached blocks findable and evicts least recently freed first', () => {
    const pool = new BlockPool(4, 2);
    const p1 = [1, 2, 3, 4, 5];
    const t1 = pool.allocatePrefix(1, p1).table;
    pool.prepareWrite(t1, 0, 5);
    pool.markComputed(t1, p1, 5);
    pool.free(t1);
    expect(pool.stats()).toMatchObject({ used: 0, free: 4, cachedFree: 2 });
    // Still a hit after free.
    const t2 = pool.allocatePrefix(2, p1);
    expect(t2.cachedTokens).toBe(4);
    expect(pool.stats().cachedFree).toBe(0);
    pool.free(t2.table);
    // Fill the pool with new content: plain blocks go first, then the cached tail, then the head.
    const t3 = pool.allocatePrefix(3, [9, 9, 9]).table;
    pool.prepareWrite(t3, 0, 3); // takes the 2 plain blocks
    expect(pool.stats().cachedFree).toBe(2);
    pool.prepareWrite(t3, 3, 5); // evicts one cached block: the tail ([3, 4]) freed first
    expect(pool.stats().cachedFree).toBe(1);
    const t4 = pool.allocatePrefix(4, p1);
    expect(t4.cachedTokens).toBe(2); // head [1, 2] survives, tail is gone
    pool.free(t4.table);
    pool.free(t3);
    expect(pool.stats().used).toBe(0);
  });

  it('copies a shared partly written block before a write (copy-on-write)', () => {
    const pool = new BlockPool(8, 4);
    const toks = seq(6);
    const parent = pool.allocatePrefix(1, toks).table;
    pool.prepareWrite(parent, 0, 6);
    pool.markComputed(parent, toks, 6);
    const child = pool.fork(parent, 2);
    expect(pool.refCount(parent.blocks[1]!)).toBe(2);
    expect(pool.blocksNeeded(child, 6, 7)).toBe(1);
    const copies = pool.prepareWrite(child, 6, 7);
    expect(copies).toEqual([{ src: parent.blocks[1], dst: child.blocks[1] }]);
    expect(child.blocks[0]).toBe(parent.blocks[0]); // the full first block stays shared
    expect(child.blocks[1]).not.toBe(parent.blocks[1]);
    expect(pool.refCount(parent.blocks[1]!)).toBe(1);
    // The parent now owns its last block alone: no copy.
    expect(pool.prepareWrite(parent, 6, 7)).toEqual([]);
    pool.free(parent);
    pool.free(child);
    expect(pool.stats().used).toBe(0);
  });

  it('survives a random workload with consistent counts', () => {
    const pool = new BlockPool(32, 4);
    let state = 12345;
    const rand = (n: number): number => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state % n;
    };
    const live: { table: ReturnType<BlockPool['allocatePrefix']>['table']; tokens: number[]; len: number }[] = [];
    for (let step = 0; step < 2000; step++) {
      const r = rand(10);
      if (r < 3 || live.length === 0) {
        const tokens = Array.from({ length: 1 + rand(30) }, () => rand(3)); // few distinct values: many hits
        const { table, cachedTokens } = pool.allocatePrefix(step, tokens);
        if (pool.canAppend(table, cachedTokens, tokens.length)) {
          pool.prepareWrite(table, cachedTokens, tokens.length);
          pool.markComputed(table, tokens, tokens.length);
          live.push({ table, tokens, len: tokens.length });
        } else pool.free(table);
      } else if (r < 5) {
        const s = live.splice(rand(live.length), 1)[0]!;
        pool.free(s.table);
      } else {
        const s = live[rand(live.length)]!;
        if (pool.canAppend(s.table, s.len, s.len + 1)) {
          pool.prepareWrite(s.table, s.len, s.len + 1);
          s.tokens.push(rand(3));
          s.len++;
          pool.markComputed(s.table, s.tokens, s.len);
        }
      }
      // Every block's count equals the number of tables holding it.
      const counts = new Int32Array(32);
      for (const s of live) for (const b of s.table.blocks) counts[b]!++;
      for (let b = 0; b < 32; b++) expect(pool.refCount(b)).toBe(counts[b]);
      expect(pool.stats().used).toBe(counts.filter((c) => c > 0).length);
    }
    for (const s of live) pool.free(s.table);
    expect(pool.stats().used).toBe(0);
  });
});
