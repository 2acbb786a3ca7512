// The only place that loads the native addon and describes its raw shape for TypeScript.
// Everything else in src/ goes through src/tensor (Tensor and ops), never through this object.
import { createRequire } from 'node:module';
import { PatentGPTError } from '../errors.js';
import { packageRoot } from '../package.js';

/** A natively owned buffer; tensors are views of one. */
export interface NativeStorage {
  readonly bytes: number;
  readonly device: 'cpu' | 'cuda';
  readonly disposed: boolean;
  free(): void;
  read(into: ArrayBufferView, byteOffset: number): void;
  write(from: ArrayBufferView, byteOffset: number): void;
  copyFrom(src: NativeStorage, dstByteOffset: number, srcByteOffset: number, bytes: number): void;
}

export interface NativeInfo {
  simd: 'avx512' | 'avx2' | 'scalar';
  threads: number;
  cudaCompiled: boolean;
  gpus: { index: number; name: string; computeCapability: string; totalMemory: number }[];
  cudaStatus: string | null;
  compiler?: string;
}

export interface DeviceMemory {
  liveBytes: number;
  liveCount: number;
  peakBytes: number;
  /** Freed blocks kept for reuse by later tensors (CPU host cache, CUDA caching allocator); not counted in liveBytes. */
  cachedBytes: number;
  /** CUDA only: bytes the caching allocator holds from the driver (in use + cached), its peak, and its cudaMalloc calls. */
  reservedBytes?: number;
  peakReservedBytes?: number;
  deviceAllocs?: number;
}

// Tensor arguments are passed as (storage, elementOffset) pairs; `S, O` below.
type S = NativeStorage;
type O = number;

export interface Addon {
  Storage: new (bytes: number, device?: 'cpu' | 'cuda', zero?: boolean) => NativeStorage;
  info(): NativeInfo;
  setNumThreads(n: number): number;
  setSimdLevel(level: 'avx512' | 'avx2' | 'scalar'): string;
  memoryStats(): { cpu: DeviceMemory; cuda: DeviceMemory };
  resetPeakMemory(): void;
  releaseCachedMemory(): void;

  // elementwise.cpp
  addForward(out: S, outO: O, a: S, aO: O, b: S, bO: O, n: number): void;
  axpy(y: S, yO: O, x: S, xO: O, alpha: number, n: number): void;
  /** out = a + alpha * b (STREAM's triad). */
  triad(out: S, oO: O, a: S, aO: O, b: S, bO: O, alpha: number, n: number): void;
  scale(x: S, xO: O, alpha: number, n: number): void;
  fill(x: S, xO: O, value: number, n: number): void;
  sum(x: S, xO: O, n: number): number;
  sumSquares(x: S, xO: O, n: number): number;
  cast(out: S, outO: O, outDtype: string, x: S, xO: O, xDtype: string, n: number): void;
  // Pointwise math: an operand reads x[(i / inner) % size] for output element i of n (its
  // broadcast pattern). op: see BINARY_OP / UNARY_OP in ops/elementwise.ts.
  binaryForward(out: S, oO: O, a: S, aO: O, b: S, bO: O, n: number, aSize: number, aInner: number,
    bSize: number, bInner: number, op: number): void;
  binaryBackward(da: S | null, daO: O, db: S | null, dbO: O, dout: S, doutO: O, a: S, aO: O, b: S, bO: O, n: number,
    aSize: number, aInner: number, bSize: number, bInner: number, op: number): void;
  /** out (size) = sum of x (n) over the elements that read each element of a broadcast operand. */
  sumBroadcast(out: S, oO: O, x: S, xO: O, n: number, size: number, inner: number): void;
  unaryForward(out: S, oO: O, x: S, xO: O, n: number, op: number, lo: number, hi: number): void;
  unaryBackward(dx: S, dxO: O, dout: S, doutO: O, x: S | null, xO: O, out: S | null, outO: O, n: number, op: number,
    lo: number, hi: number): void;
  whereForward(out: S, oO: O, cond: S, cO: O, a: S, aO: O, b: S, bO: O, n: number, aSize: number, aInner: number,
    bSize: number, bInner: number): void;
  whereBackward(da: S | null, daO: O, db: S | null, dbO: O, dout: S, doutO: O, cond: S, cO: O, n: number): void;

  // reduce.cpp: x viewed as (outer, D, inner) around the reduced / indexed dimension
  sumDimForward(out: S, oO: O, x: S, xO: O, outer: number, D: number, inner: number, scale: number): void;
  sumDimBackward(dx: S, dxO: O, dout: S, doutO: O, outer: number, D: number, inner: number, scale: number): void;
  maxDimForward(values: S, vO: O, indices: S, iO: O, x: S, xO: O, outer: number, D: number, inner: number): void;
  gatherForward(out: S, oO: O, x: S, xO: O, index: S, iO: O, outer: number, D: number, K: number, inner: number): void;
  /** dst (outer, D, inner) += src (outer, K, inner) scattered at index along D. */
  scatterAdd(dst: S, dO: O, src: S, sO: O, index: S, iO: O, outer: number, D: number, K: number, inner: number): void;
  softmaxForward(out: S, oO: O, x: S, xO: O, N: number, C: number): void;
  softmaxBackward(dx: S, dxO: O, dout: S, doutO: O, out: S, oO: O, N: number, C: number): void;
  logSoftmaxForward(out: S, oO: O, x: S, xO: O, N: number, C: number): void;
  logSoftmaxBackward(dx: S, dxO: O, dout: S, doutO: O, out: S, oO: O, N: number, C: number): void;

  // gemm.cpp: C = alpha * op(A) @ op(B) + beta * C, batched with batch strides (0 broadcasts)
  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: S, aO: O, lda: number, strideA: number, B: S, bO: O, ldb: number, strideB: number,
    beta: number, C: S, cO: O, ldc: number, strideC: number, batch: number): void;
  /** The dispatched GEMM microkernel and its blocking. */
  gemmConfig(): { isa: string; mr: number; nr: number; mc: number; kc: number; nc: number };
  /** FP32 GFLOP/s of a throughput-bound FMA loop on `threads` threads for about `seconds`. */
  gemmPeakGflops(threads: number, seconds: number): number;
  gemmBf16(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: S, aO: O, lda: number, strideA: number, B: S, bO: O, ldb: number, strideB: number,
    beta: number, C: S, cO: O, ldc: number, strideC: number, batch: number): void;

  // embedding.cpp
  embeddingForward(out: S, outO: O, ids: S, idsO: O, table: S, tableO: O, N: number, V: number, C: number): void;
  embeddingBackward(dtable: S, dtableO: O, dout: S, doutO: O, ids: S, idsO: O, N: number, V: number, C: number): void;

  // rmsnorm.cpp
  rmsnormForward(out: S, outO: O, rstd: S, rstdO: O, x: S, xO: O, w: S, wO: O, N: number, C: number, eps: number): void;
  rmsnormBackward(dx: S, dxO: O, dw: S, dwO: O, dout: S, doutO: O, x: S, xO: O, w: S, wO: O,
    rstd: S, rstdO: O, N: number, C: number): void;

  // rope.cpp
  ropeForward(out: S, outO: O, x: S, xO: O, pos: S, posO: O, T: number, H: number, D: number,
    theta: number, posScale: number): void;
  ropeBackward(dx: S, dxO: O, dout: S, doutO: O, pos: S, posO: O, T: number, H: number, D: number,
    theta: number, posScale: number): void;

  // swiglu.cpp
  swigluForward(out: S, outO: O, gate: S, gateO: O, up: S, upO: O, n: number): void;
  swigluBackward(dgate: S, dgateO: O, dup: S, dupO: O, dout: S, doutO: O, gate: S, gateO: O, up: S, upO: O, n: number): void;

  // cross_entropy.cpp
  crossEntropyForward(loss: S, lossO: O, lse: S, lseO: O, logits: S, logitsO: O, targets: S, targetsO: O,
    N: number, V: number, ignoreIndex: number): void;
  crossEntropyBackward(dlogits: S, dlogitsO: O, dloss: S, dlossO: O, logits: S, logitsO: O, lse: S, lseO: O,
    targets: S, targetsO: O, N: number, V: number, ignoreIndex: number): void;
  logprobForward(out: S, outO: O, lse: S, lseO: O, logits: S, logitsO: O, ids: S, idsO: O, N: number, V: number): void;
  logprobBackward(dlogits: S, dlogitsO: O, dout: S, doutO: O, logits: S, logitsO: O, lse: S, lseO: O,
    ids: S, idsO: O, N: number, V: number): void;

  // attention.cpp
  attentionForward(out: S, outO: O, lse: S, lseO: O, q: S, qO: O, k: S, kO: O, v: S, vO: O,
    cuSeqlens: S, cuO: O, nseq: number, T: number, H: number, Hkv: number, D: number,
    scale: number, causal: boolean): void;
  attentionBackward(dq: S, dqO: O, dk: S, dkO: O, dv: S, dvO: O, delta: S, deltaO: O, dout: S, doutO: O,
    out: S, outO: O, lse: S, lseO: O, q: S, qO: O, k: S, kO: O, v: S, vO: O, cuSeqlens: S, cuO: O,
    nseq: number, T: number, H: number, Hkv: number, D: number, scale: number, causal: boolean): void;

  // paged_attention.cpp: caches (numBlocks, blockSize, Hkv, D)
  pagedKvStore(kCache: S, kcO: O, vCache: S, vcO: O, k: S, kO: O, v: S, vO: O, slotMapping: S, smO: O,
    T: number, Hkv: number, D: number, numBlocks: number, blockSize: number): void;
  pagedAttentionForward(out: S, outO: O, partOut: S, poO: O, partStats: S, psO: O, q: S, qO: O,
    kCache: S, kcO: O, vCache: S, vcO: O, blockTables: S, btO: O, cuQ: S, cuO: O, contextLens: S, clO: O,
    nseq: number, Tq: number, H: number, Hkv: number, D: number, numBlocks: number, blockSize: number,
    maxBlocks: number, partitionSize: number, maxPartitions: number, scale: number): void;

  // gemv.cpp: y (M, N) (+)= x (M, K) @ w (N, K)^T for a few rows, weights streamed once
  gemv(y: S, yO: O, x: S, xO: O, w: S, wO: O, M: number, N: number, K: number, accumulate: boolean): void;
  // decode.cpp: a decoder layer's pieces for a few rows (the inference engine's decode steps)
  decodeQkv(q: S, qO: O, k: S, kO: O, v: S, vO: O, h: S, hO: O, kCache: S, kcO: O, vCache: S, vcO: O, x: S, xO: O,
    normW: S, nwO: O, wq: S, wqO: O, wk: S, wkO: O, wv: S, wvO: O, pos: S, posO: O, slotMapping: S, smO: O,
    M: number, C: number, H: number, Hkv: number, D: number, numBlocks: number, blockSize: number, eps: number,
    theta: number, posScale: number): void;
  decodeSwigluMlp(x: S, xO: O, h: S, hO: O, g: S, gO: O, u: S, uO: O, normW: S, nwO: O, wg: S, wgO: O, wu: S, wuO: O,
    wd: S, wdO: O, M: number, C: number, F: number, eps: number): void;
  /** A whole decoder layer: decodeQkv's arguments (x the residual, updated in place), then the attention's, o_proj's and the MLP's. */
  decodeLayer(...args: [...qkv: Parameters<Addon['decodeQkv']>, o: S, oO: O, partOut: S, poO: O, partStats: S, psO: O,
    blockTables: S, btO: O, cuQ: S, cuO: O, contextLens: S, clO: O, nseq: number, maxBlocks: number, partitionSize: number,
    maxPartitions: number, scale: number, wo: S, woO: O, g: S, gO: O, u: S, uO: O, normW: S, nwO: O, wg: S, wgO: O,
    wu: S, wuO: O, wd: S, wdO: O, F: number, eps: number]): void;
  /** logits (M, V) = rmsnorm(x (M, C), normW) @ w (V, C)^T; h (M, C) scratch. */
  decodeLogits(logits: S, lO: O, h: S, hO: O, x: S, xO: O, normW: S, nwO: O, w: S, wO: O, M: number, C: number, V: number, eps: number): void;

  // adamw.cpp
  adamwStep(param: S, paramO: O, m: S, mO: O, v: S, vO: O, grad: S, gradO: O, n: number, lr: number,
    beta1: number, beta2: number, eps: number, weightDecay: number, step: number, gradScale: number): void;

  // minhash.cpp: sig (N, P) of N documents text[offsets[d], offsets[d+1]); mode 0 words, 1 characters
  minhashSignatures(sig: Uint32Array, text: Uint8Array, offsets: BigInt64Array, N: number, P: number,
    k: number, mode: 0 | 1, seed: number): void;
  // text_stats.cpp: out (N, 15 + m) filter statistics of N UTF-8 documents; ngrams (m, 2): n, kind
  textStats(out: Float64Array, text: Uint8Array, offsets: BigInt64Array, N: number, analyze: number,
    ngrams: Int32Array, m: number): void;
  // bpe_train.cpp (wrapped by text.ts)
  BpeTrainer: new (splitByWhitespace: boolean, allowWhitespaceOnlyPieces: boolean) => NativeBpeTrainer;
  // bpe_encode.cpp (wrapped by bpe-encoder.ts)
  BpeEncoder: new (pieces: Uint8Array, offsets: BigInt64Array, scores: Float32Array, types: Int32Array, unkId: number,
    byteFallback: boolean, addDummyPrefix: boolean, removeExtraWhitespaces: boolean, escapeWhitespaces: boolean) => NativeBpeEncoder;
}

/** native/cpu/bpe_encode.h's BpeEncoder. */
export interface NativeBpeEncoder {
  encode(text: Uint8Array): Int32Array;
  encodeBatch(text: Uint8Array, offsets: BigInt64Array, threads: number, bosId: number, eosId: number): Promise<{ ids: Int32Array; offsets: Float64Array }>;
}

/** native/cpu/bpe_train.h's BpeTrainer. */
export interface NativeBpeTrainer {
  readonly sentences: number;
  readonly uniqueWords: number;
  addSentences(utf8: Uint8Array): void;
  charCounts(): { cps: Uint32Array; counts: Float64Array };
  begin(cps: Uint32Array, scripts: Int32Array, maxPieceLength: number, splitByWhitespace: boolean,
    splitByUnicodeScript: boolean, splitDigits: boolean, allowWhitespaceOnlyPieces: boolean, reserved: string[]): void;
  step(maxPieces: number): number;
  pieces(from: number): { pieces: string[]; freqs: Float64Array };
}

let loaded: Addon | null = null;

/**
 * Loads the addon once: PATENTGPT_ADDON (a .node path) if set, else a prebuild matching this
 * platform under prebuilds/, else the local build/Release. Install scripts need not have run.
 */
export function addon(): Addon {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const root = packageRoot();
  const explicit = process.env.PATENTGPT_ADDON;
  try {
    loaded = (explicit ? require(explicit) : require('node-gyp-build')(root)) as Addon;
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new PatentGPTError(
      'E_ADDON_LOAD',
      `patentgpt: no native addon for ${process.platform}-${process.arch} (node ${process.versions.node}) ` +
        `could be loaded (${why}). Build it from source with 'npm run build:native' in ${root} ` +
        `(needs cmake and a C++17 compiler; nvcc on the PATH adds CUDA).`,
    );
  }
  return loaded;
}
