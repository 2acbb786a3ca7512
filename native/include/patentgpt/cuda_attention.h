// The CUDA twins of the fused attention kernels (ops.h attention_*): native/cuda/attention.cu.
// Same buffers and semantics as the CPU kernels, all pointers on the device: the grid is planned
// from T and nseq, each block finds its sequence in cu on the device, and cu is checked there
// (cuda_index_check.h), so no call waits on a read-back. A failure throws cuda::Error (cuda_ops.h) naming the op and its sizes. Defined when CUDA is
// compiled in (PG_WITH_CUDA); the bindings call them only then.
#pragma once
#include <cstdint>

#include "patentgpt/cuda_ops.h"

namespace pg::cuda {

// out (T, H, D), lse (H, T); q (T, H, D), k, v (T, Hkv, D); cu (nseq + 1).
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* cu,
                       int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                       float scale, bool causal);
// dq (T, H, D), dk, dv (T, Hkv, D) written; delta (H, T) scratch.
void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, const int32_t* cu,
                        int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                        float scale, bool causal);

// The same in bf16 or fp16 (Half16, cuda_ops.h): q, k, v, out, dout and the gradients hold 16-bit
// values (uint16_t bit patterns); softmax and accumulation run in f32, lse and delta are f32, and
// outputs are rounded to nearest even once, as they are stored.
void attention_forward_16(Half16 dtype, uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k,
                          const uint16_t* v, const int32_t* cu, int64_t nseq, int64_t T,
                          int64_t H, int64_t Hkv, int64_t D, float scale, bool causal);
void attention_backward_16(Half16 dtype, uint16_t* dq, uint16_t* dk, uint16_t* dv, float* delta,
                           const uint16_t* dout, const uint16_t* out, const float* lse, const uint16_t* q,
                           const uint16_t* k, const uint16_t* v, const int32_t* cu,
                           int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D, float scale, bool causal);

}  // namespace pg::cuda
