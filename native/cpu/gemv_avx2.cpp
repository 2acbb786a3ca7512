// GEMV for AVX2 + FMA (compiled with -mavx2 -mfma; chosen at run time by gemv.cpp). Tiles (of 16
// ymm registers): 1 x 12 (12 accumulators), 2 x 6 (12) and 3 x 4 (12, plus 3 of x and one of W).
#include "gemv_kernels.h"

namespace pg {
namespace gemv_detail {

void rows_avx2(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  rows_by_m<8, 12, 2, 6, 3, 4>(t, x, ldx, M, K, j0, j1);
}

}  // namespace gemv_detail
}  // namespace pg
