// DDP's bucket plan (planBuckets in src/distributed/ddp.ts), shared by the MPI and NCCL engines:
// parameters in reverse order (backward's), a bucket closed before it passes the cap, a parameter
// larger than the cap alone; with ZeRO owners, each bucket's parameters regrouped by owning rank,
// the per-rank counts (a reduce-scatter's) and this rank's slice, with offsets into the flat buffer.
import { describe, expect, it } from 'vitest';
import { planBuckets } from '../../src/distributed/ddp.js';
import { partition } from '../../src/distributed/data-parallel.js';

describe('planBuckets', () => {
  it('reverse order, closed at the cap, an oversized parameter alone, offsets within each bucket', () => {
    // sizes by parameter index; cap 10 values
    const plans = planBuckets([4, 3, 12, 5, 5, 2], 10, { rank: 0, size: 1 });
    expect(plans.map((b) => b.params)).toEqual([[5, 4], [3], [2], [1, 0]]);
    expect(plans.map((b) => b.offsets)).toEqual([[0, 2], [0], [0], [0, 3]]);
    expect(plans.map((b) => b.size)).toEqual([7, 5, 12, 7]);
    expect(plans.every((b) => b.counts === null && b.first === 0 && b.end === b.params.length)).toBe(true);
  });

  it('every parameter in exactly one bucket, whatever the cap', () => {
    const sizes = [7, 1, 30, 2, 2, 9, 4, 16, 3];
    for (const cap of [1, 5, 16, 1000]) {
      const all = planBuckets(sizes, cap, { rank: 0, size: 1 }).flatMap((b) => b.params).sort((a, b) => a - b);
      expect(all).toEqual(sizes.map((_, i) => i));
    }
  });

  it('ZeRO-2 owners: a bucket regrouped by rank (backward order within), counts per rank, this rank\'s slice', () => {
    const sizes = [4, 3, 6, 5, 2];
    const owners = [1, 0, 1, 0, 2];
    const plan = (rank: number) => planBuckets(sizes, 100, { rank, size: 3, owner: (i) => owners[i]! });
    const [b] = plan(0);
    // backward order 4,3,2,1,0 -> by owner: rank 0 (3, 1), rank 1 (2, 0), rank 2 (4)
    expect(b!.params).toEqual([3, 1, 2, 0, 4]);
    expect(b!.offsets).toEqual([0, 5, 8, 14, 18]);
    expect(Array.from(b!.counts!)).toEqual([8, 10, 2]);
    expect([b!.first, b!.end]).toEqual([0, 2]);
    expect([plan(1)[0]!.first, plan(1)[0]!.end]).toEqual([2, 4]);
    expect([plan(2)[0]!.first, plan(2)[0]!.end]).toEqual([4, 5]);
    // a rank that owns nothing in a bucket: an empty slice
    const none = planBuckets([4, 3], 100, { rank: 2, size: 3, owner: () => 0 })[0]!;
    expect([none.first, none.end]).toEqual([0, 0]);
    expect(Array.from(none.counts!)).toEqual([7, 0, 0]);
  });

  it('with the ZeRO partition: each rank\'s slices cover exactly the parameters it owns', () => {
    const named = [['emb', 40], ['a', 12], ['b', 12], ['c', 7], ['d', 30], ['e', 5]] as const;
    const owner = partition(named, 2);
    for (const rank of [0, 1]) {
      const plans = planBuckets(named.map(([, s]) => s), 32, { rank, size: 2, owner: (i) => owner.get(named[i]![0])! });
      const mine = plans.flatMap((b) => b.params.slice(b.first, b.end)).map((i) => named[i]![0]).sort();
      expect(mine).toEqual(named.filter(([n]) => owner.get(n) === rank).map(([n]) => n).sort());
      for (const b of plans) expect(b.counts!.reduce((x, y) => x + y, 0)).toBe(b.size);
    }
  });
});
