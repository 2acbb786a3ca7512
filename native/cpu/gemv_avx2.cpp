// GEMV for AVX2 + FMA (compiled with -mavx2 -mfma; chosen at run time by gemv.cpp): tiles of 2
// rows of x by 4 rows of W, 8 ymm accumulators (of 16 registers) plus 4 weight vectors and one of x.
#include "gemv_kernels.h"

namespace pg {
namespace gemv_detail {

void rows_avx2(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  rows_impl<8, 2, kTileRows>(t, x, ldx, M, K, j0, j1);
}

}  // namespace gemv_detail
}  // namespace pg
