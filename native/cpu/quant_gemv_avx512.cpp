// The quantized GEMV with AVX-512 VNNI (vpdpbusd on 256-bit vectors, AVX-512 VL): compiled with
// the AVX-512 flags plus VNNI here; chosen at run time by quant.cpp when the CPU has avx512vnni.
// 32 vector registers: one row of x against 8 W rows, else 4 x 4.
#pragma GCC target("avx512vnni")
#include "quant_gemv_kernels.h"

namespace pg {
namespace quant_detail {

void rows_vnni(QuantType t, const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate,
               const float* x, int64_t ldx, const uint8_t* act, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  rows_impl<true, 8, 4, 4>(t, w, row_bytes, y, ldy, accumulate, x, ldx, act, M, K, j0, j1);
}

}  // namespace quant_detail
}  // namespace pg
