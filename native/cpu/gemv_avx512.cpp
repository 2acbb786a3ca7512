// GEMV for AVX-512 (compiled with -mavx512f...; chosen at run time by gemv.cpp): tiles of 4 rows
// of x by 4 rows of W, 16 zmm accumulators plus 4 weight vectors and one of x.
#include "gemv_kernels.h"

namespace pg {
namespace gemv_detail {

void rows_avx512(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  rows_impl<16, 4, kTileRows>(t, x, ldx, M, K, j0, j1);
}

}  // namespace gemv_detail
}  // namespace pg
