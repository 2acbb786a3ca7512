// Paged attention kernels against a float64 reference that gathers keys and values token by token
// through random block tables, across GQA ratios, head sizes, block sizes and partition sizes.
import { describe, expect, it } from 'vitest';
import { Rng, Tensor, pagedAttention, pagedKvStore } from '../../src/tensor/index.js';
import { expectClose, randomArray } from '../helpers.js';

interface Case {
  H: number;
  Hkv: number;
  D: number;
  blockSize: number;
  partitionSize: number;
  /** (cached tokens before this step, query rows this step) per sequence. */
  seqs: [number, number][];
}

function runCase(c: Case, seed: number): void {
  const { H, Hkv, D, blockSize } = c;
  const rng = new Rng(seed);
  const lens = c.seqs.map(([p, n]) => p + n);
  const maxBlocks = Math.max(...lens.map((l) => Math.ceil(l / blockSize)));
  const numBlocks = lens.reduce((a, l) => a + Math.ceil(l / blockSize), 0) + 3;
  // Random distinct physical blocks for every sequence (a shuffled pool).
  const perm = Array.from({ length: numBlocks }, (_, i) => i);
  for (let i = numBlocks - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  const tables = new Int32Array(c.seqs.length * maxBlocks).fill(-7); // unused entries are never read
  let next = 0;
  lens.forEach((l, s) => {
    for (let b = 0; b < Math.ceil(l / blockSize); b++) tables[s * maxBlocks + b] = perm[next++]!;
  });
  const row = Hkv * D;
  const kCache = Tensor.zeros([numBlocks, blockSize, Hkv, D]);
  const vCache = Tensor.zeros([numBlocks, blockSize, Hkv, D]);
  // Dense per-sequence K/V (the reference) and their scatter into the cache, one step per sequence.
  const denseK = lens.map((l, s) => randomArray(l * row, seed * 100 + s));
  const denseV = lens.map((l, s) => randomArray(l * row, seed * 100 + 50 + s));
  lens.forEach((l, s) => {
    const slots = new Int32Array(l + 2).fill(-1); // two padding rows that must be skipped
    for (let t = 0; t < l; t++) slots[t + 1] = tables[s * maxBlocks + Math.floor(t / blockSize)]! * blockSize + (t % blockSize);
    const pad = (x: Float64Array): Float32Array => {
      const out = new Float32Array((l + 2) * row).fill(99);
      out.set(Float32Array.from(x), row);
      return out;
    };
    pagedKvStore(kCache, vCache, Tensor.from(pad(denseK[s]!), [l + 2, Hkv, D]), Tensor.from(pad(denseV[s]!), [l + 2, Hkv, D]), slots);
  });
  const cuQ = new Int32Array(c.seqs.length + 1);
  c.seqs.forEach(([, n], s) => (cuQ[s + 1] = cuQ[s]! + n));
  const Tq = cuQ[c.seqs.length]!;
  const q = randomArray(Tq * H * D, seed + 7);
  const out = pagedAttention(Tensor.from(Float32Array.from(q), [Tq, H, D]), kCache, vCache, {
    blockTables: tables, maxBlocks, cuQ, contextLens: Int32Array.from(lens), partitionSize: c.partitionSize,
  });
  // Reference: plain softmax attention in float64 over the dense keys/values.
  const ref = new Float64Array(Tq * H * D);
  const scale = 1 / Math.sqrt(D);
  c.seqs.forEach(([p, n], s) => {
    for (let i = 0; i < n; i++) {
      const r = cuQ[s]! + i;
      const L = p + i + 1;
      for (let h = 0; h < H; h++) {
        const kvh = Math.floor(h / (H / Hkv));
        const scores = new Float64Array(L);
        let m = -Infinity;
        for (let t = 0; t < L; t++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[(r * H + h) * D + d]! * denseK[s]![t * row + kvh * D + d]!;
          scores[t] = dot * scale;
          m = Math.max(m, scores[t]!);
        }
        let z = 0;
        for (let t = 0; t < L; t++) z += (scores[t] = Math.exp(scores[t]! - m));
        for (let t = 0; t < L; t++)
          for (let d = 0; d < D; d++) ref[(r * H + h) * D + d] += (scores[t]! / z) * denseV[s]![t * row + kvh * D + d]!;
      }
    }
  });
  expectClose(out.toArray() as Float32Array, ref, 2e-5, 1e-4, `paged attention ${JSON.stringify(c)}`);
  for (const t of [out, kCache, vCache]) t.dispose();
}

describe('pagedAttention', () => {
  const cases: Case[] = [
    // decode: one row per sequence, mixed lengths, several partitions
    { H: 4, Hkv: 4, D: 16, blockSize: 4, partitionSize: 8, seqs: [[0, 1], [6, 1], [40, 1], [17, 1]] },
    { H: 8, Hkv: 2, D: 64, blockSize: 16, partitionSize: 32, seqs: [[100, 1], [3, 1], [31, 1]] },
    { H: 6, Hkv: 1, D: 8, blockSize: 1, partitionSize: 5, seqs: [[12, 1], [0, 1]] },
    { H: 4, Hkv: 2, D: 80, blockSize: 16, partitionSize: 1024, seqs: [[300, 1]] },
    // one row, few partitions: the cache's heads split in groups (tasks for the threads to share)
    { H: 8, Hkv: 4, D: 64, blockSize: 16, partitionSize: 512, seqs: [[36, 1]] },
    { H: 12, Hkv: 12, D: 64, blockSize: 16, partitionSize: 32, seqs: [[70, 1]] },
    // prefill chunks over cached prefixes, mixed with decode rows
    { H: 4, Hkv: 2, D: 32, blockSize: 8, partitionSize: 16, seqs: [[0, 20], [33, 1], [16, 9], [5, 0]] },
    { H: 2, Hkv: 1, D: 128, blockSize: 32, partitionSize: 64, seqs: [[64, 70], [0, 3]] },
    // More query heads than the workspace holds for one task (64): run in chunks of heads, and a
    // full 1024-token partition at D 128 (the largest scratch the workspace reserves).
    { H: 80, Hkv: 10, D: 64, blockSize: 16, partitionSize: 48, seqs: [[130, 1], [20, 2]] },
    { H: 66, Hkv: 66, D: 128, blockSize: 16, partitionSize: 1024, seqs: [[1500, 1]] },
  ];
  cases.forEach((c, i) => it(`matches dense attention: H ${c.H}/${c.Hkv}, D ${c.D}, block ${c.blockSize}, partition ${c.partitionSize}`, () => runCase(c, i + 1)));

  it('refuses out-of-range slots and block table entries before any kernel runs', () => {
    const k = Tensor.zeros([2, 4, 1, 8]);
    const v = Tensor.zeros([2, 4, 1, 8]);
    const x = Tensor.zeros([1, 1, 8]);
    expect(() => pagedKvStore(k, v, x, x, Int32Array.of(8))).toThrow(/slotMapping\[0\] = 8 is outside \[-1, 8\)/);
    expect(() => pagedKvStore(k, v, x, x, Int32Array.of(-2))).toThrow(/outside/);
    const q = Tensor.zeros([1, 2, 8]);
    const base = { maxBlocks: 2, cuQ: Int32Array.of(0, 1) };
    expect(() => pagedAttention(q, k, v, { ...base, blockTables: Int32Array.of(0, 2), contextLens: Int32Array.of(5) }))
      .toThrow(/blockTables\[0\]\[1\] = 2 is outside \[0, 2\)/);
    expect(() => pagedAttention(q, k, v, { ...base, blockTables: Int32Array.of(0, 1), contextLens: Int32Array.of(9) }))
      .toThrow(/exceeds maxBlocks \* blockSize/);
    expect(() => pagedAttention(q, k, v, { ...base, blockTables: Int32Array.of(0, 1), contextLens: Int32Array.of(0) }))
      .toThrow(/less than its 1 query rows/);
    expect(() => pagedAttention(q, k, v, { ...base, blockTables: Int32Array.of(0, 1), contextLens: Int32Array.of(3), partitionSize: 4096 }))
      .toThrow(/partitionSize/);
    for (const t of [k, v, x, q]) t.dispose();
  });
});
