// The kernels' per-thread workspaces (workspace.h): reserved by the runtime when the pool is sized
// and by reserve_workspace(), never by a kernel; a failed reservation is an error string, and the
// pool keeps working at the size it had.
//
// The aligned allocators are interposed here (this executable's definitions win over libc's for
// the statically linked kernels) so that any aligned allocation a kernel makes is counted.
#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "patentgpt/workspace.h"

namespace {
std::atomic<int64_t> aligned_allocs{0};
}

extern "C" {
int posix_memalign(void** out, size_t align, size_t bytes) {
  using Fn = int (*)(void**, size_t, size_t);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "posix_memalign"));
  aligned_allocs.fetch_add(1);
  return real(out, align, bytes);
}
void* aligned_alloc(size_t align, size_t bytes) {
  using Fn = void* (*)(size_t, size_t);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "aligned_alloc"));
  aligned_allocs.fetch_add(1);
  return real(align, bytes);
}
}

namespace {

// Each pool thread's workspace, by thread index (collected on the pool itself).
std::vector<pg::Workspace*> pool_workspaces() {
  const int n = pg::num_threads();
  std::vector<std::atomic<pg::Workspace*>> seen(n);
  for (auto& s : seen) s.store(nullptr);
  std::atomic<int> left{n};
  // One item per thread; each waits until all have arrived, so every thread takes one.
  pg::parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      seen[pg::thread_index()].store(pg::this_thread_workspace());
      left.fetch_sub(1);
    }
    while (left.load() > 0) std::this_thread::yield();
  });
  std::vector<pg::Workspace*> out;
  for (auto& s : seen) out.push_back(s.load());
  return out;
}

double gemm_error(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int64_t batch, unsigned seed) {
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  auto A = pgtest::randn(M * K * batch, seed), B = pgtest::randn(K * N * batch, seed + 1);
  std::vector<float> C(M * N * batch, std::numeric_limits<float>::quiet_NaN());
  pg::gemm(ta, tb, M, N, K, 1.0f, A.data(), lda, M * K, B.data(), ldb, K * N, 0.0f, C.data(), N, M * N, batch);
  double worst = 0;
  // Spot-check a few elements of each item against float64 (the kernels' own tests do the rest).
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i : {int64_t(0), M / 2, M - 1})
      for (int64_t j : {int64_t(0), N / 3, N - 1}) {
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double a = A[b * M * K + (ta ? k * M + i : i * K + k)], bb = B[b * K * N + (tb ? j * K + k : k * N + j)];
          ref += a * bb;
          mag += std::fabs(a * bb);
        }
        const double err = std::fabs(C[b * M * N + i * N + j] - ref) / (1e-6 + 1e-6 * std::sqrt(double(K)) * mag);
        worst = std::max(worst, std::isnan(err) ? 1e9 : err);
      }
  return worst;
}

void run_attention(int64_t T, int64_t H, int64_t Hkv, int64_t D, bool causal, std::vector<float>* out_copy = nullptr) {
  const std::vector<int32_t> cu = {0, static_cast<int32_t>(T / 3), static_cast<int32_t>(T)};
  auto q = pgtest::randn(T * H * D, 1), k = pgtest::randn(T * Hkv * D, 2), v = pgtest::randn(T * Hkv * D, 3);
  auto dout = pgtest::randn(T * H * D, 4);
  std::vector<float> out(q.size()), lse(H * T), delta(H * T), dq(q.size()), dk(k.size()), dv(v.size());
  const float scale = 1.0f / std::sqrt(float(D));
  pg::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), cu.data(), 2, T, H, Hkv, D, scale, causal);
  pg::attention_backward(dq.data(), dk.data(), dv.data(), delta.data(), dout.data(), out.data(), lse.data(), q.data(),
                         k.data(), v.data(), cu.data(), 2, T, H, Hkv, D, scale, causal);
  if (out_copy) *out_copy = out;
}

}  // namespace

// First in this file: the pool's first use reserves its workers' workspaces, and when that fails
// it starts with the threads it could reserve for and says why (the addon throws E_NATIVE_OOM).
TEST(first_use_with_failed_reservations_starts_smaller_and_says_why) {
  setenv("PATENTGPT_NUM_THREADS", "3", 1);
  pg::workspace_fail_allocations_after(0);
  CHECK(pg::reserve_workspace().find("out of memory") != std::string::npos);
  CHECK(pg::this_thread_workspace() == nullptr);  // this thread's own failed; nothing else tried
  // This thread's four blocks and worker 1's succeed, worker 2's first fails.
  pg::workspace_fail_allocations_after(8);
  const std::string err = pg::reserve_workspace();
  pg::workspace_fail_allocations_after(-1);
  CHECK(pg::this_thread_workspace() != nullptr);
  CHECK(err.find("out of memory") != std::string::npos);
  CHECK(pg::num_threads() == 2);
  CHECK(pg::pool_reservation_error() == err);
  CHECK(gemm_error(300, 517, 401, false, true, 1, 3) <= 1.0);
  unsetenv("PATENTGPT_NUM_THREADS");
}

TEST(failed_resize_keeps_the_pool_and_reports) {
  CHECK(pg::set_num_threads(2).empty());
  const int64_t blocks = pg::workspace_blocks_allocated();
  pg::workspace_fail_allocations_after(2);  // worker 2's third block
  const std::string err = pg::set_num_threads(4);
  pg::workspace_fail_allocations_after(-1);
  CHECK(err.find("out of memory") != std::string::npos);
  CHECK(err.find("setNumThreads") != std::string::npos);  // says what to do
  CHECK(pg::num_threads() == 2);
  CHECK(pg::workspace_blocks_allocated() == blocks + 2);  // the two that succeeded, since freed
  CHECK(gemm_error(37, 300, 129, false, true, 1, 5) <= 1.0);  // and the pool still works
  CHECK(pg::set_num_threads(4).empty());
  CHECK(pg::num_threads() == 4);
  pg::set_num_threads(0);
}

TEST(a_new_thread_reserves_its_own_or_reports) {
  std::thread([] {
    CHECK(pg::this_thread_workspace() == nullptr);
    pg::workspace_fail_allocations_after(0);
    CHECK(pg::reserve_workspace().find("out of memory") != std::string::npos);
    CHECK(pg::this_thread_workspace() == nullptr);
    pg::workspace_fail_allocations_after(-1);
    CHECK(pg::reserve_workspace().empty());
    pg::Workspace* ws = pg::this_thread_workspace();
    CHECK(ws != nullptr);
    CHECK(pg::reserve_workspace().empty());  // once per thread
    CHECK(pg::this_thread_workspace() == ws);
    CHECK(gemm_error(3, 100, 1000, true, false, 1, 7) <= 1.0);
  }).join();
}

TEST(kernels_allocate_no_scratch_after_reservation) {
  for (int threads : {1, 3}) {
    CHECK(pg::set_num_threads(threads).empty());
    CHECK(pg::reserve_workspace().empty());
    const std::vector<pg::Workspace*> before = pool_workspaces();
    for (pg::Workspace* ws : before) CHECK(ws != nullptr);
    const int64_t blocks = pg::workspace_blocks_allocated(), allocs = aligned_allocs.load();
    for (auto level : {pg::SimdLevel::AVX512, pg::SimdLevel::AVX2, pg::SimdLevel::Scalar}) {
      pg::force_simd_level(level);
      // Shapes of every path: few rows (K past the chunk bound too), packed blocks past mc and kc,
      // batches split per item, wide N.
      CHECK(gemm_error(1, 70, 70000, false, true, 1, 1) <= 1.0);
      CHECK(gemm_error(4, 130, 70000, true, false, 1, 2) <= 1.0);
      CHECK(gemm_error(2100, 40, 20, false, false, 1, 3) <= 1.0);
      CHECK(gemm_error(131, 1003, 777, true, true, 1, 4) <= 1.0);
      CHECK(gemm_error(64, 64, 64, false, false, 8, 5) <= 1.0);
      CHECK(gemm_error(9, 5000, 3, false, false, 1, 6) <= 1.0);
      for (int64_t D : {8, 64, 128, 256}) run_attention(150, 4, 2, D, true);
      run_attention(300, 2, 1, 64, false);
    }
    pg::force_simd_level(pg::SimdLevel::AVX512);
    CHECK(aligned_allocs.load() == allocs);
    CHECK(pg::workspace_blocks_allocated() == blocks);
    CHECK(pool_workspaces() == before);
  }
  pg::set_num_threads(0);
}

TEST(few_rows_beyond_the_chunk_bound_accumulate_each_chunk) {
  // K = 65536 + 100: two chunks, the second added to C; still a correct product.
  for (auto level : {pg::SimdLevel::AVX512, pg::SimdLevel::Scalar}) {
    pg::force_simd_level(level);
    for (int t = 0; t < 4; ++t) CHECK(gemm_error(3, 67, 65636, (t & 1) != 0, (t & 2) != 0, 1, 11 + t) <= 1.0);
  }
  pg::force_simd_level(pg::SimdLevel::AVX512);
}

TEST(products_wider_than_the_column_bound_run_in_slices) {
  // Scalar nc = 256: 2048 column blocks are 524288 columns; this takes two slices.
  pg::force_simd_level(pg::SimdLevel::Scalar);
  for (int threads : {1, 2}) {
    pg::set_num_threads(threads);
    CHECK(gemm_error(5, 600000, 2, false, false, 1, 21) <= 1.0);
    CHECK(gemm_error(6, 530000, 3, true, true, 1, 22) <= 1.0);
  }
  pg::force_simd_level(pg::SimdLevel::AVX512);
  pg::set_num_threads(0);
}

TEST(head_dims_past_the_reserved_bound_give_nan_not_a_crash) {
  const int64_t T = 70, H = 2, D = pg::kMaxHeadDim + 1;
  std::vector<int32_t> cu = {0, static_cast<int32_t>(T)};
  auto q = pgtest::randn(T * H * D, 1);
  std::vector<float> out(q.size(), 0.0f), lse(H * T, 0.0f);
  pg::attention_forward(out.data(), lse.data(), q.data(), q.data(), q.data(), cu.data(), 1, T, H, H, D, 0.1f, true);
  CHECK(std::isnan(out[0]) && std::isnan(out.back()) && std::isnan(lse.back()));
}
