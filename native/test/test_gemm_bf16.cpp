// pg::gemm_bf16_compute against a plain reference: inputs rounded to bf16 (round to nearest
// even, written out here), products summed in float64. Every transpose, odd and edge sizes
// (depth below 32, rows and columns off the register blocks, past every cache block), padded
// leading dimensions, batches with broadcast strides, alpha and beta, beta == 0 over NaN, with
// f32 and bf16 inputs, for every kernel this CPU has (AMX, AVX-512 BF16) on one and two threads;
// the f32 fallback equals pg::gemm bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "check.h"
#include "gemm_case.h"
#include "patentgpt/gemm_bf16.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

using Case = pgtest::GemmCase;
using pgtest::from_bf16;
using pgtest::to_bf16;  // the reference rounding: to nearest, ties to even
float round_bf16(float f) { return from_bf16(to_bf16(f)); }

struct Result {
  double worst = 0;          // largest error / tolerance against the bf16-rounded reference
  bool rounding_seen = false;  // some element is off the unrounded reference by more than its tolerance
};

Result run_case(const Case& c, bool bf16_inputs, unsigned seed) {
  const pgtest::GemmOperands op(c, seed);
  const int64_t lda = op.lda, ldb = op.ldb, ldc = op.ldc, sa = op.sa, sb = op.sb, sc = op.sc;
  const std::vector<float>&A = op.A, &B = op.B, &C0 = op.C0;
  const std::vector<uint16_t>&Ah = op.Ah, &Bh = op.Bh;
  std::vector<float> C = C0;
  if (c.beta == 0.0f)
    for (auto& x : C) x = std::numeric_limits<float>::quiet_NaN();
  if (bf16_inputs)
    pg::gemm_bf16_compute(c.ta, c.tb, c.M, c.N, c.K, c.alpha, Ah.data(), lda, sa, Bh.data(), ldb, sb, c.beta,
                          C.data(), ldc, sc, c.batch);
  else
    pg::gemm_bf16_compute(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, sa, B.data(), ldb, sb, c.beta,
                          C.data(), ldc, sc, c.batch);
  Result res;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t ci = static_cast<size_t>(b * sc + i * ldc + j);
        if (j >= c.N) {  // padding is never written
          const float expect = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : C0[ci];
          if (!(std::isnan(expect) ? std::isnan(C[ci]) : C[ci] == expect)) res.worst = 1e9;
          continue;
        }
        double acc = 0, exact = 0, mag = 0;
        for (int64_t k = 0; k < c.K; ++k) {
          const size_t ai = static_cast<size_t>(b * sa + (c.ta ? k * lda + i : i * lda + k));
          const size_t bi = static_cast<size_t>(b * sb + (c.tb ? j * ldb + k : k * ldb + j));
          const double a = from_bf16(Ah[ai]), bb = from_bf16(Bh[bi]);
          acc += a * bb;
          exact += double(A[ai]) * B[bi];
          mag += std::fabs(a * bb);
        }
        const double cterm = c.beta == 0.0f ? 0.0 : c.beta * static_cast<double>(C0[ci]);
        const double expect = c.alpha * acc + cterm;
        // f32 accumulation over K terms (as test_gemm.cpp).
        const double tol = 1e-6 + 4e-7 * std::sqrt(static_cast<double>(c.K) + 1) * 8 *
                                      (std::fabs(c.alpha) * mag + std::fabs(cterm));
        const double err = std::fabs(C[ci] - expect);
        if (!(err <= tol)) res.worst = std::max(res.worst, std::isnan(err) ? 1e9 : err / tol);
        if (std::fabs(C[ci] - (c.alpha * exact + cterm)) > tol) res.rounding_seen = true;
      }
  return res;
}

// The kernels this machine has, best first (empty without AVX512_BF16).
std::vector<pg::Bf16Kernel> kernels() {
  std::vector<pg::Bf16Kernel> out;
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
  const pg::Bf16Kernel best = pg::bf16_kernel_detected();
  if (best == pg::Bf16Kernel::Amx) out.push_back(pg::Bf16Kernel::Amx);
  if (best >= pg::Bf16Kernel::Avx512Bf16) out.push_back(pg::Bf16Kernel::Avx512Bf16);
  return out;
}

void check_cases(const std::vector<Case>& cases, bool bf16_inputs, int& failures_seen) {
  for (pg::Bf16Kernel k : kernels()) {
    pg::force_bf16_kernel(k);
    for (int threads : {1, 2}) {
      pg::set_num_threads(threads);
      unsigned seed = 11;
      for (const Case& c : cases) {
        const Result r = run_case(c, bf16_inputs, seed += 3);
        if (!(r.worst <= 1.0)) {
          std::fprintf(stderr,
                       "  %s %s inputs, threads %d: M %lld N %lld K %lld ta %d tb %d pad %lld batch %lld alpha %g "
                       "beta %g: error %.3g x tolerance\n",
                       pg::bf16_kernel_name(k), bf16_inputs ? "bf16" : "f32", threads, (long long)c.M,
                       (long long)c.N, (long long)c.K, c.ta, c.tb, (long long)c.pad, (long long)c.batch, c.alpha,
                       c.beta, r.worst);
          ++failures_seen;
        }
      }
    }
  }
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
  pg::set_num_threads(0);
}

// Whether this CPU has AMX: tests of its own paths skip, and say so, where it has not.
bool amx_here() {
  if (pg::bf16_kernel_detected() == pg::Bf16Kernel::Amx) return true;
  std::fprintf(stderr, "  skipped: no AMX here\n");
  return false;
}

#define CHECK_CASES(cases, bf16_inputs)       \
  do {                                        \
    int failures_seen = 0;                    \
    check_cases(cases, bf16_inputs, failures_seen); \
    CHECK(failures_seen == 0);                \
  } while (0)

}  // namespace

TEST(reports_the_kernel_it_runs) {
  std::fprintf(stderr, "  bf16 kernel detected: %s\n", pg::bf16_kernel_name(pg::bf16_kernel_detected()));
  // Below AVX-512 the f32 GEMM runs whatever the CPU has.
  pg::force_simd_level(pg::SimdLevel::AVX2);
  CHECK(pg::bf16_kernel() == pg::Bf16Kernel::F32);
  pg::force_simd_level(pg::SimdLevel::AVX512);
  pg::force_bf16_kernel(pg::Bf16Kernel::Avx512Bf16);
  CHECK(pg::bf16_kernel() <= pg::Bf16Kernel::Avx512Bf16);
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
  CHECK(pg::bf16_kernel() == pg::bf16_kernel_detected());
}

TEST(all_transposes_on_odd_and_edge_sizes) {
  std::vector<Case> cases;
  const int64_t sizes[][3] = {{1, 1, 1},    {1, 37, 5},   {37, 1, 5},    {3, 5, 1},     {14, 32, 7},
                              {15, 33, 9},  {13, 31, 17}, {29, 65, 100}, {64, 64, 64},  {2, 200, 3},
                              {32, 32, 32}, {33, 47, 33}, {31, 17, 63},  {5, 90, 130},  {70, 40, 31}};
  for (auto& s : sizes)
    for (int t = 0; t < 4; ++t) cases.push_back({s[0], s[1], s[2], (t & 1) != 0, (t & 2) != 0});
  CHECK_CASES(cases, false);
  CHECK_CASES(cases, true);
}

TEST(blocked_sizes_cross_every_cache_block) {
  const std::vector<Case> cases = pgtest::blocked_cases();
  CHECK_CASES(cases, false);
  CHECK_CASES(cases, true);
}

TEST(alpha_beta_padding_batches_and_broadcasts) {
  std::vector<Case> cases;
  for (int t = 0; t < 4; ++t) {
    cases.push_back({23, 45, 67, (t & 1) != 0, (t & 2) != 0, 5, 1, false, false, 0.5f, 1.0f});
    cases.push_back({64, 64, 500, (t & 1) != 0, (t & 2) != 0, 1, 1, false, false, -2.0f, 0.25f});
    cases.push_back({64, 96, 64, (t & 1) != 0, (t & 2) != 0, 0, 1, false, false, 1.0f, 1.0f});
    cases.push_back({17, 19, 23, (t & 1) != 0, (t & 2) != 0, 0, 5});
    cases.push_back({40, 35, 70, (t & 1) != 0, (t & 2) != 0, 2, 4, false, true, 1.0f, 0.5f});
    cases.push_back({70, 90, 50, (t & 1) != 0, (t & 2) != 0, 0, 3, true, false});
  }
  CHECK_CASES(cases, false);
  CHECK_CASES(cases, true);
}

// AMX reads bf16 op(A) rows in place (no packing) for whole 32-row panels and depth blocks a
// multiple of 32, copying each depth pass into an L1 buffer where the leading dimension aliases
// in L1; the rest are packed. Cases with both in one product: ragged last panels (M 33, 100), a
// ragged last depth block after a whole one (K 1500: blocks 768 + 732), a ragged one alone
// (K 1000), one block in two depth passes (K 800), aliasing rows (K 1024, 2048: copied, in two
// passes; M 100: beside a packed ragged panel), odd leading dimensions (pad), alpha, beta and
// batches. Where every depth block is read in place, one row block takes all of M, past the
// ISA's mc (2048), and its ragged last panel packs into the first slot (M 2081 and 2100).
TEST(in_place_a_panels_beside_packed_ones) {
  std::vector<Case> cases;
  for (int tb = 0; tb < 2; ++tb) {
    const bool t = tb != 0;
    cases.push_back({32, 40, 32, false, t});
    cases.push_back({33, 70, 96, false, t});
    cases.push_back({100, 64, 800, false, t});
    cases.push_back({96, 50, 1000, false, t, 3});
    cases.push_back({64, 70, 1500, false, t, 0, 1, false, false, 1.0f, 1.0f});
    cases.push_back({64, 33, 1024, false, t});
    cases.push_back({100, 45, 1024, false, t, 0, 1, false, false, -2.0f, 0.25f});
    cases.push_back({40, 32, 2048, false, t, 0, 1, false, false, 0.5f, 1.0f});
    cases.push_back({64, 96, 768, false, t, 5, 3, false, false, -2.0f, 0.25f});
    cases.push_back({70, 90, 64, false, t, 0, 3, false, true});
    cases.push_back({2081, 40, 2048, false, t});
    cases.push_back({2100, 33, 96, false, t, 0, 1, false, false, 1.0f, 1.0f});
  }
  CHECK_CASES(cases, true);
  CHECK_CASES(cases, false);
}

// A C of 40 MB or more, written without being read (beta 0, one depth block), is stored past the
// caches (gemm.cpp kStreamCBytes): the AMX rows sum their depth passes in a buffer and stream each
// whole tile to C; the ragged last column block (N 5050: 442 columns), the ragged last row panel
// (M 2081) and the padding of C's rows are stored as before. Depths of one pass (96) and two
// (800: summed in the buffer), A read in place and packed (transposed), bf16 and f32 inputs, on
// one and two threads, against the f32 GEMM of the rounded inputs.
TEST(a_large_c_is_streamed_past_the_caches) {
#if defined(__x86_64__)
  if (!amx_here()) return;
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
  const int64_t M = 2081, N = 5050, ldc = 5056;  // 42 MB of C, rows 64-byte aligned
  float* C = static_cast<float*>(std::aligned_alloc(64, M * ldc * sizeof(float)));
  std::vector<float> ref(M * ldc), mag(M * ldc);
  for (int64_t K : {96, 800})
    for (bool ta : {false, true}) {
      auto A = pgtest::randn(M * K, 21), B = pgtest::randn(K * N, 22);  // rounded to bf16 below
      std::vector<uint16_t> Ah(A.size()), Bh(B.size());
      for (size_t i = 0; i < A.size(); ++i) A[i] = from_bf16(Ah[i] = to_bf16(A[i]));
      for (size_t i = 0; i < B.size(); ++i) B[i] = from_bf16(Bh[i] = to_bf16(B[i]));
      const int64_t lda = ta ? M : K;
      pg::gemm(ta, true, M, N, K, 1.0f, A.data(), lda, 0, B.data(), K, 0, 0.0f, ref.data(), ldc, 0, 1);
      std::vector<float> Aabs(A.size()), Babs(B.size());  // |A| @ |B|: the scale of each sum's rounding
      for (size_t i = 0; i < A.size(); ++i) Aabs[i] = std::fabs(A[i]);
      for (size_t i = 0; i < B.size(); ++i) Babs[i] = std::fabs(B[i]);
      pg::gemm(ta, true, M, N, K, 1.0f, Aabs.data(), lda, 0, Babs.data(), K, 0, 0.0f, mag.data(), ldc, 0, 1);
      for (int threads : {1, 2})
        for (bool bf16_inputs : {true, false}) {
          pg::set_num_threads(threads);
          std::fill(C, C + M * ldc, std::numeric_limits<float>::quiet_NaN());
          if (bf16_inputs)
            pg::gemm_bf16_compute(ta, true, M, N, K, 1.0f, Ah.data(), lda, 0, Bh.data(), K, 0, 0.0f, C, ldc, 0, 1);
          else
            pg::gemm_bf16_compute(ta, true, M, N, K, 1.0f, A.data(), lda, 0, B.data(), K, 0, 0.0f, C, ldc, 0, 1);
          int64_t bad = 0;
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
              const int64_t e = i * ldc + j;
              if (j >= N) {
                bad += !std::isnan(C[e]);
                continue;
              }
              const double tol = 1e-6 + 4e-7 * std::sqrt(static_cast<double>(K) + 1) * 16 * mag[e];
              bad += !(std::fabs(C[e] - ref[e]) <= tol);
            }
          if (bad != 0)
            std::fprintf(stderr, "  K %lld ta %d threads %d %s inputs: %lld elements off\n", (long long)K, ta,
                         threads, bf16_inputs ? "bf16" : "f32", (long long)bad);
          CHECK(bad == 0);
        }
    }
  std::free(C);
  pg::set_num_threads(0);
#endif
}

TEST(f32_inputs_are_rounded_to_bf16) {
  // Against the unrounded product the bf16 kernels are off by more than f32 accumulation allows.
  for (pg::Bf16Kernel k : kernels()) {
    pg::force_bf16_kernel(k);
    const Result r = run_case({64, 64, 128, false, true}, false, 5);
    CHECK(r.worst <= 1.0);
    CHECK(r.rounding_seen);
  }
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
}

TEST(stride_c_zero_accumulates_items_in_order) {
  const int64_t M = 40, N = 50, K = 64, batch = 4;
  for (pg::Bf16Kernel k : kernels()) {
    pg::force_bf16_kernel(k);
    auto A = pgtest::randn(batch * M * K, 7), B = pgtest::randn(K * N, 8);
    for (auto& x : A) x = round_bf16(x);
    for (auto& x : B) x = round_bf16(x);
    std::vector<float> C(M * N, 1.0f), ref(M * N, 1.0f);
    pg::gemm_bf16_compute(false, false, M, N, K, 1.0f, A.data(), K, M * K, B.data(), N, 0, 1.0f, C.data(), N, 0,
                          batch);
    pg::gemm(false, false, M, N, K, 1.0f, A.data(), K, M * K, B.data(), N, 0, 1.0f, ref.data(), N, 0, batch);
    CHECK_CLOSE(C, ref, M * N, 1e-4, 1e-4);
  }
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
}

TEST(results_do_not_depend_on_thread_count) {
  const int64_t M = 300, N = 700, K = 2000;
  auto A = pgtest::randn(M * K, 3), B = pgtest::randn(K * N, 4);
  for (pg::Bf16Kernel k : kernels()) {
    pg::force_bf16_kernel(k);
    std::vector<float> C1(M * N), C2(M * N);
    pg::set_num_threads(1);
    pg::gemm_bf16_compute(false, true, M, N, K, 1.0f, A.data(), K, 0, B.data(), K, 0, 0.0f, C1.data(), N, 0, 1);
    for (int threads : {2, 3}) {
      pg::set_num_threads(threads);
      std::fill(C2.begin(), C2.end(), 0.0f);
      pg::gemm_bf16_compute(false, true, M, N, K, 1.0f, A.data(), K, 0, B.data(), K, 0, 0.0f, C2.data(), N, 0, 1);
      CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)) == 0);
    }
  }
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
  pg::set_num_threads(0);
}

#if defined(__x86_64__)
__attribute__((target("amx-tile"))) void release_tiles() { _tile_release(); }
#endif

// Another AMX user on the same thread (oneDNN, where torch shares the process) may release the
// tile configuration between two of our products: the next one must load it again, or its first
// tile instruction raises #UD and the process dies.
TEST(amx_products_survive_a_tile_release_between_them) {
#if defined(__x86_64__)
  if (!amx_here()) return;
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
  pg::set_num_threads(1);  // the products run on this thread, the one whose tiles are released
  const Case c{64, 96, 800, false, true};
  CHECK(run_case(c, true, 3).worst <= 1.0);
  release_tiles();
  CHECK(run_case(c, true, 4).worst <= 1.0);
  release_tiles();
  CHECK(run_case(c, false, 5).worst <= 1.0);
  pg::set_num_threads(0);
#endif
}

TEST(f32_fallback_is_the_f32_gemm) {
  const int64_t M = 37, N = 45, K = 70;
  auto A = pgtest::randn(M * K, 9), B = pgtest::randn(N * K, 10);
  std::vector<float> C(M * N), ref(M * N);
  pg::force_bf16_kernel(pg::Bf16Kernel::F32);
  CHECK(pg::bf16_kernel() == pg::Bf16Kernel::F32);
  pg::gemm_bf16_compute(false, true, M, N, K, 1.0f, A.data(), K, 0, B.data(), K, 0, 0.0f, C.data(), N, 0, 1);
  pg::gemm(false, true, M, N, K, 1.0f, A.data(), K, 0, B.data(), K, 0, 0.0f, ref.data(), N, 0, 1);
  CHECK(std::memcmp(C.data(), ref.data(), C.size() * sizeof(float)) == 0);
  pg::force_bf16_kernel(pg::Bf16Kernel::Amx);
}
