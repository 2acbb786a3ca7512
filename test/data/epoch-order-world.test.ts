// A fine-tuning stream's position (src/data/epoch-order.ts) saved on one number of ranks restores
// on another as the same global item (launch --global-batch resumes 2 -> 1 and 1 -> 2), when that is
// a whole number of the new world's batches; anything else is refused naming the field.
import { describe, expect, it } from 'vitest';
import { EpochOrder, type EpochOrderSpec } from '../../src/data/epoch-order.js';

const SPEC: EpochOrderSpec<'t'> = { kind: 't', label: 'test', positionName: 'a test position', permLabel: 'test-items', covers: 'items', empty: 'no items' };
const stream = (worldSize: number, rank: number, data = 'a'): EpochOrder<'t'> =>
  new EpochOrder(10, { batchSize: 2, seed: 3, rank, worldSize }, (w) => `${data}:${w}`, SPEC);

describe('EpochOrder positions across world sizes', () => {
  it('2 ranks -> 1 rank and 1 -> 2: the batches that come next are those of the uninterrupted world', () => {
    const two = [stream(2, 0), stream(2, 1)];
    for (let i = 0; i < 3; i++) two.forEach((s) => s.nextIndices());
    const pos = JSON.parse(JSON.stringify(two[0]!.position()));
    expect(pos.worldSize).toBe(2);
    const one = stream(1, 0);
    one.restore(pos);
    const next2 = [0, 1].flatMap(() => two.flatMap((s) => s.nextIndices().indices)); // 2 global batches of 4 items
    const next1 = [0, 1, 2, 3].flatMap(() => one.nextIndices().indices);
    expect(next1).toEqual(next2);
    expect(one.position().batch).toBe(10); // 6 batches restated, 4 more

    const back = [stream(2, 0), stream(2, 1)];
    back.forEach((s) => s.restore(one.position()));
    expect(back.map((s) => s.position().batch)).toEqual([5, 5]);
    expect(back.flatMap((s) => s.nextIndices().indices)).toEqual(one.nextIndices().indices.concat(one.nextIndices().indices));
  });

  it('refuses a position that is not a whole number of the new world batches, or of other data', () => {
    const s = stream(1, 0);
    for (let i = 0; i < 3; i++) s.nextIndices(); // 6 items
    expect(() => stream(4, 0).restore(s.position())).toThrow(/batch: 3 batches of 1 ranks \(6 items\) are not a whole number of this run's global batches of 4 x 2/);
    expect(() => stream(2, 0, 'b').restore(s.position())).toThrow(/fingerprint: a:1 was saved for other items/);
    // a position of the same world restores as it is
    const again = stream(1, 0);
    again.restore(s.position());
    expect(again.position()).toEqual(s.position());
  });
});
