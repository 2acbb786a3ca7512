// bf16 and f16 KV caches through the paged ops: pagedKvStore rounds like the cast op (bit for
// bit), pagedAttention over a 16-bit cache equals f32 attention over the same cache widened and
// stays within the 16-bit tolerance of attention over the unrounded keys and values; mismatched
// or non-float caches are refused with a clear error.
import { describe, expect, it } from 'vitest';
import { Tensor, pagedAttention, pagedKvStore, type KvCacheDType } from '../../src/tensor/index.js';
import { expectClose, randomArray } from '../helpers.js';

const HALVES: KvCacheDType[] = ['bf16', 'f16'];

/** Two sequences over a shuffled pool: a decode row at context 300 and a 3-row chunk over a 37-token prefix. */
function setup(D: number, H = 4, Hkv = 2, blockSize = 16) {
  const numBlocks = 30, maxBlocks = 20, row = Hkv * D;
  const tables = new Int32Array(2 * maxBlocks);
  for (let b = 0; b < maxBlocks; b++) tables[b] = (7 * b + 3) % numBlocks;
  for (let b = 0; b < 3; b++) tables[maxBlocks + b] = numBlocks - 1 - 2 * b;
  const k = Tensor.from(Float32Array.from(randomArray(numBlocks * blockSize * row, 1)), [numBlocks * blockSize, Hkv, D]);
  const v = Tensor.from(Float32Array.from(randomArray(numBlocks * blockSize * row, 2)), [numBlocks * blockSize, Hkv, D]);
  const q = Tensor.from(Float32Array.from(randomArray(4 * H * D, 3)), [4, H, D]);
  const slots = Int32Array.from({ length: numBlocks * blockSize }, (_, i) => i);
  const meta = { blockTables: tables, maxBlocks, cuQ: Int32Array.from([0, 1, 4]), contextLens: Int32Array.from([300, 40]), partitionSize: 64 };
  /** Caches of dtype holding k and v at every slot, through pagedKvStore. */
  const caches = (dtype: KvCacheDType): [Tensor, Tensor] => {
    const kc = Tensor.zeros([numBlocks, blockSize, Hkv, D], { dtype }), vc = Tensor.zeros([numBlocks, blockSize, Hkv, D], { dtype });
    pagedKvStore(kc, vc, k, v, slots);
    return [kc, vc];
  };
  return { k, v, q, meta, caches, dispose: () => [k, v, q].forEach((t) => t.dispose()) };
}

describe('16-bit paged KV cache', () => {
  it('pagedKvStore rounds to the cache dtype exactly as the cast op does (padding slots untouched)', () => {
    const s = setup(64);
    for (const dtype of HALVES) {
      const [kc, vc] = s.caches(dtype);
      const want = s.k.to(dtype);
      expect(Array.from(kc.toRaw() as Uint16Array)).toEqual(Array.from(want.toRaw() as Uint16Array));
      want.dispose();
      // -1 skips: a store of two tokens with the second padded leaves that slot as it was.
      const before = (vc.toRaw() as Uint16Array).slice();
      const kv2 = Tensor.zeros([2, 2, 64]);
      pagedKvStore(kc, vc, kv2, kv2, Int32Array.from([5, -1]));
      const after = vc.toRaw() as Uint16Array;
      const row = 2 * 64;
      expect(Array.from(after.subarray(5 * row, 6 * row)).every((x) => x === 0)).toBe(true);
      expect(Array.from(after.subarray(6 * row))).toEqual(Array.from(before.subarray(6 * row)));
      for (const t of [kc, vc, kv2]) t.dispose();
    }
    s.dispose();
  });

  for (const D of [64, 32, 24]) {
    it(`pagedAttention over a bf16/f16 cache (head size ${D}) equals f32 attention over it widened, and is near the f32 cache's`, () => {
      const s = setup(D);
      const [kf, vf] = s.caches('f32');
      const full = pagedAttention(s.q, kf, vf, s.meta).toArray() as Float32Array;
      for (const dtype of HALVES) {
        const [kc, vc] = s.caches(dtype);
        const [kw, vw] = [kc.to('f32'), vc.to('f32')];
        const got = pagedAttention(s.q, kc, vc, s.meta).toArray() as Float32Array;
        const exact = pagedAttention(s.q, kw, vw, s.meta).toArray() as Float32Array;
        expectClose(got, exact, 1e-6, 1e-5, `${dtype} cache vs its widened copy`);
        const tol = dtype === 'bf16' ? 3e-2 : 4e-3;
        expectClose(got, full, tol, tol, `${dtype} cache vs the f32 cache`);
        let diff = 0;
        for (let i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(got[i]! - full[i]!));
        expect(diff).toBeGreaterThan(0); // the cache really holds rounded values
        for (const t of [kc, vc, kw, vw]) t.dispose();
      }
      kf.dispose();
      vf.dispose();
      s.dispose();
    });
  }

  it('refuses caches of different dtypes, or of a non-float dtype', () => {
    const s = setup(32);
    const kc = Tensor.zeros([30, 16, 2, 32], { dtype: 'bf16' }), vc = Tensor.zeros([30, 16, 2, 32], { dtype: 'f16' });
    const ki = Tensor.zeros([30, 16, 2, 32], { dtype: 'i32' });
    expect(() => pagedAttention(s.q, kc, vc, s.meta)).toThrow(/vCache .* and kCache .* differ in dtype/);
    expect(() => pagedKvStore(ki, ki, s.k.narrow(0, 1), s.v.narrow(0, 1), Int32Array.from([0]))).toThrow(/kCache .* must hold f32, bf16, f16 elements/);
    for (const t of [kc, vc, ki]) t.dispose();
    s.dispose();
  });
});
