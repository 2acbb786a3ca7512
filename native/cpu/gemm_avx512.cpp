// GEMM for AVX-512 (compiled with -mavx512f...; chosen at run time by gemm.cpp).
//
// Microkernel: 14 rows x 32 columns of C in 28 zmm accumulators; per step of k it loads two
// vectors of the packed B panel and broadcasts 14 values of the packed A panel (31 of the 32
// zmm registers). On Zen 4, whose two 256-bit FMA pipes retire one 512-bit FMA a cycle, the
// 28 independent accumulators hide the 4-cycle FMA latency with room to spare.
#include <immintrin.h>

#include "gemm_kernels.h"
#include "transpose_avx512.h"

// GCC 12's intrinsics start some results from _mm512_undefined_*(), which -Wall reports as
// "may be used uninitialized" once inlined into the transposes; the values are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace pg {
namespace gemm_detail {

namespace {

constexpr int kMR = 14, kNR = 32;

template <int R>
void tile_rows(int cols, int64_t kc, const float* __restrict a, const float* __restrict b,
               float* __restrict c, int64_t ldc, float alpha, float beta) {
  __m512 c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
  // Bring the C tile toward L1 while the k loop runs.
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 31), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
    a += kMR;
    b += kNR;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xffff) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xffff) : cols <= 16 ? __mmask16(0) : __mmask16((1u << (cols - 16)) - 1);
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
      __m512 x0 = _mm512_maskz_loadu_ps(m0, cr);
      __m512 x1 = _mm512_maskz_loadu_ps(m1, cr + 16);
      _mm512_mask_storeu_ps(cr, m0, _mm512_fmadd_ps(c0[r], va, _mm512_mul_ps(x0, vb)));
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_fmadd_ps(c1[r], va, _mm512_mul_ps(x1, vb)));
    }
  }
}

// ---- packing: 16 x 16 register transposes for the strided cases ----

inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const uint16_t* p, __mmask16 m) {  // bf16 -> f32: the bits go to the top half
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// dst[k * stride + r] = src[r * ld + k] for k < kc and r < nstore, rows past nrows as zeros.
template <typename T>
void pack_transposed(float* __restrict dst, int64_t stride, const T* __restrict src, int64_t ld, int nrows,
                     int nstore, int64_t kc) {
  const __mmask16 store = first_lanes(nstore);
  for (int64_t k0 = 0; k0 < kc; k0 += 16) {
    const int64_t kn = kc - k0 < 16 ? kc - k0 : 16;
    const __mmask16 load = first_lanes(kn);
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = i < nrows ? load16(src + i * ld + k0, load) : _mm512_setzero_ps();
    avx512::transpose16(r);
    if (kn == 16) {
#pragma GCC unroll 16
      for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(dst + (k0 + c) * stride, store, r[c]);
    } else {
      for (int c = 0; c < kn; ++c) _mm512_mask_storeu_ps(dst + (k0 + c) * stride, store, r[c]);
    }
  }
}

struct Kern {
  static constexpr int MR = kMR, NR = kNR;

  template <int, typename T>
  static void pack_a(float* dst, const T* A, int64_t lda, bool trans, int64_t i0, int rows, int64_t k0, int64_t kc) {
    if (!trans) {  // rows of A are runs of k: transpose 14 (of 16) rows at a time
      pack_transposed(dst, kMR, A + i0 * lda + k0, lda, rows, kMR, kc);
    } else {  // each k is a run of up to 14 values, rows lda apart: prefetch a few rows ahead
      const __mmask16 m = first_lanes(rows);
      const T* src = A + k0 * lda + i0;
      for (int64_t k = 0; k < kc; ++k) {
        _mm_prefetch(reinterpret_cast<const char*>(src + (k + 8) * lda), _MM_HINT_T0);
        _mm512_mask_storeu_ps(dst + k * kMR, m, load16(src + k * lda, m));
      }
    }
  }

  template <int, typename T>
  static void pack_b(float* dst, const T* B, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int cols) {
    if (trans) {  // rows of B are runs of k: two 16-row transposes fill the 32 columns
      const T* src = B + j0 * ldb + k0;
      pack_transposed(dst, kNR, src, ldb, cols < 16 ? cols : 16, 16, kc);
      pack_transposed(dst + 16, kNR, cols > 16 ? src + 16 * ldb : src, ldb, cols > 16 ? cols - 16 : 0, 16, kc);
    } else {  // each k is a run of up to 32 values; zeros past cols
      const __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols > 16 ? cols - 16 : 0);
      const T* src = B + k0 * ldb + j0;
      for (int64_t k = 0; k < kc; ++k) {
        _mm512_store_ps(dst + k * kNR, load16(src + k * ldb, m0));
        _mm512_store_ps(dst + k * kNR + 16, load16(src + k * ldb + 16, m1));
      }
    }
  }

  static void tile(int rows, int cols, int64_t kc, const float* a, const float* b, float* c,
                   int64_t ldc, float alpha, float beta) {
    with_rows<kMR>(rows, [&](auto r) { tile_rows<decltype(r)::value>(cols, kc, a, b, c, ldc, alpha, beta); });
  }
};

void run_f32(const Plan& p) { run_units<Kern, float>(p); }
void run_bf16(const Plan& p) { run_units<Kern, uint16_t>(p); }
void small_f32(const Plan& p, const float* a, int64_t j0, int64_t j1) { small_m_columns<float>(p, a, j0, j1); }
void small_bf16(const Plan& p, const float* a, int64_t j0, int64_t j1) { small_m_columns<uint16_t>(p, a, j0, j1); }

// 16 independent chains of zmm FMAs: throughput-bound, so FLOPs / time is the core's peak.
double fma_loop(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  volatile float sink = lanes[0];
  (void)sink;
  return static_cast<double>(iters) * 16 * 16 * 2;
}

}  // namespace

// Blocking for Zen 4 class cores (32 KB L1d, 1 MB L2, 32 MB L3): the 14 x 384 A panel (21 KB)
// stays in L1, a B block of at most 384 x 480 (720 KB; narrower with several threads, so that
// each gets about four) in L2, the shared A block (up to 2016 x 384, 3 MB) in L3. Measured on a
// Zen 4 core: the microkernel alone, on panels resident that way, runs at the FMA loop's peak
// (about 115 GFLOP/s); packing costs another 5-8% of a whole product.
const Isa kIsaAvx512 = {"avx512", kMR, kNR, 2016, 384, 480, run_f32, run_bf16, small_f32, small_bf16, fma_loop};

}  // namespace gemm_detail
}  // namespace pg
