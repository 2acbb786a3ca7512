// pg::gemm and pg::gemm_bf16 against a float64 triple loop: every transpose combination, odd and
// degenerate sizes, padded leading dimensions, batches with broadcast strides, beta == 0 over
// NaN, K == 0, at every SIMD level and on one and two threads.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <limits>

#include "check.h"
#include "gemm_case.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

using Case = pgtest::GemmCase;
using pgtest::from_bf16;

// Runs one case; returns the largest error relative to the tolerance (<= 1 passes).
double run_case(const Case& c, bool bf16, unsigned seed) {
  pgtest::GemmOperands op(c, seed);
  const int64_t lda = op.lda, ldb = op.ldb, ldc = op.ldc, sa = op.sa, sb = op.sb, sc = op.sc;
  std::vector<float>&A = op.A, &B = op.B;
  const std::vector<float>& C0 = op.C0;
  const std::vector<uint16_t>&Ah = op.Ah, &Bh = op.Bh;
  if (bf16) {  // the reference multiplies the values the bf16 GEMM reads
    for (size_t i = 0; i < A.size(); ++i) A[i] = from_bf16(Ah[i]);
    for (size_t i = 0; i < B.size(); ++i) B[i] = from_bf16(Bh[i]);
  }
  std::vector<float> C = C0;
  if (c.beta == 0.0f)  // beta == 0 must ignore C entirely, NaN included
    for (auto& x : C) x = std::numeric_limits<float>::quiet_NaN();
  if (bf16)
    pg::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, c.alpha, Ah.data(), lda, sa, Bh.data(), ldb, sb, c.beta,
                  C.data(), ldc, sc, c.batch);
  else
    pg::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, sa, B.data(), ldb, sb, c.beta, C.data(),
             ldc, sc, c.batch);
  double worst = 0;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t ci = static_cast<size_t>(b * sc + i * ldc + j);
        if (j >= c.N) {  // padding is never written
          const float expect = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : C0[ci];
          if (!(std::isnan(expect) ? std::isnan(C[ci]) : C[ci] == expect)) return 1e9;
          continue;
        }
        double acc = 0, mag = 0;
        for (int64_t k = 0; k < c.K; ++k) {
          const double a = A[b * sa + (c.ta ? k * lda + i : i * lda + k)];
          const double bb = B[b * sb + (c.tb ? j * ldb + k : k * ldb + j)];
          acc += a * bb;
          mag += std::fabs(a * bb);
        }
        const double expect = c.alpha * acc + (c.beta == 0.0f ? 0.0 : c.beta * static_cast<double>(C0[ci]));
        // f32 accumulation over K terms: error grows like sqrt(K) * eps * sum |a b|.
        const double tol = 1e-6 + 4e-7 * std::sqrt(static_cast<double>(c.K) + 1) * 8 *
                                      (std::fabs(c.alpha) * mag + std::fabs(c.beta * C0[ci]));
        const double err = std::fabs(C[ci] - expect);
        if (!(err <= tol)) worst = std::max(worst, std::isnan(err) ? 1e9 : err / tol);
      }
  return worst;
}

const pg::SimdLevel kLevels[] = {pg::SimdLevel::AVX512, pg::SimdLevel::AVX2, pg::SimdLevel::Scalar};

// Every case at every SIMD level and thread count; fails with the case that broke.
#define CHECK_CASES(cases, bf16)                                                                  \
  do {                                                                                            \
    for (pg::SimdLevel level : kLevels) {                                                         \
      pg::force_simd_level(level);                                                                \
      for (int threads : {1, 2}) {                                                                \
        pg::set_num_threads(threads);                                                             \
        unsigned seed = 1;                                                                        \
        for (const Case& c : cases) {                                                             \
          double worst = run_case(c, bf16, seed += 3);                                            \
          if (!(worst <= 1.0))                                                                    \
            std::fprintf(stderr,                                                                  \
                         "  %s threads %d: M %lld N %lld K %lld ta %d tb %d pad %lld batch %lld " \
                         "alpha %g beta %g: error %.3g x tolerance\n",                            \
                         pg::simd_level_name(pg::simd_level()), threads, (long long)c.M,          \
                         (long long)c.N, (long long)c.K, c.ta, c.tb, (long long)c.pad,            \
                         (long long)c.batch, c.alpha, c.beta, worst);                             \
          CHECK(worst <= 1.0);                                                                    \
        }                                                                                         \
      }                                                                                           \
    }                                                                                             \
    pg::force_simd_level(pg::SimdLevel::AVX512);                                                  \
    pg::set_num_threads(0);                                                                       \
  } while (0)

}  // namespace

TEST(all_transposes_on_odd_and_edge_sizes) {
  std::vector<Case> cases;
  const int64_t sizes[][3] = {{1, 1, 1},   {1, 37, 5},   {37, 1, 5},    {3, 5, 1},    {14, 32, 7},
                              {15, 33, 9}, {13, 31, 17}, {29, 65, 100}, {64, 64, 64}, {2, 200, 3}};
  for (auto& s : sizes)
    for (int t = 0; t < 4; ++t) cases.push_back({s[0], s[1], s[2], (t & 1) != 0, (t & 2) != 0});
  CHECK_CASES(cases, false);
}

TEST(few_rows_stream_b_without_packing) {
  // M <= 4 takes the streaming path: vector blocks of 16 and 64 plus their tails.
  std::vector<Case> cases;
  const int64_t sizes[][3] = {{1, 300, 700}, {2, 129, 513}, {3, 64, 33}, {4, 200, 1000}, {4, 1, 17}, {1, 70, 64}};
  for (auto& s : sizes)
    for (int t = 0; t < 4; ++t) cases.push_back({s[0], s[1], s[2], (t & 1) != 0, (t & 2) != 0, 2, 2, false, true, 0.5f, 0.5f});
  CHECK_CASES(cases, false);
  CHECK_CASES(cases, true);
}

TEST(blocked_sizes_cross_every_cache_block) {
  const std::vector<Case> cases = pgtest::blocked_cases();
  CHECK_CASES(cases, false);
}

TEST(alpha_beta_and_padded_leading_dimensions) {
  std::vector<Case> cases;
  for (int t = 0; t < 4; ++t) {
    cases.push_back({23, 45, 67, (t & 1) != 0, (t & 2) != 0, 5, 1, false, false, 0.5f, 1.0f});
    cases.push_back({23, 45, 500, (t & 1) != 0, (t & 2) != 0, 1, 1, false, false, -2.0f, 0.25f});
  }
  CHECK_CASES(cases, false);
}

TEST(batches_and_broadcast_strides) {
  std::vector<Case> cases;
  for (int t = 0; t < 4; ++t) {
    cases.push_back({17, 19, 23, (t & 1) != 0, (t & 2) != 0, 0, 5});
    cases.push_back({17, 19, 23, (t & 1) != 0, (t & 2) != 0, 2, 4, false, true, 1.0f, 0.5f});
    cases.push_back({70, 90, 50, (t & 1) != 0, (t & 2) != 0, 0, 3, true, false});
  }
  CHECK_CASES(cases, false);
}

TEST(bf16_inputs_widened_while_packing) {
  std::vector<Case> cases;
  for (int t = 0; t < 4; ++t) {
    cases.push_back({33, 70, 45, (t & 1) != 0, (t & 2) != 0});
    cases.push_back({5, 3, 400, (t & 1) != 0, (t & 2) != 0, 3, 2, false, true, 0.5f, 2.0f});
  }
  CHECK_CASES(cases, true);
}

TEST(k_zero_and_alpha_zero_scale_c_only) {
  for (int threads : {1, 2}) {
    pg::set_num_threads(threads);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> C = {1, 2, 3, 4, 5, 6}, A = {nan}, B = {nan};
    pg::gemm(false, false, 2, 3, 0, 1.0f, A.data(), 1, 0, B.data(), 3, 0, 0.5f, C.data(), 3, 0, 1);
    std::vector<float> half = {0.5f, 1, 1.5f, 2, 2.5f, 3};
    CHECK_CLOSE(C, half, 6, 0, 0);
    pg::gemm(false, false, 2, 3, 0, 1.0f, A.data(), 1, 0, B.data(), 3, 0, 0.0f, C.data(), 3, 0, 1);
    for (float x : C) CHECK(x == 0.0f);
    // alpha == 0 reads neither A nor B (NaN stays out), beta == 0 clears NaN in C.
    std::vector<float> An(6, nan), Bn(9, nan), Cn(6, nan);
    pg::gemm(false, false, 2, 3, 3, 0.0f, An.data(), 3, 0, Bn.data(), 3, 0, 0.0f, Cn.data(), 3, 0, 1);
    for (float x : Cn) CHECK(x == 0.0f);
    // M == 0 or N == 0 touches nothing.
    pg::gemm(false, false, 0, 3, 3, 1.0f, An.data(), 3, 0, Bn.data(), 3, 0, 0.0f, Cn.data(), 3, 0, 1);
    pg::gemm(false, false, 2, 0, 3, 1.0f, An.data(), 3, 0, Bn.data(), 3, 0, 0.0f, Cn.data(), 3, 0, 1);
    for (float x : Cn) CHECK(x == 0.0f);
  }
  pg::set_num_threads(0);
}

TEST(stride_c_zero_accumulates_items_in_order) {
  // C = sum_b A[b] @ B when beta = 1 and stride_c = 0 (the weight gradient over a batch).
  const int64_t M = 9, N = 11, K = 13, batch = 4;
  for (int threads : {1, 2}) {
    pg::set_num_threads(threads);
    auto A = pgtest::randn(batch * M * K, 7), B = pgtest::randn(K * N, 8);
    std::vector<float> C(M * N, 1.0f), ref(M * N, 1.0f);
    pg::gemm(false, false, M, N, K, 1.0f, A.data(), K, M * K, B.data(), N, 0, 1.0f, C.data(), N, 0, batch);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double acc = 0;
          for (int64_t k = 0; k < K; ++k) acc += double(A[b * M * K + i * K + k]) * B[k * N + j];
          ref[i * N + j] += static_cast<float>(acc);
        }
    CHECK_CLOSE(C, ref, M * N, 1e-4, 1e-4);
  }
  pg::set_num_threads(0);
}

TEST(results_do_not_depend_on_thread_count) {
  // Each C element sums its depth blocks in the same order whatever the split, so results are
  // bit-identical. 3 and 8 threads oversubscribe the cores: units wait on sleeping threads. K
  // spans many depth blocks, so the progress slots are reused several times.
  const int64_t M = 300, N = 700, K = 4000;
  auto A = pgtest::randn(M * K, 3), B = pgtest::randn(K * N, 4);
  std::vector<float> C1(M * N), C2(M * N);
  pg::set_num_threads(1);
  pg::gemm(false, true, M, N, K, 1.0f, A.data(), K, 0, B.data(), K, 0, 0.0f, C1.data(), N, 0, 1);
  for (int threads : {2, 3, 8}) {
    pg::set_num_threads(threads);
    for (int rep = 0; rep < 3; ++rep) {
      std::fill(C2.begin(), C2.end(), 0.0f);
      pg::gemm(false, true, M, N, K, 1.0f, A.data(), K, 0, B.data(), K, 0, 0.0f, C2.data(), N, 0, 1);
      CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)) == 0);
    }
  }
  // Narrow N: units split rows as well.
  std::vector<float> D1(M * 5), D2(M * 5);
  pg::set_num_threads(1);
  pg::gemm(false, false, M, 5, K, 1.0f, A.data(), K, 0, B.data(), 5, 0, 0.0f, D1.data(), 5, 0, 1);
  pg::set_num_threads(3);
  pg::gemm(false, false, M, 5, K, 1.0f, A.data(), K, 0, B.data(), 5, 0, 0.0f, D2.data(), 5, 0, 1);
  CHECK(std::memcmp(D1.data(), D2.data(), D1.size() * sizeof(float)) == 0);
  pg::set_num_threads(0);
}

TEST(gemm_inside_a_parallel_region_runs_serially) {
  // A kernel that calls gemm from inside parallel_for (per head, per expert) gets correct results.
  const int64_t M = 40, N = 50, K = 60, items = 6;
  auto A = pgtest::randn(items * M * K, 5), B = pgtest::randn(K * N, 6);
  std::vector<float> C(items * M * N), ref(items * M * N);
  pg::set_num_threads(1);
  pg::gemm(false, false, M, N, K, 1.0f, A.data(), K, M * K, B.data(), N, 0, 0.0f, ref.data(), N, M * N, items);
  pg::set_num_threads(2);
  pg::parallel_for(items, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      pg::gemm(false, false, M, N, K, 1.0f, A.data() + b * M * K, K, 0, B.data(), N, 0, 0.0f,
               C.data() + b * M * N, N, 0, 1);
  });
  CHECK(std::memcmp(C.data(), ref.data(), C.size() * sizeof(float)) == 0);
  pg::set_num_threads(0);
}
