// The decode path's GEMV (native/cpu/gemv*.cpp) and the fused decoder-layer pieces
// (native/cpu/decode.cpp) against references:
// - exact: small-integer inputs make every f32 product and partial sum exact, so the GEMV must
//   equal the integer result bit for bit, whatever its blocking, lanes or thread split; run on
//   1..64 rows with K and N off the vector widths and tile sizes, at every SIMD level, on one and
//   two threads, replacing and accumulating;
// - a row's result does not depend on the other rows (batched decoding equals decoding alone);
// - random floats against a float64 reference, and the fused pieces against the separate ops.
import { afterAll, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { addon } from '../../src/native/loader.js';
import {
  GEMV_MAX_ROWS, Tensor, add, addLinear, decodeLayer, decodeLogits, decodeQkv, decodeSwigluMlp, linear, pagedAttention, pagedKvStore, prepareDecodeLayer, prepareDecodeLogits, rmsnorm, rope,
  setNumThreads, swiglu,
} from '../../src/tensor/index.js';
import { Rng } from '../../src/tensor/index.js';
import { expectClose, randomArray } from '../helpers.js';

const LEVELS = ['avx512', 'avx2', 'scalar'] as const;

afterAll(() => {
  addon().setSimdLevel('avx512');
  setNumThreads(0);
});

function ints(n: number, seed: number, range = 3): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => Math.floor(rng.uniform() * (2 * range + 1)) - range);
}

/** y (M, N) = x (M, K) @ w (N, K)^T in float64 (+ y0 when given). */
function gemvRef(x: ArrayLike<number>, w: ArrayLike<number>, M: number, N: number, K: number, y0?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = y0 ? y0[m * N + n]! : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = s;
    }
  return y;
}

function gemv(x: Float32Array, w: Float32Array, M: number, N: number, K: number, y0?: Float32Array): Float32Array {
  const xt = Tensor.from(x, [M, K]), wt = Tensor.from(w, [N, K]);
  const yt = y0 ? Tensor.from(y0, [M, N]) : Tensor.empty([M, N]);
  addon().gemv(yt.storage, yt.offset, xt.storage, xt.offset, wt.storage, wt.offset, M, N, K, y0 !== undefined);
  const out = yt.toArray() as Float32Array;
  [xt, wt, yt].forEach((t) => t.dispose());
  return out;
}

// K and N around the vector widths (4, 8, 16 lanes) and the 4-row tiles; one N large enough
// to be split over the threads.
const SHAPES: [number, number][] = [[1, 1], [3, 5], [17, 15], [33, 31], [769, 7], [130, 1030], [100, 2051]];
const ROWS = [1, 2, 3, 4, 5, 7, 8, 13, 16, 33, 64];

describe('gemv', () => {
  for (const level of LEVELS) {
    it(`equals the exact integer product for 1..64 rows and odd K, N (${level})`, () => {
      addon().setSimdLevel(level);
      let seed = 1;
      for (const threads of [1, 2]) {
        setNumThreads(threads);
        for (const [K, N] of SHAPES)
          for (const M of ROWS) {
            if (M * N * K > 4e6) continue;
            const x = ints(M * K, seed++), w = ints(N * K, seed++);
            const accumulate = seed % 3 === 0;
            const y0 = accumulate ? ints(M * N, seed++, 50) : undefined;
            const got = gemv(x, w, M, N, K, y0);
            const ref = gemvRef(x, w, M, N, K, y0);
            const bad = got.findIndex((v, i) => v !== ref[i]);
            expect(bad, `M ${M} N ${N} K ${K} threads ${threads} accumulate ${accumulate}: y[${bad}] = ${got[bad]}, exact ${ref[bad]}`).toBe(-1);
          }
      }
      addon().setSimdLevel('avx512');
      setNumThreads(0);
    });
  }

  it('gives each row the same bits alone as among 64 rows, on random floats within f32 rounding of float64', () => {
    const K = 771, N = 1037, M = 64;
    const x = Float32Array.from(randomArray(M * K, 5)), w = Float32Array.from(randomArray(N * K, 6));
    const all = gemv(x, w, M, N, K);
    expectClose(all, gemvRef(x, w, M, N, K), 1e-4, 1e-5, 'gemv 64 rows');
    for (const m of [0, 5, 63]) {
      const alone = gemv(x.subarray(m * K, (m + 1) * K), w, 1, N, K);
      expect(Array.from(alone)).toEqual(Array.from(all.subarray(m * N, (m + 1) * N)));
    }
  });

  it('is what linear() runs for up to GEMV_MAX_ROWS rows, and agrees with the GEMM beyond', () => {
    const K = 96, N = 50;
    const w = Tensor.from(Float32Array.from(randomArray(N * K, 9)), [N, K]);
    for (const M of [1, GEMV_MAX_ROWS, GEMV_MAX_ROWS + 1]) {
      const xv = Float32Array.from(randomArray(M * K, M));
      const y = linear(Tensor.from(xv, [M, K]), w);
      expectClose(y.toArray() as Float32Array, gemvRef(xv, w.toArray() as Float32Array, M, N, K), 1e-4, 1e-5, `linear M ${M}`);
    }
  });

  it('refuses shapes that do not fit and outputs that overlap inputs', () => {
    const x = Tensor.zeros([2, 8]), w = Tensor.zeros([4, 8]);
    expect(() => addon().gemv(x.storage, x.offset, x.storage, x.offset, w.storage, w.offset, 2, 4, 8, false)).toThrow(/overlaps/);
    const y = Tensor.zeros([2, 4]);
    expect(() => addon().gemv(y.storage, y.offset, x.storage, x.offset, w.storage, w.offset, 2, 5, 8, false)).toThrow(/needs/);
    expect(() => addLinear(y, x, Tensor.zeros([4, 9]))).toThrow(PatentGPTError);
  });
});

describe('fused decode pieces', () => {
  // A small GQA layer: C 48, H 6 heads of 8, Hkv 2, F 80; blocks of 4 tokens.
  const C = 48, H = 6, Hkv = 2, D = 8, F = 80, numBlocks = 6, blockSize = 4, eps = 1e-5;
  const t = (n: number[], seed: number, scale = 0.3): Tensor => Tensor.from(Float32Array.from(randomArray(n.reduce((a, b) => a * b, 1), seed, scale)), n);
  const rp = { theta: 10000, posScale: 2 };

  for (const threads of [1, 2]) {
    it(`decodeQkv equals rmsnorm, linear, rope and pagedKvStore (${threads} threads)`, () => {
      setNumThreads(threads);
      const M = 3;
      const x = t([M, C], 1, 1), nw = t([C], 2), wq = t([H * D, C], 3), wk = t([Hkv * D, C], 4), wv = t([Hkv * D, C], 5);
      const pos = Tensor.from(Int32Array.of(0, 7, 13), [M], { dtype: 'i32' });
      const slots = Tensor.from(Int32Array.of(5, -1, 17), [M], { dtype: 'i32' });
      const caches = [0, 1].map(() => Tensor.zeros([numBlocks, blockSize, Hkv, D]));
      const refCaches = [0, 1].map(() => Tensor.zeros([numBlocks, blockSize, Hkv, D]));
      const out = { q: Tensor.empty([M, H, D]), k: Tensor.empty([M, Hkv, D]), v: Tensor.empty([M, Hkv, D]), h: Tensor.empty([M, C]) };
      decodeQkv({ x, normWeight: nw, eps, wq, wk, wv, positions: pos, slotMapping: slots, kCache: caches[0]!, vCache: caches[1]!, rope: rp }, out);
      const h = rmsnorm(x, nw, eps);
      const q = rope(linear(h, wq).reshape([M, H, D]), pos, rp);
      const k = rope(linear(h, wk).reshape([M, Hkv, D]), pos, rp);
      const v = linear(h, wv).reshape([M, Hkv, D]);
      pagedKvStore(refCaches[0]!, refCaches[1]!, k, v, slots);
      for (const [a, b, what] of [[out.q, q, 'q'], [out.k, k, 'k'], [out.v, v, 'v'], [caches[0], refCaches[0], 'kCache'], [caches[1], refCaches[1], 'vCache']] as const)
        expectClose(a!.toArray() as Float32Array, b!.toArray() as Float32Array, 1e-6, 1e-5, what);
      setNumThreads(0);
    });

    it(`decodeSwigluMlp equals x + down(swiglu(gate(norm x), up(norm x))) (${threads} threads)`, () => {
      setNumThreads(threads);
      for (const M of [1, 5]) {
        const x = t([M, C], 11, 1), nw = t([C], 12), wg = t([F, C], 13), wu = t([F, C], 14), wd = t([C, F], 15);
        const h = rmsnorm(x, nw, eps);
        const ref = add(x, linear(swiglu(linear(h, wg), linear(h, wu)), wd)).toArray() as Float32Array;
        decodeSwigluMlp(x, { normWeight: nw, eps, gate: wg, up: wu, down: wd }, { h: Tensor.empty([M, C]), g: Tensor.empty([M, F]), u: Tensor.empty([M, F]) });
        expectClose(x.toArray() as Float32Array, ref, 1e-6, 1e-5, `mlp M ${M}`);
      }
      setNumThreads(0);
    });
  }

  // Three sequences over the cache: a decode row (context 9), a prefill chunk of 3 rows over a
  // cached prefix (context 12) and a fresh prompt of 2 rows; blocks scattered over the pool.
  const layerCase = (partitionSize: number) => {
    const M = 6, nBlocks = 12;
    const i32 = (a: number[]): Tensor => Tensor.from(Int32Array.from(a), [a.length], { dtype: 'i32' });
    const tables = [[3, 7, 1], [0, 9, 4], [11, 2, 0]];
    const maxBlocks = 3;
    const rows = [{ s: 0, p: 8 }, { s: 1, p: 9 }, { s: 1, p: 10 }, { s: 1, p: 11 }, { s: 2, p: 0 }, { s: 2, p: 1 }];
    const slot = (r: { s: number; p: number }): number => tables[r.s]![Math.floor(r.p / blockSize)]! * blockSize + (r.p % blockSize);
    const contextLens = [9, 12, 2];
    return {
      M, cache: () => t([nBlocks, blockSize, Hkv, D], 40, 1),
      positions: i32(rows.map((r) => r.p)), slotMapping: i32(rows.map(slot)),
      attention: {
        blockTables: i32(tables.flat()), maxBlocks, cuQ: i32([0, 1, 4, 6]), contextLens: i32(contextLens),
        partitionSize, maxPartitions: Math.ceil(Math.max(...contextLens) / partitionSize),
      },
    };
  };

  for (const [threads, partitionSize] of [[1, 512], [2, 512], [2, 4], [1, 5]] as const)
    it(`decodeLayer equals decodeQkv, pagedAttention, x += o_proj(o), decodeSwigluMlp (${threads} threads, partitions of ${partitionSize})`, () => {
      setNumThreads(threads);
      const c = layerCase(partitionSize);
      const { M } = c;
      const x = t([M, C], 21, 1), refX = Tensor.from(x.toArray() as Float32Array, [M, C]);
      const weights = { normWeight: t([C], 22), eps, wq: t([H * D, C], 23), wk: t([Hkv * D, C], 24), wv: t([Hkv * D, C], 25), rope: rp };
      const wo = t([C, H * D], 26);
      const mlp = { normWeight: t([C], 27), eps, gate: t([F, C], 28), up: t([F, C], 29), down: t([C, F], 30) };
      const [kc, vc, refK, refV] = [c.cache(), c.cache(), c.cache(), c.cache()];
      const P = c.attention.maxPartitions;
      const scratch = {
        q: Tensor.empty([M, H, D]), k: Tensor.empty([M, Hkv, D]), v: Tensor.empty([M, Hkv, D]), h: Tensor.empty([M, C]), o: Tensor.empty([M, H, D]),
        g: Tensor.empty([M, F]), u: Tensor.empty([M, F]), partOut: Tensor.empty([M, H, P, D]), partStats: Tensor.empty([M, H, P, 2]),
      };
      decodeLayer({ ...weights, x, positions: c.positions, slotMapping: c.slotMapping, kCache: kc, vCache: vc, wo, mlp, attention: c.attention }, scratch);
      const ref = { q: Tensor.empty([M, H, D]), k: Tensor.empty([M, Hkv, D]), v: Tensor.empty([M, Hkv, D]), h: Tensor.empty([M, C]) };
      decodeQkv({ ...weights, x: refX, positions: c.positions, slotMapping: c.slotMapping, kCache: refK, vCache: refV }, ref);
      const o = pagedAttention(ref.q, refK, refV, c.attention);
      addLinear(refX, o.reshape([M, H * D]), wo);
      decodeSwigluMlp(refX, mlp, { h: ref.h, g: Tensor.empty([M, F]), u: Tensor.empty([M, F]) });
      expectClose(kc.toArray() as Float32Array, refK.toArray() as Float32Array, 0, 0, 'kCache');
      expectClose(vc.toArray() as Float32Array, refV.toArray() as Float32Array, 0, 0, 'vCache');
      expectClose(scratch.o.toArray() as Float32Array, o.toArray() as Float32Array, 1e-6, 1e-5, 'attention');
      expectClose(x.toArray() as Float32Array, refX.toArray() as Float32Array, 1e-6, 1e-5, 'residual');
      setNumThreads(0);
    });

  it('decodeLayer refuses block tables outside the cache, too few partitions and overlapping buffers', () => {
    const c = layerCase(4);
    const { M } = c;
    const weights = { normWeight: t([C], 22), eps, wq: t([H * D, C], 23), wk: t([Hkv * D, C], 24), wv: t([Hkv * D, C], 25), rope: rp };
    const mlp = { normWeight: t([C], 27), eps, gate: t([F, C], 28), up: t([F, C], 29), down: t([C, F], 30) };
    const P = c.attention.maxPartitions;
    const scratch = {
      q: Tensor.empty([M, H, D]), k: Tensor.empty([M, Hkv, D]), v: Tensor.empty([M, Hkv, D]), h: Tensor.empty([M, C]), o: Tensor.empty([M, H, D]),
      g: Tensor.empty([M, F]), u: Tensor.empty([M, F]), partOut: Tensor.empty([M, H, P, D]), partStats: Tensor.empty([M, H, P, 2]),
    };
    const inp = { ...weights, x: t([M, C], 21), positions: c.positions, slotMapping: c.slotMapping, kCache: c.cache(), vCache: c.cache(), wo: t([C, H * D], 26), mlp, attention: c.attention };
    const badTable = Tensor.from(Int32Array.of(3, 7, 1, 0, 9, 12, 11, 2, 0), [9], { dtype: 'i32' });
    expect(() => decodeLayer({ ...inp, attention: { ...c.attention, blockTables: badTable } }, scratch)).toThrow(/blockTables\[1\]\[2\] = 12 is outside/);
    expect(() => decodeLayer({ ...inp, attention: { ...c.attention, maxPartitions: 1 } }, scratch)).toThrow(/needs more than maxPartitions/);
    expect(() => decodeLayer(inp, { ...scratch, o: scratch.q })).toThrow(/overlap/);
    expect(() => decodeLayer({ ...inp, wo: t([C, H * D + 1], 26) }, scratch)).toThrow(PatentGPTError);
    const prepared = prepareDecodeLayer(inp, scratch); // for M rows, 3 sequences, P partitions
    for (const [m, nseq, p] of [[M + 1, 3, P], [M, 4, P], [M, 3, P + 1]] as const) expect(() => prepared(m, nseq, p)).toThrow(/exceeds the prepared/);
  });

  it('decodeLogits equals linear(rmsnorm(x)) and refuses a logits buffer of the wrong shape', () => {
    const M = 3, V = 301;
    const x = t([M, C], 41, 1), norm = { weight: t([C], 42), eps }, w = t([V, C], 43);
    const logits = Tensor.empty([M, V]), h = Tensor.empty([M, C]);
    decodeLogits(logits, x, norm, w, h);
    expectClose(logits.toArray() as Float32Array, linear(rmsnorm(x, norm.weight, eps), w).toArray() as Float32Array, 1e-6, 1e-5, 'logits');
    expect(() => decodeLogits(Tensor.empty([M, V - 1]), x, norm, w, h)).toThrow(PatentGPTError);
    expect(() => decodeLogits(logits, x, norm, w, logits.reshape([-1]).narrow(0, M * C).reshape([M, C]))).toThrow(/overlap/);
    // Prepared for M rows, run on the first 2: those rows only.
    const full = logits.toArray() as Float32Array;
    const part = Tensor.zeros([M, V]);
    prepareDecodeLogits(part, x, norm, w, h)(2);
    expect(Array.from(part.toArray() as Float32Array)).toEqual([...full.slice(0, 2 * V), ...new Array<number>(V).fill(0)]);
  });

  it('refuses caches, weights and buffers of the wrong shape, and slots outside the cache', () => {
    const M = 1;
    const x = t([M, C], 1), nw = t([C], 2), wq = t([H * D, C], 3), wk = t([Hkv * D, C], 4), wv = t([Hkv * D, C], 5);
    const kc = Tensor.zeros([numBlocks, blockSize, Hkv, D]), vc = Tensor.zeros([numBlocks, blockSize, Hkv, D]);
    const pos = Tensor.from(Int32Array.of(0), [1], { dtype: 'i32' });
    const out = { q: Tensor.empty([M, H, D]), k: Tensor.empty([M, Hkv, D]), v: Tensor.empty([M, Hkv, D]), h: Tensor.empty([M, C]) };
    const inp = { x, normWeight: nw, eps, wq, wk, wv, positions: pos, slotMapping: Tensor.from(Int32Array.of(numBlocks * blockSize), [1], { dtype: 'i32' }), kCache: kc, vCache: vc, rope: rp };
    expect(() => decodeQkv(inp, out)).toThrow(/slotMapping\[0\] = 24 is outside/);
    expect(() => decodeQkv({ ...inp, wk: t([Hkv * D + 1, C], 4) }, out)).toThrow(PatentGPTError);
    expect(() => decodeQkv({ ...inp, slotMapping: pos }, { ...out, h: Tensor.empty([M, C + 1]) })).toThrow(PatentGPTError);
    expect(() => decodeSwigluMlp(x, { normWeight: nw, eps, gate: t([F, C], 1), up: t([F, C], 2), down: t([C, F + 1], 3) },
      { h: Tensor.empty([M, C]), g: Tensor.empty([M, F]), u: Tensor.empty([M, F]) })).toThrow(PatentGPTError);
  });
});
