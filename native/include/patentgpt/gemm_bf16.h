// bf16-compute GEMM (native/cpu/gemm_bf16*.cpp): the matmul of mixed-precision training and of
// bf16 weights. Inputs are rounded to bf16 (round to nearest even) while they are packed, the
// products are summed in f32 by the CPU's bf16 dot-product instructions, and C stays f32:
//   C[b] = alpha * bf16(op(A[b])) @ bf16(op(B[b])) + beta * C[b]
// with the same shapes, strides and semantics as pg::gemm (ops.h): beta == 0 never reads C, a
// batch stride of 0 broadcasts A or B, stride_c == 0 sums the items into one C in order, and the
// result does not depend on the thread count.
//
// The kernel is chosen at run time: AMX tiles (TDPBF16PS) where the CPU has AMX-BF16 and the OS
// grants the tile state, else AVX-512 BF16 (VDPBF16PS), else the f32 GEMM (no rounding: the
// "f32 fallback", exact where the others round).
#pragma once
#include <cstdint>

namespace pg {

enum class Bf16Kernel { F32 = 0, Avx512Bf16 = 1, Amx = 2 };
// The kernel in use: the best this CPU, OS and build allow, capped by force_bf16_kernel and by
// pg::simd_level() (below AVX-512 it is F32).
Bf16Kernel bf16_kernel();
// The best this machine allows, ignoring the caps.
Bf16Kernel bf16_kernel_detected();
const char* bf16_kernel_name(Bf16Kernel k);  // "f32", "avx512bf16", "amx"
// For tests and benches: cap the kernel (the cap does not raise it past what is detected).
void force_bf16_kernel(Bf16Kernel cap);

// f32 inputs, rounded to bf16 while packing. A (M, K) or (K, M) when trans_a; B (K, N) or (N, K).
void gemm_bf16_compute(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                       int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                       float* C, int64_t ldc, int64_t stride_c, int64_t batch);
// bf16 inputs (stored bf16 bits), same product. The F32 kernel widens them (pg::gemm_bf16).
void gemm_bf16_compute(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb,
                       int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch);

}  // namespace pg
