// Paged KV cache ops (inference only, not differentiable): scatter new keys/values into a
// block-pooled cache through a slot mapping, and attention that reads the cache through
// per-sequence block tables (vLLM's paged attention; decode rows and prefill chunks alike).
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { expectKernel, expectDType, expectRank, expectSameDevice } from '../check.js';
import type { Device } from '../dtype.js';
import { Tensor } from '../tensor.js';

function fail(op: string, message: string): never {
  throw new PatentGPTError('E_SHAPE', `${op}: ${message}`);
}

/** Element types a KV cache may hold: 16-bit caches halve its bytes; attention widens them to f32. */
export type KvCacheDType = 'f32' | 'bf16' | 'f16';
export const KV_CACHE_DTYPES: readonly KvCacheDType[] = ['f32', 'bf16', 'f16'];

/** The caches' element type, after checking that both hold one of KV_CACHE_DTYPES, the same. */
export function kvCacheDType(op: string, kCache: Tensor, vCache: Tensor): KvCacheDType {
  const t = kCache.dtype as KvCacheDType;
  if (!KV_CACHE_DTYPES.includes(t))
    throw new PatentGPTError('E_DTYPE', `${op}: kCache ${kCache.describe()} must hold ${KV_CACHE_DTYPES.join(', ')} elements`);
  if (vCache.dtype !== t) throw new PatentGPTError('E_DTYPE', `${op}: vCache ${vCache.describe()} and kCache ${kCache.describe()} differ in dtype`);
  return t;
}

function cacheGeometry(op: string, kCache: Tensor, vCache: Tensor): [number, number, number, number] {
  kvCacheDType(op, kCache, vCache);
  expectRank(op, 'kCache', kCache, 4);
  if (vCache.shape.join() !== kCache.shape.join()) fail(op, `vCache ${vCache.describe()} differs from kCache ${kCache.describe()}`);
  return kCache.shape as [number, number, number, number];
}

function i32(op: string, what: string, v: Tensor | Int32Array, device: Device): { t: Tensor; owned: boolean } {
  if (v instanceof Tensor) {
    expectDType(op, what, v, 'i32');
    return { t: v, owned: false };
  }
  return { t: Tensor.from(v, [v.length], { dtype: 'i32', device }), owned: true }; // beside the cache, where the kernel reads it
}

/**
 * Writes k and v (T, Hkv, D) into kCache and vCache (numBlocks, blockSize, Hkv, D) at
 * slotMapping (T) i32: slot = block * blockSize + offset; -1 skips the token (padding). A bf16
 * or f16 cache receives the values rounded to nearest even.
 */
export function pagedKvStore(kCache: Tensor, vCache: Tensor, k: Tensor, v: Tensor, slotMapping: Tensor | Int32Array): void {
  const op = 'pagedKvStore';
  const [numBlocks, blockSize, Hkv, D] = cacheGeometry(op, kCache, vCache);
  expectDType(op, 'k', k, 'f32');
  expectDType(op, 'v', v, 'f32');
  expectSameDevice(op, { kCache, vCache, k, v, slotMapping: slotMapping instanceof Tensor ? slotMapping : null });
  expectKernel(op, 'pagedKvStore', kCache, vCache, k, v);
  const T = k.shape[0] ?? 0;
  if (k.shape.join() !== [T, Hkv, D].join() || v.shape.join() !== k.shape.join())
    fail(op, `k ${k.describe()} and v ${v.describe()} must be (T, ${Hkv}, ${D}) like the cache's last dims`);
  const sm = i32(op, 'slotMapping', slotMapping, kCache.device);
  try {
    if (sm.t.size !== T) fail(op, `slotMapping has ${sm.t.size} entries for ${T} tokens`);
    addon().pagedKvStore(kCache.storage, kCache.offset, vCache.storage, vCache.offset, k.storage, k.offset, v.storage, v.offset,
      sm.t.storage, sm.t.offset, T, Hkv, D, numBlocks, blockSize, kCache.dtype as KvCacheDType);
  } finally {
    if (sm.owned) sm.t.dispose();
  }
}

export interface PagedAttentionInputs {
  /** (nseq, maxBlocks) i32: physical block of each logical block of each sequence. */
  blockTables: Tensor | Int32Array;
  /** Columns of blockTables (needed when it is a flat Int32Array). */
  maxBlocks: number;
  /** (nseq + 1) i32: query rows of sequence s are [cuQ[s], cuQ[s + 1]); its newest tokens. */
  cuQ: Tensor | Int32Array;
  /** (nseq) i32: tokens of sequence s in the cache, the query rows' own included. */
  contextLens: Tensor | Int32Array;
  /** Tokens per partition of a long context (default 512, at most 1024). */
  partitionSize?: number;
  /** Logit scale (default 1 / sqrt(D)). */
  scale?: number;
  /** Where to write the result (Tq, H, D); a new tensor when absent. */
  out?: Tensor;
  /**
   * Longest context in contextLens, when the caller knows it (otherwise contextLens is read back
   * from native memory when it is a tensor).
   */
  maxContextLen?: number;
}

/**
 * Causal attention of q (Tq, H, D) against the cached keys and values of each row's sequence:
 * row i of a sequence with qlen rows and context length L sees cache positions [0, L - qlen + i].
 * Grouped-query heads (H a multiple of Hkv); f32 softmax; long contexts are split in partitions
 * merged by max and exp-sum. A bf16 or f16 cache is widened to f32 as it is read. Returns out (Tq, H, D).
 */
export function pagedAttention(q: Tensor, kCache: Tensor, vCache: Tensor, inp: PagedAttentionInputs): Tensor {
  const op = 'pagedAttention';
  const [numBlocks, blockSize, Hkv, D] = cacheGeometry(op, kCache, vCache);
  expectDType(op, 'q', q, 'f32');
  expectRank(op, 'q', q, 3);
  const asT = (v: Tensor | Int32Array): Tensor | null => (v instanceof Tensor ? v : null);
  expectSameDevice(op, { q, kCache, vCache, blockTables: asT(inp.blockTables), cuQ: asT(inp.cuQ), contextLens: asT(inp.contextLens), out: inp.out });
  expectKernel(op, 'pagedAttentionForward', q, kCache, vCache);
  const [Tq, H] = q.shape as [number, number, number];
  if (q.shape[2] !== D) fail(op, `q ${q.describe()} has head size ${q.shape[2]}, the cache ${D}`);
  const partitionSize = inp.partitionSize ?? 512;
  const scale = inp.scale ?? 1 / Math.sqrt(D);
  const bt = i32(op, 'blockTables', inp.blockTables, kCache.device);
  const cu = i32(op, 'cuQ', inp.cuQ, kCache.device);
  const cl = i32(op, 'contextLens', inp.contextLens, kCache.device);
  const nseq = cu.t.size - 1;
  let maxLen = inp.maxContextLen ?? 0;
  if (inp.maxContextLen === undefined)
    for (const c of inp.contextLens instanceof Int32Array ? inp.contextLens : cl.t.toArray() as Int32Array) maxLen = Math.max(maxLen, c);
  const maxPartitions = Math.max(1, Math.ceil(maxLen / Math.max(1, partitionSize)));
  const out = inp.out ?? Tensor.empty([Tq, H, D], { like: q });
  if (out.shape.join() !== [Tq, H, D].join()) fail(op, `out ${out.describe()} must be (${Tq}, ${H}, ${D})`);
  // Partition scratch only when a row may span several partitions (the native side ignores it otherwise).
  const split = maxPartitions > 1;
  const partOut = split ? Tensor.empty([Tq, H, maxPartitions, D], { device: q.device }) : out;
  const partStats = split ? Tensor.empty([Tq, H, maxPartitions, 2], { device: q.device }) : out;
  try {
    if (nseq < 0 || cl.t.size !== nseq) fail(op, `cuQ has ${cu.t.size} entries and contextLens ${cl.t.size}; expected nseq + 1 and nseq`);
    if (bt.t.size !== nseq * inp.maxBlocks) fail(op, `blockTables has ${bt.t.size} entries, expected nseq * maxBlocks = ${nseq * inp.maxBlocks}`);
    addon().pagedAttentionForward(out.storage, out.offset, partOut.storage, partOut.offset, partStats.storage, partStats.offset,
      q.storage, q.offset, kCache.storage, kCache.offset, vCache.storage, vCache.offset, bt.t.storage, bt.t.offset,
      cu.t.storage, cu.t.offset, cl.t.storage, cl.t.offset, nseq, Tq, H, Hkv, D, numBlocks, blockSize, inp.maxBlocks,
      partitionSize, maxPartitions, scale, kCache.dtype as KvCacheDType);
  } catch (err) {
    if (!inp.out) out.dispose();
    throw err;
  } finally {
    if (split) {
      partOut.dispose();
      partStats.dispose();
    }
    for (const x of [bt, cu, cl]) if (x.owned) x.t.dispose();
  }
  return out;
}
