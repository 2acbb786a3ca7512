// The CUDA twins of the fused attention kernels (ops.h attention_*): native/cuda/attention.cu.
// Same buffers and semantics as the CPU kernels, all pointers on the device, except cu_host, the
// host copy of cu_seqlens the bindings have already checked (the launch plan reads it). A
// failure throws cuda::Error (cuda_ops.h) naming the op and its sizes. Defined when CUDA is
// compiled in (PG_WITH_CUDA); the bindings call them only then.
#pragma once
#include <cstdint>

namespace pg::cuda {

// out (T, H, D), lse (H, T); q (T, H, D), k, v (T, Hkv, D); cu (nseq + 1) device, cu_host host.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* cu,
                       const int32_t* cu_host, int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                       float scale, bool causal);
// dq (T, H, D), dk, dv (T, Hkv, D) written; delta (H, T) scratch.
void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, const int32_t* cu,
                        const int32_t* cu_host, int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                        float scale, bool causal);

}  // namespace pg::cuda
