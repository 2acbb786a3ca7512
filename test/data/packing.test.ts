// Packed batches: targets and boundaries are right, the stream is deterministic from a seed,
// resuming from a saved position continues with identical batches, ranks split one global batch,
// mixture weights are honoured, and the validation split is disjoint from training.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStream, IGNORE_INDEX, type Batch } from '../../src/data/packing.js';
import { ShardSet, writeShards } from '../../src/data/shards.js';

let dir: string;
let set: ShardSet;
/** Every document, by category then by (shard, doc): ids are unique per document so a token tells its document. */
const VOCAB = 5000;
const docsByKey = new Map<number, number[]>();

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-pack-'));
  const docs: { ids: number[]; category: string }[] = [];
  let next = 0;
  for (let i = 0; i < 60; i++) {
    const len = [1, 3, 7, 20, 45, 0][i % 6]!;
    const ids = Array.from({ length: len }, () => next++ % VOCAB);
    docs.push({ ids, category: i % 4 === 0 ? 'law' : 'patent' });
  }
  await writeShards(dir, docs, { vocabSize: VOCAB, maxShardTokens: 120 });
  set = await ShardSet.open(dir);
  for (const s of set.shards) for (let d = 0; d < s.documents; d++) if (s.docLength(d) > 0) docsByKey.set(s.document(d)[0]!, [...s.document(d)]);
});
afterAll(() => {
  set.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function same(a: Batch, b: Batch): void {
  expect([...a.tokens]).toEqual([...b.tokens]);
  expect([...a.targets]).toEqual([...b.targets]);
  expect([...a.positions]).toEqual([...b.positions]);
  expect([...a.cuSeqlens]).toEqual([...b.cuSeqlens]);
  expect(a.categories).toEqual(b.categories);
}

describe('BatchStream', () => {
  it('packs documents with next-token targets, document boundaries and restarting positions', () => {
    const T = 16;
    const s = new BatchStream([set], { batchSize: 3, seqLen: T, seed: 5 });
    for (let k = 0; k < 20; k++) {
      const b = s.next();
      expect(b.tokens.length).toBe(3 * T);
      const cu = b.cuSeqlens;
      expect(cu[0]).toBe(0);
      expect(cu[cu.length - 1]).toBe(3 * T);
      // every row end is a boundary
      for (let r = 1; r <= 3; r++) expect([...cu]).toContain(r * T);
      let count = 0;
      for (let seg = 0; seg + 1 < cu.length; seg++) {
        const [a, e] = [cu[seg]!, cu[seg + 1]!];
        expect(e).toBeGreaterThan(a);
        // a segment is a contiguous run of one document (ids consecutive), positions from 0
        for (let i = a; i < e; i++) {
          expect(b.positions[i]).toBe(i - a);
          if (i + 1 < e) {
            expect(b.tokens[i + 1]).toBe((b.tokens[i]! + 1) % VOCAB);
            expect(b.targets[i]).toBe(b.tokens[i + 1]);
          }
        }
        // the last target of a segment: the document's next token, or IGNORE at its end
        const last = b.tokens[e - 1]!;
        const doc = [...docsByKey.values()].find((d) => d.includes(last))!;
        const at = doc.indexOf(last);
        expect(b.targets[e - 1]).toBe(at + 1 < doc.length ? doc[at + 1] : IGNORE_INDEX);
      }
      for (let i = 0; i < b.targets.length; i++) if (b.targets[i] !== IGNORE_INDEX) count++;
      expect(b.targetCount).toBe(count);
    }
  });

  it('visits every token of an epoch once, in document order', () => {
    const T = 8;
    const s = new BatchStream([set], { batchSize: 1, seqLen: T, seed: 1, weights: { law: 1 } });
    const lawTokens = set.manifest.categories.law!.tokens;
    const seen: number[] = [];
    while (seen.length < lawTokens) seen.push(...s.next().tokens);
    const firstEpoch = seen.slice(0, lawTokens).sort((a, b) => a - b);
    const law = set.shards.filter((sh) => sh.category === 'law').flatMap((sh) => Array.from({ length: sh.documents }, (_, d) => [...sh.document(d)]).flat());
    expect(firstEpoch).toEqual(law.sort((a, b) => a - b));
  });

  it('is deterministic from the seed, and another seed gives another order', () => {
    const a = new BatchStream([set], { batchSize: 2, seqLen: 10, seed: 7 });
    const b = new BatchStream([set], { batchSize: 2, seqLen: 10, seed: 7 });
    const c = new BatchStream([set], { batchSize: 2, seqLen: 10, seed: 8 });
    let differ = false;
    for (let i = 0; i < 30; i++) {
      const x = a.next();
      same(x, b.next());
      if ([...x.tokens].join() !== [...c.next().tokens].join()) differ = true;
    }
    expect(differ).toBe(true);
  });

  it('resumes from a JSON position with exactly the same batches (across epochs)', () => {
    const opts = { batchSize: 2, seqLen: 12, seed: 3, weights: { law: 1, patent: 2 } };
    const ref = new BatchStream([set], opts);
    const batches = Array.from({ length: 60 }, () => ref.next());
    const s = new BatchStream([set], opts);
    for (let i = 0; i < 23; i++) s.next();
    const saved = JSON.parse(JSON.stringify(s.position()));
    const resumed = new BatchStream([set], opts, saved);
    for (let i = 23; i < 60; i++) same(resumed.next(), batches[i]!);
    expect(resumed.position().batch).toBe(60);
    // a position from another config is refused
    expect(() => new BatchStream([set], { ...opts, seqLen: 13 }, saved)).toThrow(/fingerprint/);
    // reset goes back to the first batch
    resumed.reset();
    same(resumed.next(), batches[0]!);
  });

  it('splits a global batch across ranks', () => {
    const W = 3;
    const B = 2;
    const whole = new BatchStream([set], { batchSize: B * W, seqLen: 9, seed: 11 });
    const ranks = Array.from({ length: W }, (_, r) => new BatchStream([set], { batchSize: B, seqLen: 9, seed: 11, rank: r, worldSize: W }));
    for (let k = 0; k < 10; k++) {
      const g = whole.next();
      const parts = ranks.map((s) => s.next());
      expect(parts.flatMap((p) => [...p.tokens])).toEqual([...g.tokens]);
      expect(parts.flatMap((p) => [...p.targets])).toEqual([...g.targets]);
      expect(parts.flatMap((p) => p.categories)).toEqual(g.categories);
    }
  });

  it('follows mixture weights', () => {
    const s = new BatchStream([set], { batchSize: 50, seqLen: 4, seed: 2, weights: { law: 0.2, patent: 0.8 } });
    let law = 0;
    for (let i = 0; i < 40; i++) law += s.next().categories.filter((c) => c === 'law').length;
    expect(law / 2000).toBeGreaterThan(0.17);
    expect(law / 2000).toBeLessThan(0.23);
    expect(s.mixture.map((m) => m.category)).toEqual(['law', 'patent']);
    expect(() => new BatchStream([set], { batchSize: 1, seqLen: 4, seed: 2, weights: { code: 1 } })).toThrow(/weights.code/);
  });

  it('holds out a validation split disjoint from training', () => {
    const collect = (split: 'train' | 'val'): Set<number> => {
      const s = new BatchStream([set], { batchSize: 1, seqLen: 4, seed: 0, split, valFraction: 0.1 });
      const seen = new Set<number>();
      for (let i = 0; i < 200; i++) for (const t of s.next().tokens) seen.add(t);
      return seen;
    };
    const train = collect('train');
    const val = collect('val');
    expect(val.size).toBeGreaterThan(0);
    for (const t of val) expect(train.has(t)).toBe(false);
  });

  it('checks its arguments', () => {
    expect(() => new BatchStream([set], { batchSize: 0, seqLen: 4, seed: 0 })).toThrow(/batchSize/);
    expect(() => new BatchStream([set], { batchSize: 1, seqLen: 4, seed: 0, rank: 2, worldSize: 2 })).toThrow(/rank/);
    expect(() => new BatchStream([], { batchSize: 1, seqLen: 4, seed: 0 })).toThrow(/no shard sets/);
  });
});
