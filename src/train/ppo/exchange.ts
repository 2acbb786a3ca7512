// PPO on N data-parallel ranks: which responses of a rollout each rank samples, and the exchange
// that gives every rank the whole scored rollout. Rank r of W samples, scores and references a
// contiguous share of the rollout's R prompts ([floor(r R / W), floor((r + 1) R / W))); each
// response keeps its own sampling seed f(seed, rollout, global index), so the union of the shares
// is the 1-rank rollout. Every rank then holds every row, in global order, and runs the rollout
// math (KL, GAE, whitening over all rows) and the minibatch order itself, exactly as one rank does.
//
// The exchange goes through the data-parallel engine's float64 sum (each rank fills its own
// segment, zeros elsewhere): x + 0 is x, so the values arrive exactly (a -0 arrives as +0, which
// no later arithmetic tells apart).
import { PatentGPTError } from '../../errors.js';

/** The part of the data-parallel engine the exchange uses (DataParallelEngine.sum). */
export interface SumEngine {
  sum(values: number[]): number[];
}

/** Global indices [lo, hi) of the rows rank `rank` of `worldSize` samples out of `rows`. */
export function rolloutShare(rows: number, rank: number, worldSize: number): { lo: number; hi: number } {
  return { lo: Math.floor((rank * rows) / worldSize), hi: Math.floor(((rank + 1) * rows) / worldSize) };
}

/** What a rank learned of one sampled response: everything the rollout math and the minibatches read. */
export interface SampledRow {
  /** Valid response tokens (through the first EOS, kept). */
  response: Int32Array;
  hasEos: number;
  /** The reward before the missing-EOS penalty. */
  score: number;
  /** Tokens the engine generated for it (past the EOS too: the throughput counts them). */
  generated: number;
  /** Per valid token: the rollout policy's log-prob and value (float64 as computed), the reference's log-prob. */
  logprobs: ArrayLike<number>;
  values: ArrayLike<number>;
  refLogprobs: ArrayLike<number>;
}

/** Every rank's values, in rank order: each rank's segment of one float64 sum (two sums: the lengths, then the values). */
export function gatherValues(dp: SumEngine, mine: ArrayLike<number>, rank: number, worldSize: number): number[][] {
  const counts = new Array<number>(worldSize).fill(0);
  counts[rank] = mine.length;
  const lengths = dp.sum(counts);
  const at = lengths.map((_, k) => lengths.slice(0, k).reduce((a, b) => a + b, 0));
  const total = lengths.reduce((a, b) => a + b, 0);
  const buf = new Array<number>(total).fill(0);
  for (let i = 0; i < mine.length; i++) buf[at[rank]! + i] = mine[i]!;
  const all = dp.sum(buf);
  return lengths.map((n, k) => all.slice(at[k]!, at[k]! + n));
}

/**
 * Every rank's sampled rows in global order (rank 0's share first), and the longest time a rank
 * spent sampling. One rank: its own rows as they are.
 */
export function exchangeRollout(dp: SumEngine | null, mine: readonly SampledRow[], secs: number, rank: number, worldSize: number): { rows: SampledRow[]; secs: number } {
  if (worldSize === 1) return { rows: [...mine], secs };
  if (!dp) throw new PatentGPTError('E_UNSUPPORTED', 'ppo: more than one rank needs the data-parallel engine (patentgpt launch, mpirun or srun), not a plain all-reduce hook');
  // per rank: [secs, rows, then per row: length, hasEos, score, generated, response, logprobs, values, refLogprobs]
  const flat: number[] = [secs, mine.length];
  for (const r of mine) {
    const L = r.response.length;
    if (r.logprobs.length !== L || r.values.length !== L || r.refLogprobs.length !== L)
      throw new PatentGPTError('E_INTERNAL', `ppo: a sampled row of ${L} tokens has ${r.logprobs.length} log-probs, ${r.values.length} values, ${r.refLogprobs.length} reference log-probs`);
    flat.push(L, r.hasEos, r.score, r.generated);
    for (const a of [r.response, r.logprobs, r.values, r.refLogprobs]) for (let i = 0; i < L; i++) flat.push(a[i]!);
  }
  const rows: SampledRow[] = [];
  let maxSecs = 0;
  for (const v of gatherValues(dp, flat, rank, worldSize)) {
    maxSecs = Math.max(maxSecs, v[0]!);
    let o = 2;
    for (let j = 0; j < v[1]!; j++) {
      const L = v[o]!;
      const row = { hasEos: v[o + 1]!, score: v[o + 2]!, generated: v[o + 3]! };
      o += 4;
      const take = (): number[] => v.slice(o, (o += L));
      rows.push({ ...row, response: Int32Array.from(take()), logprobs: take(), values: take(), refLogprobs: take() });
    }
  }
  return { rows, secs: maxSecs };
}
