// GFLOP/s of pg::gemm on the shapes of the TypeScript benchmark, without Node:
//   bench_gemm [M N K [ta tb]] ; PATENTGPT_NUM_THREADS sets threads.
// The side-by-side comparison with OpenBLAS and torch is scripts/bench/gemm.ts.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

static double bench(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps) {
  std::vector<float> A(M * K), B(K * N), C(M * N);
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> d(-1, 1);
  for (auto& x : A) x = d(gen);
  for (auto& x : B) x = d(gen);
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  auto once = [&] {
    pg::gemm(ta, tb, M, N, K, 1.0f, A.data(), lda, 0, B.data(), ldb, 0, 0.0f, C.data(), N, 0, 1);
  };
  once();
  once();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    once();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return 2.0 * M * N * K / t[t.size() / 2] / 1e9;
}

int main(int argc, char** argv) {
  int64_t blk[5];
  const char* isa = pg::gemm_config(blk);
  std::printf("isa %s mr %lld nr %lld mc %lld kc %lld nc %lld threads %d peak %.1f GFLOP/s\n", isa,
              (long long)blk[0], (long long)blk[1], (long long)blk[2], (long long)blk[3],
              (long long)blk[4], pg::num_threads(), pg::gemm_peak_gflops(0, 0.3));
  if (argc >= 4) {
    int64_t M = atoll(argv[1]), N = atoll(argv[2]), K = atoll(argv[3]);
    bool ta = argc > 4 && atoi(argv[4]), tb = argc > 5 && atoi(argv[5]);
    std::printf("%lld x %lld x %lld ta %d tb %d: %.1f GFLOP/s\n", (long long)M, (long long)N,
                (long long)K, ta, tb, bench(M, N, K, ta, tb, 7));
    return 0;
  }
  struct S { int64_t M, N, K; bool ta, tb; } shapes[] = {
      {1024, 1024, 1024, 0, 0}, {4096, 4096, 1024, 0, 0}, {2048, 768, 768, 0, 1},
      {2048, 2048, 768, 0, 1},  {2048, 768, 2048, 0, 1},  {2048, 32000, 768, 0, 1},
      {2048, 768, 2048, 0, 0},  {2048, 768, 2048, 1, 0},
  };
  for (auto& s : shapes)
    std::printf("%5lld x %5lld x %5lld ta %d tb %d: %7.1f GFLOP/s\n", (long long)s.M, (long long)s.N,
                (long long)s.K, s.ta, s.tb, bench(s.M, s.N, s.K, s.ta, s.tb, 5));
}
