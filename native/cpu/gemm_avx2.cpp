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

struct Kern : GenericPacking {
  static constexpr int MR = kMR, NR = kNR;
  static void tile(int rows, int cols, int64_t kc, const float* a, const float* b, float* c,
                   int64_t ldc, float alpha, float beta) {
    switch (rows) {
      case 6: return tile_rows<6>(cols, kc, a, b, c, ldc, alpha, beta);
      case 5: return tile_rows<5>(cols, kc, a, b, c, ldc, alpha, beta);
      case 4: return tile_rows<4>(cols, kc, a, b, c, ldc, alpha, beta);
      case 3: return tile_rows<3>(cols, kc, a, b, c, ldc, alpha, beta);
      case 2: return tile_rows<2>(cols, kc, a, b, c, ldc, alpha, beta);
      default: return tile_rows<1>(cols, kc, a, b, c, ldc, alpha, beta);
    }
  }
};

void run_f32(const Plan& p) { run_units<Kern, float>(p); }
void run_bf16(const Plan& p) { run_units<Kern, uint16_t>(p); }

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
const Isa kIsaAvx2 = {"avx2", kMR, kNR, 2016, 384, 480, run_f32, run_bf16, fma_loop};

}  // namespace gemm_detail
}  // namespace pg
