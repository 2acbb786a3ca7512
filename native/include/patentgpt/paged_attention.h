// Paged KV cache kernels (native/cpu/paged_attention.cpp): declared apart from ops.h so the
// inference engine's kernels stay one self-contained family.
#pragma once
#include <cstdint>

namespace pg {

// Largest partition (tokens) paged_attention_forward accepts: its scores live on the stack.
constexpr int64_t kPagedMaxPartition = 1024;

// k_cache, v_cache (num_blocks, block_size, Hkv, D); k, v (T, Hkv, D); slot_mapping (T):
// token t goes to slot s = block * block_size + offset (s < 0: padding, skipped).
void paged_kv_store(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slot_mapping,
                    int64_t T, int64_t Hkv, int64_t D);

// Attention of Tq query rows against keys/values read through block tables.
// out (Tq, H, D); part_out (Tq, H, max_partitions, D) and part_stats (Tq, H, max_partitions, 2)
// are scratch; q (Tq, H, D); block_tables (nseq, max_blocks); cu_q (nseq + 1): rows of
// sequence s are [cu_q[s], cu_q[s+1]), its last qlen tokens; context_lens (nseq): tokens in the
// cache for s, including these rows. Row i of s (0-based) attends causally to cache positions
// [0, context_lens[s] - qlen + i]. Callers guarantee every index is in range.
void paged_attention_forward(float* out, float* part_out, float* part_stats, const float* q, const float* k_cache,
                             const float* v_cache, const int32_t* block_tables, const int32_t* cu_q,
                             const int32_t* context_lens, int64_t nseq, int64_t Tq, int64_t H, int64_t Hkv, int64_t D,
                             int64_t block_size, int64_t max_blocks, int64_t partition_size, int64_t max_partitions,
                             float scale);

}  // namespace pg
