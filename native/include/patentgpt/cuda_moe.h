// The CUDA twins of the sparse-MoE kernels (ops.h moe_*, moe_experts.h): native/cuda/moe.cu.
// Same buffers and semantics as the CPU kernels, pointers on the device, indices already checked
// by the bindings. The GEMMs also take offsets_host, the host copy of offsets (E + 1) the
// bindings checked: the grid is sized from the experts' row counts. A failure throws cuda::Error
// (cuda_ops.h) naming the op and its sizes. Defined when CUDA is compiled in (PG_WITH_CUDA).
#pragma once
#include <cstdint>

namespace pg::cuda {

void moe_router_forward(int32_t* indices, float* weights, const float* logits, int64_t N, int64_t E, int64_t k,
                        bool normalize);
void moe_router_backward(float* dlogits, const float* dweights, const float* weights, const int32_t* indices,
                         const float* logits, int64_t N, int64_t E, int64_t k, bool normalize);
void moe_dispatch(int32_t* order, int32_t* slot_pos, int32_t* offsets, const int32_t* indices, int64_t M, int64_t E);
void moe_permute_forward(float* xs, const float* x, const int32_t* order, int64_t M, int64_t C, int64_t k);
void moe_permute_backward(float* dx, const float* dxs, const int32_t* slot_pos, int64_t N, int64_t C, int64_t k);
void moe_grouped_gemm_forward(float* y, const float* xs, const float* w, const int32_t* offsets,
                              const int32_t* offsets_host, int64_t E, int64_t O, int64_t I);
void moe_grouped_gemm_backward(float* dxs, float* dw, const float* dy, const float* xs, const float* w,
                               const int32_t* offsets, const int32_t* offsets_host, int64_t E, int64_t O, int64_t I);
// w, dw: host arrays of E device pointers (each expert's own storage).
void moe_experts_gemm_forward(float* y, const float* xs, const float* const* w, const int32_t* offsets,
                              const int32_t* offsets_host, int64_t E, int64_t O, int64_t I);
void moe_experts_gemm_backward(float* dxs, float* const* dw, const float* dy, const float* xs, const float* const* w,
                               const int32_t* offsets, const int32_t* offsets_host, int64_t E, int64_t O, int64_t I);
void moe_combine_forward(float* out, const float* y, const float* weights, const int32_t* slot_pos, int64_t N,
                         int64_t C, int64_t k);
void moe_combine_backward(float* dy, float* dweights, const float* dout, const float* y, const float* weights,
                          const int32_t* slot_pos, int64_t N, int64_t C, int64_t k);

}  // namespace pg::cuda
