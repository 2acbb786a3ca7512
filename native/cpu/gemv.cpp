// GEMV and skinny GEMM for decoding: y (M, N) (+)= x (M, K) @ W^T, W (N, K), M from 1 to a few
// dozen rows. The weights are streamed once from their storage in tiles of kTileRows rows (the
// blocked kernel is in gemv_kernels.h, instantiated per ISA); the threads take disjoint,
// contiguous ranges of tiles, so each reads its own part of the weights exactly once.
// This file holds the run-time ISA dispatch, the baseline (SSE, 4 lanes) instance and the split.
#include <algorithm>

#include "gemv_kernels.h"
#include "patentgpt/runtime.h"

namespace pg {
namespace gemv_detail {

namespace {

void rows_scalar(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  rows_by_m<4, 12, 2, 6, 3, 4>(t, x, ldx, M, K, j0, j1);
}

RowsFn pick_rows() {
  switch (simd_level()) {
#if PG_X86_KERNELS  // the AVX kernels are compiled on x86-64 only (native/CMakeLists.txt)
    case SimdLevel::AVX512: return rows_avx512;
    case SimdLevel::AVX2: return rows_avx2;
#endif
    default: return rows_scalar;
  }
}

// Below this many weight bytes (and FLOPs) a product stays on the calling thread: waking the
// pool costs more than a second core saves.
constexpr double kParallelBytes = 256 * 1024;
constexpr double kParallelFlops = 4e6;

}  // namespace
}  // namespace gemv_detail

void gemv_rows(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  if (M <= 0 || j0 >= j1) return;
  gemv_detail::pick_rows()(t, x, ldx, M, K, j0, j1);
}

void gemv_multi(const GemvTarget* targets, int ntargets, const float* x, int64_t ldx, int64_t M, int64_t K) {
  using gemv_detail::kTileRows;
  if (M <= 0 || ntargets <= 0) return;
  const gemv_detail::RowsFn rows = gemv_detail::pick_rows();
  // Tiles never straddle two targets: target i owns tiles [first[i], first[i + 1]).
  constexpr int kMaxTargets = 8;
  int64_t first[kMaxTargets + 1] = {0};
  int64_t total_rows = 0;
  const int n = std::min(ntargets, kMaxTargets);
  for (int i = 0; i < n; ++i) {
    first[i + 1] = first[i] + (targets[i].rows + kTileRows - 1) / kTileRows;
    total_rows += targets[i].rows;
  }
  const int64_t tiles = first[n];
  auto run = [&](int64_t t0, int64_t t1) {
    for (int i = 0; i < n; ++i) {
      const int64_t a = std::max(t0, first[i]), b = std::min(t1, first[i + 1]);
      if (a < b)
        rows(targets[i], x, ldx, M, K, (a - first[i]) * kTileRows,
             std::min(targets[i].rows, (b - first[i]) * kTileRows));
    }
  };
  const double bytes = 4.0 * total_rows * K, flops = 2.0 * M * total_rows * K;
  const int nt = num_threads();
  if (nt <= 1 || (bytes < gemv_detail::kParallelBytes && flops < gemv_detail::kParallelFlops)) {
    run(0, tiles);
  } else {
    parallel_for(tiles, std::max<int64_t>(1, (tiles + nt - 1) / nt), run);  // one range per thread
  }
  if (ntargets > kMaxTargets) gemv_multi(targets + kMaxTargets, ntargets - kMaxTargets, x, ldx, M, K);
}

void gemv(float* y, int64_t ldy, const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t M, int64_t N,
          int64_t K, bool accumulate) {
  const GemvTarget t{w, N, ldw, y, ldy, accumulate};
  gemv_multi(&t, 1, x, ldx, M, K);
}

}  // namespace pg
