// The q4_k product (quantLinear over native/cpu/quant*.cpp) against a plain TypeScript reference of
// what llama.cpp computes for a Q4_K weight on CPUs with AMX (ggml-cpu/amx/mmq.cpp, the kernels
// node-llama-cpp runs here): x quantized to q8_K (quantize_row_q8_K_ref: iscale = -127 / the
// signed value of largest magnitude, q = round-half-even(iscale * x), d = 1 / iscale kept in f32),
// then per super-block the exact integer sums sum_j sc_j * dot(q4_j, q8_j) and sum_j m_j * bsum_j,
// each fused into the f32 sum times d * d_x and -(dmin * d_x). Bit for bit, at the GEMV's tile
// shapes and beyond.
import { describe, expect, it } from 'vitest';
import { Tensor, quantLinear, quantize } from '../../src/tensor/index.js';
import { randomArray } from '../helpers.js';

function fromHalf(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** ggml's nearest_int: round half to even. */
function nearestInt(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 ? 2 * Math.round(v / 2) : r;
}

/** x (K) as q8_K: q's, one f32 d per 256, the sum of the q's of each 32. */
function q8kRef(x: Float32Array): { qs: Int8Array; d: number[]; bsums: number[] } {
  const K = x.length, qs = new Int8Array(K), d: number[] = [], bsums: number[] = [];
  for (let b = 0; b < K / 256; b++) {
    let max = 0, amax = 0;
    for (let i = 0; i < 256; i++) {
      const v = x[b * 256 + i]!;
      if (Math.abs(v) > amax) (amax = Math.abs(v)), (max = v);
    }
    if (amax === 0) {
      d.push(0);
      for (let j = 0; j < 8; j++) bsums.push(0);
      continue;
    }
    const iscale = Math.fround(-127 / max);
    for (let i = 0; i < 256; i++) qs[b * 256 + i] = Math.min(127, nearestInt(Math.fround(iscale * x[b * 256 + i]!)));
    for (let j = 0; j < 8; j++) {
      let s = 0;
      for (let i = 0; i < 32; i++) s += qs[b * 256 + j * 32 + i]!;
      bsums.push(s);
    }
    d.push(Math.fround(1 / iscale));
  }
  return { qs, d, bsums };
}

/** Q4_K's 6-bit scale and min of sub-block j (ggml's get_scale_min_k4). */
function scaleMin(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j]! & 63, q[o + j + 4]! & 63];
  return [(q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >> 6) << 4), (q[o + j + 4]! >> 4) | ((q[o + j]! >> 6) << 4)];
}

/** f32 fma: the exact product (under 53 bits here) plus acc, rounded once to f32. */
const fmaf = (a: number, b: number, c: number): number => Math.fround(a * b + c);

/** y = x W^T for Q4_K rows W, as llama.cpp's AMX/VNNI kernel sums it. */
function productRef(x: Float32Array, w: Uint8Array, rows: number, K: number): Float32Array {
  const { qs, d: dx, bsums } = q8kRef(x);
  const y = new Float32Array(rows), rb = (K / 256) * 144;
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let b = 0; b < K / 256; b++) {
      const o = r * rb + b * 144;
      const d = fromHalf(w[o]! | (w[o + 1]! << 8)), dmin = fromHalf(w[o + 2]! | (w[o + 3]! << 8));
      let sumi = 0, summ = 0;
      for (let j = 0; j < 8; j++) {
        const [sc, m] = scaleMin(j, w, o + 4);
        let dot = 0;
        for (let l = 0; l < 32; l++) {
          const byte = w[o + 16 + (j >> 1) * 32 + l]!;
          dot += (j & 1 ? byte >> 4 : byte & 0xf) * qs[b * 256 + j * 32 + l]!;
        }
        sumi += sc * dot;
        summ += m * bsums[b * 8 + j]!;
      }
      acc = fmaf(sumi, Math.fround(d * dx[b]!), acc);
      acc = fmaf(summ, -Math.fround(dmin * dx[b]!), acc);
    }
    y[r] = acc;
  }
  return y;
}

describe('q4_k product with x as q8_K (llama.cpp)', () => {
  it('quantLinear equals the reference arithmetic bit for bit (M = 1, 3, 5, 70; K = 256, 768)', () => {
    for (const K of [256, 768]) {
      const rows = 37; // partial tiles
      const w = Tensor.from(randomArray(rows * K, 1, 0.05), [rows, K]);
      const q = quantize(w, 'q4_k');
      const bytes = q.bytes();
      for (const M of [1, 3, 5, 70]) {
        const xv = Float32Array.from(randomArray(M * K, 7 + M));
        xv.fill(0, 0, Math.min(256, K)); // an all-zero super-block: d = 0, no NaN
        const x = Tensor.from(xv, [M, K]);
        const y = quantLinear(x, q).toArray() as Float32Array;
        const want = new Float32Array(M * rows);
        for (let m = 0; m < M; m++) want.set(productRef(xv.subarray(m * K, (m + 1) * K), bytes, rows, K), m * rows);
        const bad = y.findIndex((v, i) => v !== want[i]);
        expect(bad, `K ${K} M ${M}: element ${bad} is ${y[bad]}, the reference ${want[bad]}`).toBe(-1);
        x.dispose();
      }
      q.dispose();
      w.dispose();
    }
  });
});
