// The CUDA twins of the paged KV cache kernels (paged_attention.h): native/cuda/paged_attention.cu.
// Same buffers and semantics as the CPU kernels, all pointers on the device, except the host
// copies of the indices the bindings have already checked (the split-K plan reads them). A
// failure throws cuda::Error (cuda_ops.h) naming the op and its sizes. Defined when CUDA is
// compiled in (PG_WITH_CUDA); the bindings call them only then.
#pragma once
#include <cstdint>

#include "patentgpt/paged_attention.h"

namespace pg::cuda {

// As pg::paged_kv_store (paged_attention.h): caches of `dtype`, stores rounded to it.
void paged_kv_store(void* k_cache, void* v_cache, KvDType dtype, const float* k, const float* v,
                    const int32_t* slot_mapping, int64_t T, int64_t Hkv, int64_t D);
// As pg::paged_attention_forward, its pointers on the device; cu_host and ctx_host are host copies
// of call.cu_q and call.context_lens when the caller has them (the split-K plan then reads the
// rows' lengths), or null: the plan then assumes the longest context the arguments allow.
void paged_attention_forward(const PagedAttention& call, const int32_t* cu_host, const int32_t* ctx_host);

}  // namespace pg::cuda
