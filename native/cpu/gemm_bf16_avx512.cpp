// bf16-compute GEMM kernels (chosen at run time by gemm_bf16.cpp; compiled with the AVX-512 flags
// of every *_avx512.cpp, plus AVX512_BF16 and AMX for the functions below the target pragma).
//
// Both kernels run inside the blocked driver of gemm_kernels.h: they pack A and B to bf16 (round
// to nearest even) into the driver's float buffers, reinterpreted, and sum in f32.
//
// - AVX-512 BF16: 14 x 32 tile of C in 28 zmm accumulators, like the f32 kernel, but each step
//   takes a pair of k: VDPBF16PS multiplies 16 (k, k+1) pairs of B by a broadcast pair of A.
//   Panels hold pairs: A [kc/2][14][2], B [kc/2][32][2] (bf16).
// - AMX: 32 x 32 tile of C in four 16 x 16 tile registers; per 32 of the depth two A tiles
//   (16 rows x 32 k) and two B tiles (16 k pairs x 16 columns) feed four TDPBF16PS. Panels:
//   A [kc/32][32 rows][32 k], B as above with the depth padded with zeros to a multiple of 32.
#include <immintrin.h>

#include "gemm_kernels.h"
#include "transpose_avx512.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// After the shared headers: only the kernels below get the bf16 and tile instructions.
#pragma GCC target("avx512bf16,amx-tile,amx-bf16,prfchw")

namespace pg {
namespace gemm_detail {

namespace {

inline __mmask16 lanes16(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }
inline __mmask32 lanes32(int64_t n) { return n >= 32 ? __mmask32(0xffffffffu) : n <= 0 ? __mmask32(0) : __mmask32((1u << n) - 1); }

// 16 values (the first n) -> 16 bf16 in a ymm, zeros past n.
inline __m256i bf16x16(const float* p, int64_t n) {
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes16(n), p)));
}
inline __m256i bf16x16(const uint16_t* p, int64_t n) { return _mm256_maskz_loadu_epi16(lanes16(n), p); }

// 32 consecutive values of the depth (the first n) -> 16 (k, k+1) pairs, one per 32-bit lane.
inline __m512i pairs16(const float* p, int64_t n) {
  const __m512 lo = _mm512_maskz_loadu_ps(lanes16(n), p);
  const __m512 hi = _mm512_maskz_loadu_ps(lanes16(n - 16), p + 16);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}
inline __m512i pairs16(const uint16_t* p, int64_t n) { return _mm512_maskz_loadu_epi16(lanes32(n), p); }

// Two rows of the depth (k and k+1, 16 lanes each) -> 16 pairs.
inline __m512i interleave(__m256i k0, __m256i k1) {
  return _mm512_or_si512(_mm512_cvtepu16_epi32(k0), _mm512_slli_epi32(_mm512_cvtepu16_epi32(k1), 16));
}

// r[i] = row i (16 lanes of 32 bits) -> r[c] = column c: the f32 transpose on the same bits.
inline void transpose16(__m512i ri[16]) {
  __m512 r[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castsi512_ps(ri[i]);
  avx512::transpose16(r);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) ri[i] = _mm512_castps_si512(r[i]);
}

// Rows whose depth is contiguous (A not transposed, B transposed): dst[p * stride + r] = pair p
// of row r, for r < nstore (rows past nrows as zeros) and the pairs of depth [0, kc) padded to a
// multiple of Pad values with zeros.
template <int Pad, typename T>
void pack_rows_as_pairs(uint32_t* __restrict dst, int64_t stride, const T* __restrict src, int64_t ld, int nrows,
                        int nstore, int64_t kc) {
  const __mmask16 store = lanes16(nstore);
  const int64_t kpad = round_up(kc, Pad);
  for (int64_t k0 = 0; k0 < kpad; k0 += 32) {
    const int64_t kn = kc - k0;  // may be <= 0 in the padding
    __m512i r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = i < nrows && kn > 0 ? pairs16(src + i * ld + k0, kn) : _mm512_setzero_si512();
    transpose16(r);
    const int64_t np = min64(16, (kpad - k0) / 2);
    for (int p = 0; p < np; ++p) _mm512_mask_storeu_epi32(dst + (k0 / 2 + p) * stride, store, r[p]);
  }
}

// Depth along rows (A transposed, B not): dst[p * stride + c] = pair p of column c, c < nstore
// (columns past ncols as zeros), pairs padded as above.
template <int Pad, typename T>
void pack_cols_as_pairs(uint32_t* __restrict dst, int64_t stride, const T* __restrict src, int64_t ld, int ncols,
                        int nstore, int64_t kc) {
  const int64_t np = round_up(kc, Pad) / 2;
  const __mmask16 store = lanes16(nstore);
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t p = 0; p < np; ++p) {
    const int64_t k = 2 * p;
    _mm_prefetch(reinterpret_cast<const char*>(src + (k + 8) * ld), _MM_HINT_T0);
    const __m256i lo = k < kc ? bf16x16(src + k * ld, ncols) : zero;
    const __m256i hi = k + 1 < kc ? bf16x16(src + (k + 1) * ld, ncols) : zero;
    _mm512_mask_storeu_epi32(dst + p * stride, store, interleave(lo, hi));
  }
}

// C[0:rows, 0:cols] = alpha * acc + beta * C (beta == 0: C not read); acc0/acc1 hold columns
// 0-15 and 16-31 of each row.
template <int R>
inline void store_rows(int cols, const __m512* c0, const __m512* c1, float* c, int64_t ldc, float alpha, float beta) {
  const __m512 va = _mm512_set1_ps(alpha);
  const __mmask16 m0 = lanes16(cols), m1 = lanes16(cols - 16);
  if (beta == 0.0f) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(c + r * ldc, m0, _mm512_mul_ps(c0[r], va));
      _mm512_mask_storeu_ps(c + r * ldc + 16, m1, _mm512_mul_ps(c1[r], va));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc;
      const __m512 x0 = _mm512_maskz_loadu_ps(m0, cr), x1 = _mm512_maskz_loadu_ps(m1, cr + 16);
      _mm512_mask_storeu_ps(cr, m0, _mm512_fmadd_ps(c0[r], va, _mm512_mul_ps(x0, vb)));
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_fmadd_ps(c1[r], va, _mm512_mul_ps(x1, vb)));
    }
  }
}

// ---- AVX-512 BF16 ----

struct DpKern {
  static constexpr int MR = 14, NR = 32;
  static constexpr int kPerSlot = 2, kDepthPad = 2;  // panels of bf16 pairs (gemm_kernels.h)

  template <int R>
  static void tile_rows(int cols, int64_t kc, const uint32_t* __restrict a, const uint32_t* __restrict b,
                        float* __restrict c, int64_t ldc, float alpha, float beta) {
    __m512 c0[R], c1[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 31), _MM_HINT_T0);
    }
    const int64_t kp = (kc + 1) / 2;
    for (int64_t k = 0; k < kp; ++k) {
      const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b));
      const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + 16));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[r])));
        c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
        c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
      }
      a += MR;
      b += NR;
    }
    store_rows<R>(cols, c0, c1, c, ldc, alpha, beta);
  }

  static void tile(int rows, int cols, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                   float alpha, float beta) {
    const uint32_t* ap = reinterpret_cast<const uint32_t*>(a);
    const uint32_t* bp = reinterpret_cast<const uint32_t*>(b);
    with_rows<MR>(rows, [&](auto r) { tile_rows<decltype(r)::value>(cols, kc, ap, bp, c, ldc, alpha, beta); });
  }

  template <int, typename T>
  static void pack_a(float* dst, const T* A, int64_t lda, bool trans, int64_t i0, int rows, int64_t k0, int64_t kc) {
    uint32_t* d = reinterpret_cast<uint32_t*>(dst);
    if (!trans) pack_rows_as_pairs<2>(d, MR, A + i0 * lda + k0, lda, rows, MR, kc);
    else pack_cols_as_pairs<2>(d, MR, A + k0 * lda + i0, lda, rows, MR, kc);
  }

  template <int, typename T>
  static void pack_b(float* dst, const T* B, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int cols) {
    pack_b_pairs<2>(reinterpret_cast<uint32_t*>(dst), B, ldb, trans, k0, kc, j0, cols);
  }

  // B panel [kc/2][32][2], depth padded to Pad with zeros.
  template <int Pad, typename T>
  static void pack_b_pairs(uint32_t* d, const T* B, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0,
                           int cols) {
    if (trans) {
      const T* src = B + j0 * ldb + k0;
      pack_rows_as_pairs<Pad>(d, NR, src, ldb, cols < 16 ? cols : 16, 16, kc);
      pack_rows_as_pairs<Pad>(d + 16, NR, cols > 16 ? src + 16 * ldb : src, ldb, cols > 16 ? cols - 16 : 0, 16, kc);
    } else {  // both halves of a depth row at once: each row's two cache lines read together
      const T* src = B + k0 * ldb + j0;
      const int64_t np = round_up(kc, Pad) / 2;
      const int c0 = cols < 16 ? cols : 16, c1 = cols > 16 ? cols - 16 : 0;
      const __m256i zero = _mm256_setzero_si256();
      for (int64_t p = 0; p < np; ++p) {
        const int64_t k = 2 * p;
        const T* r0 = src + k * ldb;
        const T* r1 = r0 + ldb;
        _mm_prefetch(reinterpret_cast<const char*>(r0 + 8 * ldb), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(r0 + 8 * ldb + 16), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(r1 + 8 * ldb), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(r1 + 8 * ldb + 16), _MM_HINT_T0);
        const bool has0 = k < kc, has1 = k + 1 < kc;
        _mm512_storeu_si512(d + p * NR, interleave(has0 ? bf16x16(r0, c0) : zero, has1 ? bf16x16(r1, c0) : zero));
        _mm512_storeu_si512(d + p * NR + 16,
                            interleave(has0 ? bf16x16(r0 + 16, c1) : zero, has1 ? bf16x16(r1 + 16, c1) : zero));
      }
    }
  }
};

// ---- AMX ----

struct TileConfig {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Eight tiles of 16 rows x 64 bytes, loaded on entry to every thread body and released on exit:
// another AMX user on the same thread (oneDNN in a process that also runs torch, for one) may
// release or reconfigure the tiles between our calls, so a configuration kept from an earlier
// call is not to be trusted (a tile instruction without one raises #UD).
inline void configure_tiles() {
  alignas(64) TileConfig cfg{};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // GCC's _tile_loadconfig tells the compiler it reads 8 bytes only, which lets it drop the other
  // stores to cfg (seen: colsb left zero, a #GP on LDTILECFG); the barrier keeps all 64.
  __asm__ __volatile__("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

// The next A panel's lines, fetched into L2 a few at a time while this panel's row of tiles runs
// (rows of per_row lines, stride bytes apart), so its first tiles do not wait on L3.
struct RowPrefetch {
  const char* p = nullptr;
  int64_t stride = 0, per_row = 0, total = 0, next = 0;
  inline void issue(int64_t n) {
    for (int64_t e = min64(total, next + n); next < e; ++next)
      _mm_prefetch(p + (next / per_row) * stride + 64 * (next % per_row), _MM_HINT_T1);
  }
};

struct AmxKern {
  static constexpr int MR = 32, NR = 32;
  static constexpr int kPerSlot = 2, kDepthPad = 32;

  // Where a panel's A tiles are: the tile of rows 16g..16g+15 and depth block blk starts at
  // a + g * half + blk * step (bf16 values), its rows stride bytes apart. Packed panels
  // ([blk][32 rows][32 k]) and rows of op(A) read in place (row_direct) differ only in these.
  struct ATiles {
    const uint16_t* a;
    int64_t stride, half, step;
  };
  static ATiles packed(const float* a) { return {reinterpret_cast<const uint16_t*>(a), 64, 512, 1024}; }

  // Copying a pass of op(A) rows (ld apart) into an L1 buffer as a packed panel, a depth block
  // (32 rows x 32 values) at a time.
  static constexpr int64_t kCopyAhead = 2;
  struct CopyAhead {
    uint16_t* dst = nullptr;
    const uint16_t* src = nullptr;
    int64_t ld = 0, blocks = 0;
    inline void block(int64_t q) const {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r)
        _mm512_store_si512(dst + q * 1024 + r * 32, _mm512_loadu_si512(src + r * ld + 32 * q));
    }
  };

  // The tiles of a row, in depth passes of at most kPassDepth (even ones: 768 as two of 384, 1024
  // as two of 512): one pass's A panel (32 rows x 512 bf16 at most, 32 KB) then stays in L1 while
  // every tile of the row streams its B panel from L2, and C (this row's, at most 32 x nc floats)
  // sums the passes in L2. A whole 768- or 1024-deep panel (48 or 64 KB) does not fit L1 beside
  // the B tiles streaming through, and came from L2 as well: twice the L2 traffic. (One thread,
  // CPU time: 2048x768x768 NT 10-15% faster; the other shapes within the noise.) Each tile's
  // last depth block also loads the first A and B tiles of the next (this pass's next tile or the
  // next pass's first), so those loads overlap its stores; and the row fetches the next A panel
  // (the driver's next call) into L2 meanwhile, whose first tiles otherwise waited on L3 (2-9%).
  //
  // Where C is streamed (Plan::stream_c) and the row is whole tiles at alpha 1, the passes sum in
  // cbuf instead (in L2, its rows kStreamLd floats apart: 33 lines, so that a tile's 16 rows fall
  // in different L1 sets), and the last pass stores each tile to C with non-temporal stores: C's
  // lines are then written once, never read (4096 x 4096 x 1024: 64 MB of C, 18% faster on one
  // and two threads; 2048 x 32000 x 768: 3%).
  static constexpr int64_t kPassDepth = 512, kStreamLd = 528;
  static void row_at(int rows, int64_t cols, int64_t kc, ATiles a, const float* b, int64_t b_stride, float* c,
                     int64_t ldc, float alpha, float beta, bool stream_c, RowPrefetch pfa,
                     const uint16_t* copy_src = nullptr, int64_t copy_ld = 0) {
    alignas(64) uint16_t abuf[MR * kPassDepth];  // a pass's A panel copied from copy_src (32 KB)
    alignas(64) float cbuf[MR * kStreamLd];       // the row's sums where C is streamed (66 KB)
    float* stream_to = nullptr;  // C, where this row streams to it
    const int64_t stream_ld = ldc;
    if (stream_c && rows == MR && cols % NR == 0 && cols <= kStreamLd - 16 && alpha == 1.0f && beta == 0.0f &&
        reinterpret_cast<uintptr_t>(c) % 64 == 0 && ldc % 16 == 0) {
      stream_to = c;
      c = cbuf;
      ldc = kStreamLd;
    }
    const uint16_t* b16 = reinterpret_cast<const uint16_t*>(b);
    const int64_t bstride16 = 2 * b_stride;  // bf16 values between B panels
    const int64_t nblk = ceil_div(kc, 32);
    const int64_t per = ceil_div(nblk, ceil_div(nblk, kPassDepth / 32));  // depth blocks per pass
    bool preloaded = false;
    // Lines of the next A panel per depth block of this row's tiles.
    const int64_t tiles = ceil_div(cols, NR);
    const int64_t pf_per_block = ceil_div(pfa.total, tiles * nblk);
    for (int64_t blk0 = 0; blk0 < nblk; blk0 += per) {
      const int64_t depth = min64(32 * per, kc - 32 * blk0);
      ATiles ap{a.a + blk0 * a.step, a.stride, a.half, a.step};
      // This pass's rows of op(A) into abuf as a packed panel: the first kCopyAhead depth blocks
      // now, the others by the row's first tile, each kCopyAhead blocks before its loads
      // (tile_at), so that the copy overlaps the products instead of stalling them (4096 x 4096 x
      // 1024: 2-3.5% faster than the whole pass copied first, on 1 and 2 threads; one block
      // ahead or four measured the same as two).
      CopyAhead copy;
      if (copy_src != nullptr) {
        copy = {abuf, copy_src + 32 * blk0, copy_ld, depth / 32};
        for (int64_t q = 0; q < min64(kCopyAhead, copy.blocks); ++q) copy.block(q);
        ap = packed(reinterpret_cast<const float*>(abuf));
      }
      const uint16_t* bp = b16 + blk0 * 1024;  // a depth block of a B panel: 16 pairs x 32 columns
      const float pass_beta = blk0 == 0 ? beta : 1.0f;
      for (int64_t j = 0; j < cols; j += NR) {
        const uint16_t *next_a = nullptr, *next_b = nullptr;
        if (j + NR < cols) {
          next_a = ap.a;
          next_b = bp + (j / NR + 1) * bstride16;
        } else if (blk0 + per < nblk && copy_src == nullptr) {  // abuf is refilled first
          next_a = a.a + (blk0 + per) * a.step;
          next_b = b16 + (blk0 + per) * 1024;
        }
        const bool last_pass = blk0 + per >= nblk;
        tile_at(rows, static_cast<int>(min64(NR, cols - j)), depth, ap, bp + (j / NR) * bstride16, c + j, ldc,
                alpha, pass_beta, preloaded, next_a, next_b, pfa, pf_per_block, blk0 == 0 && stream_to == nullptr,
                j == 0 ? copy : CopyAhead{}, stream_to != nullptr && last_pass ? stream_to + j : nullptr, stream_ld);
        preloaded = next_b != nullptr;
      }
    }
  }

  static void row(int rows, int64_t cols, int64_t kc, const float* a, const float* b, int64_t b_stride, float* c,
                  int64_t ldc, float alpha, float beta, bool stream_c) {
    // The driver's next call takes the next panel of the packed block: MR rows of the padded depth.
    const int64_t bytes = MR * round_up(kc, 32) * 2;
    const RowPrefetch pfa{reinterpret_cast<const char*>(a) + bytes, bytes, bytes / 64, bytes / 64, 0};
    row_at(rows, cols, kc, packed(a), b, b_stride, c, ldc, alpha, beta, stream_c, pfa);
  }

  // bf16 op(A) not transposed: a whole panel's 32 rows (lda apart) are tile rows as they stand,
  // so the driver packs no A (a depth block of 32 values is one tile row of 64 bytes) unless the
  // depth block is ragged (a tile row would run past the block). Rows that alias in L1 (4 KB
  // apart at lda 2048, 2 KB at 1024: a panel falls in a few sets of its 4 KB ways and thrashes
  // there, 10-20% slower than packing) are copied a pass at a time into an L1 buffer instead:
  // 2-5% faster than the driver's shared packing, which wrote the whole block out to L3 and read
  // it back (one thread, K 1024 and 2048). Rows 1.5 KB apart (768) spread and are read in place.
  static bool reads_in_place(int64_t lda, int64_t kc) { return kc % 32 == 0; }
  static bool aliases_in_l1(int64_t lda) {
    int64_t g = 4096, r = 2 * lda % 4096;  // gcd(row stride in bytes, 4096)
    while (r != 0) {
      const int64_t t = g % r;
      g = r;
      r = t;
    }
    return g > 512;
  }
  static void row_direct(int64_t cols, int64_t kc, const uint16_t* a, int64_t lda, const float* b,
                         int64_t b_stride, float* c, int64_t ldc, float alpha, float beta, bool stream_c) {
    // The driver's next call takes the next MR rows.
    const int64_t lines = ceil_div(kc, 32);  // per row
    const RowPrefetch pfa{reinterpret_cast<const char*>(a + MR * lda), 2 * lda, lines, MR * lines, 0};
    row_at(MR, cols, kc, ATiles{a, 2 * lda, 16 * lda, 32}, b, b_stride, c, ldc, alpha, beta, stream_c, pfa,
           aliases_in_l1(lda) ? a : nullptr, lda);
  }

  static void tile(int rows, int cols, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                   float alpha, float beta) {
    RowPrefetch pf_none;
    tile_at(rows, cols, kc, packed(a), reinterpret_cast<const uint16_t*>(b), c, ldc, alpha, beta, false, nullptr,
            nullptr, pf_none, 0, false, CopyAhead{}, nullptr, 0);
  }

  // preloaded: tiles 4 and 6 already hold this tile's first A and B tiles; next_a, next_b: the
  // first depth block of the next tile's A and B (A with this tile's strides), loaded into 4 and
  // 6 before returning (none when null). Inlined into the row's loop: a call per tile kept the
  // prefetch state (pfa) in memory and measured 10-15% slower (one thread, every shape).
  // stream_to: a whole tile's place in C (rows stream_ld apart, 64-byte aligned), to store it to
  // with non-temporal stores instead of to c.
  [[gnu::always_inline]] static inline void tile_at(int rows, int cols, int64_t kc, ATiles a, const uint16_t* bp,
                                                    float* c, int64_t ldc, float alpha, float beta, bool preloaded,
                                                    const uint16_t* next_a, const uint16_t* next_b,
                                                    RowPrefetch& pfa, int64_t pf_per_block, bool fetch_c,
                                                    CopyAhead copy, float* stream_to, int64_t stream_ld) {
    const int64_t nblk = ceil_div(kc, 32);
    // A whole tile at alpha 1 (every product of matmul and linear) accumulates in the tile
    // registers straight from and to C: beta 1 (the depth blocks after the first) loads C into
    // them first. In a row's first pass (fetch_c) the next tile's C rows (the driver walks the
    // columns of this row panel: 64 lines, 32 rows apart) come from L3 or memory, and are fetched
    // into L2 meanwhile, a few per depth block (all at once they stall the loop: 8% slower); the
    // later passes find them in L2 as the first left them. Into L2 for reading, not into L1 for
    // writing (PREFETCHW): a line no other core holds arrives exclusive, so the store needs no
    // second request, and the A panel the row reuses keeps L1 (one thread, against PREFETCHW in
    // every pass: 5-10% faster on every shape of the gemm bench; against no prefetch at all, 2-6%).
    // (Storing the tiles to a buffer and C from vectors instead measured about 10% slower, and
    // streaming them to C with non-temporal stores, bypassing the caches, 1.5-2x slower.)
    const bool whole = rows == MR && cols == NR && alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    const int64_t prefetch_per_block = ceil_div(64, nblk);
    const int64_t ldb = ldc * 4;  // bytes
    if (whole && beta == 1.0f) {
      _tile_loadd(0, c, ldb);
      _tile_loadd(1, c + 16, ldb);
      _tile_loadd(2, c + 16 * ldc, ldb);
      _tile_loadd(3, c + 16 * ldc + 16, ldb);
    } else {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
    }
    // Software-pipelined: each operand tile is reloaded as soon as its last reader has issued
    // (tiles are not renamed: a load waits for the products still reading its register), so the
    // loads of block blk + 1 overlap the products of block blk. B tiles are streamed (read once
    // per tile, from L2) so that the A panel, reused for every tile of the row, stays in L1.
    const uint16_t* at = a.a;  // block blk: 32 rows x 32 k
    const uint16_t* bt = bp;   // 16 pairs x 32 columns x 2
    const int64_t as = a.stride, ah = a.half, astep = a.step;
    if (!preloaded) {
      _tile_loadd(4, at, as);
      _tile_stream_loadd(6, bt, 128);
    }
    for (int64_t blk = 0; blk < nblk; ++blk) {
      for (int64_t q = blk * prefetch_per_block; q < (blk + 1) * prefetch_per_block && q < 64; ++q)
        if (fetch_c) _mm_prefetch(reinterpret_cast<const char*>(c + (q >> 1) * ldc + NR + 16 * (q & 1)), _MM_HINT_T1);
      pfa.issue(pf_per_block);
      if (copy.dst != nullptr && blk + kCopyAhead < copy.blocks) copy.block(blk + kCopyAhead);
      _tile_dpbf16ps(0, 4, 6);
      _tile_stream_loadd(7, bt + 32, 128);
      _tile_dpbf16ps(1, 4, 7);
      _tile_loadd(5, at + ah, as);
      _tile_dpbf16ps(2, 5, 6);
      at += astep;
      bt += 1024;
      if (blk + 1 < nblk) _tile_loadd(4, at, as);
      else if (next_b != nullptr) _tile_loadd(4, next_a, as);
      _tile_dpbf16ps(3, 5, 7);
      if (blk + 1 < nblk) _tile_stream_loadd(6, bt, 128);
      else if (next_b != nullptr) _tile_stream_loadd(6, next_b, 128);
    }
    if (whole && stream_to == nullptr) {
      _tile_stored(0, c, ldb);
      _tile_stored(1, c + 16, ldb);
      _tile_stored(2, c + 16 * ldc, ldb);
      _tile_stored(3, c + 16 * ldc + 16, ldb);
      return;
    }
    alignas(64) float t[32 * 32];
    _tile_stored(0, t, 128);
    _tile_stored(1, t + 16, 128);
    _tile_stored(2, t + 16 * 32, 128);
    _tile_stored(3, t + 16 * 32 + 16, 128);
    if (stream_to != nullptr) {
#pragma GCC unroll 4
      for (int r = 0; r < 32; ++r) {
        _mm512_stream_ps(stream_to + r * stream_ld, _mm512_load_ps(t + 32 * r));
        _mm512_stream_ps(stream_to + r * stream_ld + 16, _mm512_load_ps(t + 32 * r + 16));
      }
      return;
    }
    for (int r = 0; r < rows; ++r) {
      const __m512 c0 = _mm512_load_ps(t + 32 * r), c1 = _mm512_load_ps(t + 32 * r + 16);
      store_rows<1>(cols, &c0, &c1, c + r * ldc, ldc, alpha, beta);
    }
  }

  template <int, typename T>
  static void pack_a(float* dst, const T* A, int64_t lda, bool trans, int64_t i0, int rows, int64_t k0, int64_t kc) {
    uint32_t* d = reinterpret_cast<uint32_t*>(dst);  // [blk][32 rows][16 pairs]
    const int64_t nblk = ceil_div(kc, 32);
    if (!trans) {
      const T* src = A + i0 * lda + k0;
      for (int r = 0; r < rows; ++r)  // each row's depth in one run: streams from memory
        for (int64_t blk = 0; blk < nblk; ++blk)
          _mm512_storeu_si512(d + blk * 512 + r * 16, pairs16(src + r * lda + 32 * blk, kc - 32 * blk));
    } else {  // pairs of depth rows give [pair][row]; a transpose makes them [row][pair]
      const T* src = A + k0 * lda + i0;
      const __m256i zero = _mm256_setzero_si256();
      for (int64_t blk = 0; blk < nblk; ++blk)
        for (int g = 0; g < 2 && 16 * g < rows; ++g) {
          const int ncols = rows - 16 * g;
          __m512i v[16];
#pragma GCC unroll 16
          for (int p = 0; p < 16; ++p) {
            const int64_t k = 32 * blk + 2 * p;
            const __m256i lo = k < kc ? bf16x16(src + k * lda + 16 * g, ncols) : zero;
            const __m256i hi = k + 1 < kc ? bf16x16(src + (k + 1) * lda + 16 * g, ncols) : zero;
            v[p] = interleave(lo, hi);
          }
          transpose16(v);
          for (int r = 0; r < 16 && r < ncols; ++r) _mm512_storeu_si512(d + blk * 512 + (16 * g + r) * 16, v[r]);
        }
    }
  }

  template <int, typename T>
  static void pack_b(float* dst, const T* B, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int cols) {
    DpKern::pack_b_pairs<32>(reinterpret_cast<uint32_t*>(dst), B, ldb, trans, k0, kc, j0, cols);
  }
};

void dp_f32(const Plan& p) { run_units<DpKern, float>(p); }
void dp_bf16(const Plan& p) { run_units<DpKern, uint16_t>(p); }
template <typename T>
void amx_units(const Plan& p) {
  configure_tiles();
  run_units<AmxKern, T>(p);
  if (p.stream_c) _mm_sfence();  // the non-temporal stores are not ordered by the pool's release
  _tile_release();
}
void amx_f32(const Plan& p) { amx_units<float>(p); }
void amx_bf16(const Plan& p) { amx_units<uint16_t>(p); }

}  // namespace

// Blocking (gemm.cpp sizes the workspace for every table, these included): bf16 panels take half
// a float per value (per_slot, PanelLayout) and pad the depth to 32 (kc_align; gemm_bf16.cpp
// sends K < 32 to the AVX-512 BF16 kernel). The AMX depth block of 1024 takes K 768 and 1024
// whole and 2048 in two, so that C (the driver's iterations walk all of it per depth block: 64 MB
// at 4096 x 4096) is read and written once per 1024 of the depth, not once per 512 or 704; the
// B block (1024 x 512 bf16, 1 MB) still sits in L2. Its 2048 rows take a 2048-token batch in one
// row block, so that B is packed once (measured 3-7% over 2016 rows). With several threads, one
// column block per thread (row groups share out narrow N): each A panel then meets up to 16 B
// panels per load instead of 3 at N 768 (four blocks per thread, as the f32 kernels cut it),
// measured 1.3-1.6x per thread on the N 768 shapes at 2 threads (two blocks per thread, 192
// columns, measured 0.75-0.8x of one at 2 threads). Columns of 512 cut N 2048 into 4 blocks,
// 2 per thread, where 480 gave 5 (3 on one thread, 2 on the other).
extern const Isa kIsaAvx512Bf16 = {"avx512bf16", DpKern::MR, DpKern::NR, 2016, 384, 480, dp_f32, dp_bf16,
                                   nullptr, nullptr, nullptr, 32, DpKern::kPerSlot};
extern const Isa kIsaAmx = {"amx", AmxKern::MR, AmxKern::NR, 2048, 1024, 512, amx_f32, amx_bf16,
                            nullptr, nullptr, nullptr, AmxKern::kDepthPad, AmxKern::kPerSlot, 1, true};

}  // namespace gemm_detail
}  // namespace pg
