// Weight-only quantization (src/tensor/ops/quant.ts over native/cpu/quant*.cpp) against a plain
// TypeScript reference of llama.cpp's arithmetic: quantize_row_q8_0_ref / _q4_0_ref bytes, the
// dequantized values, and the product with x quantized to Q8_0 blocks (d rounded to f16, q =
// round-half-even(x * 127 / amax)) followed by exact integer dots per block; plus argument errors.
import { describe, expect, it } from 'vitest';
import {
  GGML_TYPE_ID, QuantizedMatrix, Tensor, checkQuantType, dequantize, linear, quantGemvKernel, quantLinear, quantRowBytes,
  quantize,
} from '../../src/tensor/index.js';
import { toHalf } from '../../src/export/gguf.js';
import { expectClose, randomArray } from '../helpers.js';

function fromHalf(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** llama.cpp's quantize_row_q8_0_ref of one row. */
function q8Ref(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 34);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]!));
    const d = Math.fround(amax / 127), id = d ? Math.fround(1 / d) : 0;
    const h = toHalf(d);
    out[b * 34] = h & 0xff;
    out[b * 34 + 1] = h >> 8;
    for (let i = 0; i < 32; i++) {
      const v = Math.fround(x[b * 32 + i]! * id);
      out[b * 34 + 2 + i] = (Math.sign(v) * Math.round(Math.abs(v))) & 0xff; // roundf: half away from zero
    }
  }
  return out;
}

/** The weights of Q8_0 / Q4_0 rows. */
function dequantRef(type: 'q8_0' | 'q4_0', bytes: Uint8Array, n: number): Float64Array {
  const out = new Float64Array(n);
  const bb = type === 'q8_0' ? 34 : 18;
  for (let b = 0; b < n / 32; b++) {
    const d = fromHalf(bytes[b * bb]! | (bytes[b * bb + 1]! << 8));
    for (let i = 0; i < 32; i++) {
      const q = type === 'q8_0' ? ((bytes[b * bb + 2 + i]! << 24) >> 24) : (i < 16 ? bytes[b * bb + 2 + i]! & 15 : bytes[b * bb + 2 + i - 16]! >> 4) - 8;
      out[b * 32 + i] = Math.fround(q * d);
    }
  }
  return out;
}

/** y = x W^T as llama.cpp computes it: x to Q8_0 blocks (x86 rounding), integer dots, d_w * d_x per block. */
function productRef(type: 'q8_0' | 'q4_0', x: Float32Array, w: Uint8Array, rows: number, K: number): Float64Array {
  const nb = K / 32, bb = type === 'q8_0' ? 34 : 18, rb = nb * bb;
  const xq = new Int8Array(K), xd = new Float64Array(nb);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]!));
    const id = amax ? Math.fround(127 / amax) : 0;
    xd[b] = fromHalf(toHalf(Math.fround(amax / 127)));
    for (let i = 0; i < 32; i++) {
      const v = Math.fround(x[b * 32 + i]! * id), r = Math.round(v);
      xq[b * 32 + i] = Math.abs(v - Math.trunc(v)) === 0.5 ? 2 * Math.round(v / 2) : r; // half to even
    }
  }
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++)
    for (let b = 0; b < nb; b++) {
      const o = r * rb + b * bb, d = fromHalf(w[o]! | (w[o + 1]! << 8));
      let s = 0;
      for (let i = 0; i < 32; i++) {
        const q = type === 'q8_0' ? ((w[o + 2 + i]! << 24) >> 24) : (i < 16 ? w[o + 2 + i]! & 15 : w[o + 2 + i - 16]! >> 4) - 8;
        s += q * xq[b * 32 + i]!;
      }
      y[r]! += d * xd[b]! * s;
    }
  return y;
}

describe('weight-only quantization', () => {
  const rows = 21, K = 256;
  const wv = Float32Array.from(randomArray(rows * K, 1, 0.05));

  it('q8_0 bytes are llama.cpp reference quantizer bytes, and round-trip through fromBytes', () => {
    const w = Tensor.from(wv, [rows, K]);
    const q = quantize(w, 'q8_0');
    const bytes = q.bytes();
    expect(bytes.length).toBe(rows * quantRowBytes('q8_0', K));
    for (let r = 0; r < rows; r++) expect(Buffer.from(bytes.subarray(r * 272, (r + 1) * 272)).equals(Buffer.from(q8Ref(wv.subarray(r * K, (r + 1) * K))))).toBe(true);
    const again = QuantizedMatrix.fromBytes('q8_0', rows, K, bytes);
    expect(Buffer.from(again.bytes()).equals(Buffer.from(bytes))).toBe(true);
    again.dispose();
    q.dispose();
    w.dispose();
  });

  for (const type of ['q8_0', 'q4_0'] as const) {
    it(`${type}: dequantize and quantLinear equal the reference arithmetic`, () => {
      const w = Tensor.from(wv, [rows, K]);
      const q = quantize(w, type);
      const bytes = q.bytes();
      const dq = dequantize(q);
      expectClose(dq.toArray() as Float32Array, dequantRef(type, bytes, rows * K), 0, 0, 'dequantized weights');
      for (const M of [1, 3, 70]) { // the GEMV tiles and more rows than a decode step
        const xv = Float32Array.from(randomArray(M * K, 7 + M));
        const x = Tensor.from(xv, [M, K]);
        const y = quantLinear(x, q).toArray() as Float32Array;
        const want = new Float64Array(M * rows);
        for (let m = 0; m < M; m++) want.set(productRef(type, xv.subarray(m * K, (m + 1) * K), bytes, rows, K), m * rows);
        expectClose(y, want, 1e-5, 1e-5, `${type} product, M = ${M}`);
        // and within the quantization of x of the f32 product with the dequantized weights
        const f = linear(x, dq).toArray() as Float32Array;
        expectClose(y, f, 0.02, 0.02, 'against f32 on the dequantized weights');
        x.dispose();
      }
      dq.dispose();
      q.dispose();
      w.dispose();
    });
  }

  it('q4_k: dequantized weights are close to the originals and the product matches f32 on them', () => {
    const w = Tensor.from(wv, [rows, K]);
    const q = quantize(w, 'q4_k');
    expect(q.byteLength).toBe(rows * 144);
    const dq = dequantize(q).toArray() as Float32Array;
    let err = 0, norm = 0;
    for (let i = 0; i < wv.length; i++) (err += (dq[i]! - wv[i]!) ** 2), (norm += wv[i]! ** 2);
    expect(Math.sqrt(err / norm)).toBeLessThan(0.12); // 4.5 bits per weight
    const x = Tensor.from(randomArray(2 * K, 3), [2, K]);
    const dqt = Tensor.from(dq, [rows, K]);
    // x meets the blocks as llama.cpp's q8_K (8-bit blocks of 256): within that quantization of
    // the f32 product (bit for bit against llama.cpp's arithmetic: quant-q4k.test.ts)
    expectClose(quantLinear(x, q).toArray() as Float32Array, linear(x, dqt).toArray() as Float32Array, 0.02, 0.02, 'q4_k product');
    q.dispose();
    w.dispose();
  });

  it('f16 and bf16: each weight rounded to nearest even (f16 as the GGUF writer, bf16 as Tensor.to), x in f32 for f16 (rounded to f16 on the AVX2 kernel) and rounded to bf16 for bf16', () => {
    const rows = 5, cols = 96, M = 3;
    const w = randomArray(rows * cols, 41, 0.5), x = randomArray(M * cols, 42);
    const wt = Tensor.from(w, [rows, cols]), xt = Tensor.from(x, [M, cols]);
    const bf = wt.to('bf16'), xbf = xt.to('bf16');
    const wbf = new Uint16Array(bf.toRaw() as Uint16Array), xb = new Float32Array(xbf.to('f32').toArray() as Float32Array);
    for (const type of ['f16', 'bf16'] as const) {
      const q = quantize(wt, type);
      const halves = new Uint16Array(q.bytes().slice().buffer);
      const want = type === 'f16' ? Uint16Array.from(w, (v) => toHalf(v)) : wbf;
      expect(halves).toEqual(want);
      const wd = dequantize(q).toArray() as Float32Array;
      expect(Array.from(wd)).toEqual(Array.from(halves, (h) => (type === 'f16' ? fromHalf(h) : new Float32Array(new Uint32Array([h << 16]).buffer)[0]!)));
      const y = quantLinear(xt, q).toArray() as Float32Array;
      // the x the products see: for f16 as it is, or rounded to f16 where the AVX2 kernel runs
      // (llama.cpp's AVX2 build rounds it: quant_f16_rounds_x)
      const xs = type === 'bf16' ? xb : quantGemvKernel() === 'avx2' ? Float32Array.from(x, (v) => fromHalf(toHalf(v))) : x;
      const ref = new Float64Array(M * rows);
      for (let m = 0; m < M; m++)
        for (let r = 0; r < rows; r++) {
          let acc = 0;
          for (let k = 0; k < cols; k++) acc += xs[m * cols + k]! * wd[r * cols + k]!;
          ref[m * rows + r] = acc;
        }
      expectClose(y, ref, 1e-5, 1e-5);
      q.dispose();
    }
    [wt, xt, bf, xbf].forEach((t) => t.dispose());
  });

  it('refuses rows that do not fill whole blocks, unknown types and mismatched x', () => {
    const w = Tensor.zeros([4, 96]);
    expect(() => quantize(w, 'q8_0')).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => quantize(Tensor.zeros([4, 128]), 'q4_k')).toThrow(/multiple of 256/);
    expect(() => checkQuantType('q5_1')).toThrow(expect.objectContaining({ code: 'E_ARGUMENT' }));
    expect(checkQuantType('Q4_K')).toBe('q4_k');
    expect(GGML_TYPE_ID).toEqual({ q8_0: 8, q4_0: 2, q4_k: 12, f16: 1, bf16: 30 });
    expect(() => quantize(Tensor.zeros([4, 48]), 'bf16')).toThrow(/multiple of 32/);
    const q = quantize(Tensor.zeros([4, 64]), 'q4_0');
    expect(() => quantLinear(Tensor.zeros([2, 128]), q)).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    q.dispose();
  });
});
