// GEMM for AVX2 + FMA (compiled with -mavx2 -mfma; chosen at run time by gemm.cpp).
//
// Microkernel: 6 rows x 16 columns of C in 12 ymm accumulators; per step of k it loads two
// vectors of the packed B panel and broadcasts 6 values of the packed A panel (15 of the 16
// ymm registers). Two FMA pipes with 4-5 cycles of latency need at least 8-10 independent
// accumulators; 12 suffice.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace pg {
namespace gemm_detail {

namespace {

constexpr int kMR = 6, kNR = 16;

inline __m256i lane_mask(int n) {  // first n of 8 lanes set (n clamped to [0, 8])
  n = n < 0 ? 0 : n > 8 ? 8 : n;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int R>
void tile_rows(int cols, int64_t kc, const float* __restrict a, const float* __restrict b,
               float* __restrict c, int64_t ldc, float alpha, float beta) {
  __m256 c0[R], c1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 15), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
    a += kMR;
    b += kNR;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (cols == kNR) {
    if (beta == 0.0f) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        _mm256_storeu_ps(c + r * ldc, _mm256_mul_ps(c0[r], va));
        _mm256_storeu_ps(c + r * ldc + 8, _mm256_mul_ps(c1[r], va));
      }
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        float* cr = c + r * ldc;
        _mm256_storeu_ps(cr, _mm256_fmadd_ps(c0[r], va, _mm256_mul_ps(_mm256_loadu_ps(cr), vb)));
        _mm256_storeu_ps(cr + 8, _mm256_fmadd_ps(c1[r], va, _mm256_mul_ps(_mm256_loadu_ps(cr + 8), vb)));
      }
    }
    return;
  }
  const __m256i m0 = lane_mask(cols), m1 = lane_mask(cols - 8);
  const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    __m256 y0 = _mm256_mul_ps(c0[r], va), y1 = _mm256_mul_ps(c1[r], va);
    if (beta != 0.0f) {
      y0 = _mm256_fmadd_ps(_mm256_maskload_ps(cr, m0), vb, y0);
      y1 = _mm256_fmadd_ps(_mm256_maskload_ps(cr + 8, m1), vb, y1);
    }
    _mm256_maskstore_ps(cr, m0, y0);
    _mm256_maskstore_ps(cr + 8, m1, y1);
  }
}

// ---- packing: 8 x 8 register transposes for the strided cases ----

inline __m256 load8(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
inline __m256 load8(const uint16_t* p, __m256i m) {  // bf16 -> f32 (masked lanes read as 0)
  alignas(16) uint16_t tmp[8] = {};
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), m);
  for (int l = 0; l < 8; ++l)
    if (lanes[l]) tmp[l] = p[l];
  const __m128i h = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 load8_full(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8_full(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// r[i] = row i (8 values) -> r[c] = column c (8 values).
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// dst[k * stride + r] = src[r * ld + k] for k < kc and r < nstore, rows past nrows as zeros.
template <typename T>
void pack_transposed(float* __restrict dst, int64_t stride, const T* __restrict src, int64_t ld, int nrows,
                     int nstore, int64_t kc) {
  const __m256i store = lane_mask(nstore);
  int64_t k0 = 0;
  for (; k0 + 8 <= kc; k0 += 8) {
    __m256 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = i < nrows ? load8_full(src + i * ld + k0) : _mm256_setzero_ps();
    transpose8(r);
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) _mm256_maskstore_ps(dst + (k0 + c) * stride, store, r[c]);
  }
  if (k0 < kc) {
    const int kn = static_cast<int>(kc - k0);
    const __m256i load = lane_mask(kn);
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = i < nrows ? load8(src + i * ld + k0, load) : _mm256_setzero_ps();
    transpose8(r);
    for (int c = 0; c < kn; ++c) _mm256_maskstore_ps(dst + (k0 + c) * stride, store, r[c]);
  }
}

struct Kern {
  static constexpr int MR = kMR, NR = kNR;

  template <int, typename T>
  static void pack_a(float* dst, const T* A, int64_t lda, bool trans, int64_t i0, int rows, int64_t k0, int64_t kc) {
    if (!trans)  // rows of A are runs of k: transpose 6 (of 8) rows at a time
      pack_transposed(dst, kMR, A + i0 * lda + k0, lda, rows, kMR, kc);
    else
      pack_a_panel<kMR>(dst, A, lda, trans, i0, rows, k0, kc);
  }

  template <int, typename T>
  static void pack_b(float* dst, const T* B, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int cols) {
    if (trans) {  // rows of B are runs of k: two 8-row transposes fill the 16 columns
      const T* src = B + j0 * ldb + k0;
      pack_transposed(dst, kNR, src, ldb, cols < 8 ? cols : 8, 8, kc);
      pack_transposed(dst + 8, kNR, cols > 8 ? src + 8 * ldb : src, ldb, cols > 8 ? cols - 8 : 0, 8, kc);
    } else {
      pack_b_panel<kNR>(dst, B, ldb, trans, k0, kc, j0, cols);
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

// 12 independent chains of ymm FMAs (2 pipes x up to 5 cycles of latency, with margin).
double fma_loop(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  volatile float sink = lanes[0];
  (void)sink;
  return static_cast<double>(iters) * 12 * 8 * 2;
}

}  // namespace

// The same cache blocking as AVX-512 with a 6 x 16 register block: a 6 x 384 A panel (9 KB) in
// L1, a 384 x 480 B block in L2.
const Isa kIsaAvx2 = {"avx2", kMR, kNR, 2016, 384, 480, run_f32, run_bf16, small_f32, small_bf16, fma_loop};

}  // namespace gemm_detail
}  // namespace pg
