// The MPI collectives over tensors with 2 real ranks (mpirun): all-reduce (sum, mean), reduce-
// scatter, all-gather, broadcast; the DDP gradient buckets give the mean of every gradient, also
// for a parameter that gets gradient after its bucket was sent during backward (sent again, then
// late), and a parameter one rank's batch did not reach gets the mean on every rank; a collective
// whose peer never comes fails after the timeout naming the rank.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { mpiMissing, mpirunScript, repo } from './mpi-helpers.js';

const child = path.join(repo, 'test/distributed/collectives-child.ts');
const lines = (stdout: string): Record<string, unknown>[] =>
  stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).sort((a, b) => (a.rank as number) - (b.rank as number));

describe.skipIf(mpiMissing !== null)('MPI collectives (2 ranks)', () => {
  it('all-reduce, reduce-scatter, all-gather, broadcast and gradient buckets over tensors', () => {
    const r = mpirunScript(2, child, ['ops']);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const out = lines(r.stdout);
    expect(out).toHaveLength(2);
    for (const o of out) {
      expect(o.allReduce).toEqual([3, 30, -1, 1, 1]);
      expect(o.mean).toEqual([0.5, 1]);
      expect(o.allGather).toEqual({ shape: [2, 2], values: [0, 0.5, 1, 1.5] });
      expect(o.broadcast).toEqual([7, 8]);
      const b = o.buckets as { grads: number[][]; n: number; late: number; overlapped: number };
      expect(b.n).toBe(4);
      expect(b.late).toBe(1); // params[3]: changed after it was sent, so sent after backward from then on
      expect(b.overlapped).toBeGreaterThanOrEqual(3 + 3); // step 0: all 4 during backward; step 1: the 3 not late
      const want: number[][] = [];
      for (let step = 0; step < 2; step++)
        for (let i = 0; i < 4; i++) want.push(Array.from({ length: 5 + i }, (_, j) => (i + j + step) * 1.5 + (i === 3 ? 1.5 : 0)));
      expect(b.grads).toEqual(want);
    }
    for (const o of out) expect(o.unreached).toEqual([[1, 1], [1, 2], null]);
    // rank 0's block: [0+10, 1+11] ; rank 1's: [2+12, 3+13]
    expect(out[0]!.reduceScatter).toEqual({ shape: [1, 2], values: [10, 12] });
    expect(out[1]!.reduceScatter).toEqual({ shape: [1, 2], values: [14, 16] });
  });

  it('a collective whose peer never joins fails after the timeout, naming the rank, and the job exits non-zero', () => {
    const t0 = Date.now();
    const r = mpirunScript(2, child, ['timeout'], {}, 60_000);
    expect(r.status).not.toBe(0);
    expect(Date.now() - t0).toBeLessThan(30_000); // not the other rank's 10 s wait plus more: mpirun stops it
    const o = lines(r.stdout)[0]!;
    expect(o.error).toMatchObject({ code: 'E_DIST_TIMEOUT' });
    expect((o.error as { message: string }).message).toMatch(/^rank 0 of 2: all-reduce #\d+ \(1 values\) did not complete within 1 s: a peer rank died or hangs/);
  });
});
