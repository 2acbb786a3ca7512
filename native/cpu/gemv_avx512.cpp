// GEMV for AVX-512 (compiled with -mavx512f...; chosen at run time by gemv.cpp). Tiles (of 32 zmm
// registers): 1 x 16 (16 accumulators), 2 x 12 (24) and 4 x 6 (24, plus 4 of x and one of W).
#include "gemv_kernels.h"

namespace pg {
namespace gemv_detail {

void rows_avx512(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  rows_by_m<16, 16, 2, 12, 4, 6>(t, x, ldx, M, K, j0, j1);
}

}  // namespace gemv_detail
}  // namespace pg
