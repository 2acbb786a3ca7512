// The quantized GEMV with AVX2 (vpmaddubsw + vpmaddwd, no VNNI): compiled with -mavx2 -mfma
// -mf16c; chosen at run time by quant.cpp on CPUs without avx512vnni. 16 vector registers: one
// row of x against 4 W rows, else 2 x 4.
#include "quant_gemv_kernels.h"

namespace pg {
namespace quant_detail {

void rows_avx2(QuantType t, const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate,
               const float* x, int64_t ldx, const uint8_t* act, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  rows_impl<false, 4, 2, 4>(t, w, row_bytes, y, ldy, accumulate, x, ldx, act, M, K, j0, j1);
}

}  // namespace quant_detail
}  // namespace pg
