// GEMM for AVX-512 (compiled with -mavx512f...; chosen at run time by gemm.cpp).
//
// Microkernel: 14 rows x 32 columns of C in 28 zmm accumulators; per step of k it loads two
// vectors of the packed B panel and broadcasts 14 values of the packed A panel (31 of the 32
// zmm registers). On Zen 4, whose two 256-bit FMA pipes retire one 512-bit FMA a cycle, the
// 28 independent accumulators hide the 4-cycle FMA latency with room to spare.
#include <immintrin.h>

#include "gemm_kernels.h"

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

struct Kern {
  static constexpr int MR = kMR, NR = kNR;
  static void tile(int rows, int cols, int64_t kc, const float* a, const float* b, float* c,
                   int64_t ldc, float alpha, float beta) {
    switch (rows) {
      case 14: return tile_rows<14>(cols, kc, a, b, c, ldc, alpha, beta);
      case 13: return tile_rows<13>(cols, kc, a, b, c, ldc, alpha, beta);
      case 12: return tile_rows<12>(cols, kc, a, b, c, ldc, alpha, beta);
      case 11: return tile_rows<11>(cols, kc, a, b, c, ldc, alpha, beta);
      case 10: return tile_rows<10>(cols, kc, a, b, c, ldc, alpha, beta);
      case 9: return tile_rows<9>(cols, kc, a, b, c, ldc, alpha, beta);
      case 8: return tile_rows<8>(cols, kc, a, b, c, ldc, alpha, beta);
      case 7: return tile_rows<7>(cols, kc, a, b, c, ldc, alpha, beta);
      case 6: return tile_rows<6>(cols, kc, a, b, c, ldc, alpha, beta);
      case 5: return tile_rows<5>(cols, kc, a, b, c, ldc, alpha, beta);
      case 4: return tile_rows<4>(cols, kc, a, b, c, ldc, alpha, beta);
      case 3: return tile_rows<3>(cols, kc, a, b, c, ldc, alpha, beta);
      case 2: return tile_rows<2>(cols, kc, a, b, c, ldc, alpha, beta);
      default: return tile_rows<1>(cols, kc, a, b, c, ldc, alpha, beta);
    }
  }
};

void run_f32(const Plan& p, int tid) { run_thread<Kern, float>(p, tid); }
void run_bf16(const Plan& p, int tid) { run_thread<Kern, uint16_t>(p, tid); }

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

// Blocking for Zen 4 class cores (32 KB L1d, 1 MB L2): the 14 x 384 A panel (21 KB) stays in L1,
// the 384 x 480 B block (720 KB) in L2, the shared A block (up to 2016 x 384, 3 MB) in L3.
const Isa kIsaAvx512 = {"avx512", kMR, kNR, 2016, 384, 480, run_f32, run_bf16, fma_loop};

}  // namespace gemm_detail
}  // namespace pg
