// Paged KV cache kernels (native/cpu/paged_attention.cpp): declared apart from ops.h so the
// inference engine's kernels stay one self-contained family.
#pragma once
#include <cstdint>

namespace pg {

// Largest partition (tokens) paged_attention_forward accepts: its scores live on the stack.
constexpr int64_t kPagedMaxPartition = 1024;
// The vector path's scratch (scores, outputs, softmax statistics of a task's heads) comes from
// the thread's workspace (workspace.h), reserved for at most kPagedMaxTaskHeads heads of at most
// kPagedMaxVectorHeadDim over a partition; a task with more heads runs them in chunks.
constexpr int64_t kPagedMaxTaskHeads = 64;
constexpr int64_t kPagedMaxVectorHeadDim = 128;
constexpr int64_t paged_attention_workspace_floats() {
  return kPagedMaxTaskHeads * (kPagedMaxPartition + kPagedMaxVectorHeadDim + 2);
}

// Element type of a KV cache, chosen when the cache is made. A 16-bit cache halves the bytes
// attention streams at long context: stores round f32 to it (bf16: nearest even; f16: IEEE half,
// F16C where present), attention widens it back to f32 in registers; softmax and every sum stay f32.
enum class KvDType : int32_t { F32 = 0, BF16 = 1, F16 = 2 };
constexpr int64_t kv_dtype_bytes(KvDType t) { return t == KvDType::F32 ? 4 : 2; }

// n floats of src into cache (of dtype) from element `at`, converted (on the calling thread).
void kv_store_rows(void* cache, KvDType dtype, int64_t at, const float* src, int64_t n);

// k_cache, v_cache (num_blocks, block_size, Hkv, D) of dtype; k, v (T, Hkv, D); slot_mapping (T):
// token t goes to slot s = block * block_size + offset (s < 0: padding, skipped).
void paged_kv_store(void* k_cache, void* v_cache, KvDType dtype, const float* k, const float* v,
                    const int32_t* slot_mapping, int64_t T, int64_t Hkv, int64_t D);

// Attention of Tq query rows against keys/values read through block tables.
// out (Tq, H, D); part_out (Tq, H, max_partitions, D) and part_stats (Tq, H, max_partitions, 2)
// are scratch, used only by rows longer than one partition (null when max_partitions is 1);
// q (Tq, H, D); block_tables (nseq, max_blocks); cu_q (nseq + 1): rows of sequence s are
// [cu_q[s], cu_q[s+1]), its last qlen tokens; context_lens (nseq): tokens in the cache for s,
// including these rows. Row i of s (0-based) attends causally to cache positions
// [0, context_lens[s] - qlen + i]. Callers guarantee every index is in range.
struct PagedAttention {
  float* out;
  float* part_out;
  float* part_stats;
  const float* q;
  const void* k_cache;  // (num_blocks, block_size, Hkv, D) of kv_dtype
  const void* v_cache;
  const int32_t* block_tables;
  const int32_t* cu_q;
  const int32_t* context_lens;
  int64_t nseq, Tq, H, Hkv, D, block_size, max_blocks, partition_size, max_partitions;
  float scale;
  KvDType kv_dtype = KvDType::F32;

  // Phase 1: (row, partition, head group) tasks; a row of one partition is finished here. A task
  // takes a group of the cache's heads (and their query heads): all of them when there are
  // rows and partitions enough to share out, so that it reads each token's keys and values as
  // one contiguous run; else up to 8 groups, for the threads to share.
  int64_t head_groups() const {
    const int64_t units = Tq * max_partitions;
    if (units >= 8) return 1;
    const int64_t groups = (8 + units - 1) / units;  // about 8 tasks in all
    return groups < Hkv ? groups : Hkv;
  }
  int64_t tasks() const { return Tq * max_partitions * head_groups(); }
  // Phase 2 (after every task is done): (row, head) merges of rows of several partitions; none
  // when max_partitions is 1.
  int64_t merges() const { return max_partitions > 1 ? Tq * H : 0; }
  // Elements of keys and values the call reads, an estimate of its work.
  int64_t work() const;
};
void paged_attention_tasks(const PagedAttention& a, int64_t i0, int64_t i1);
void paged_attention_merges(const PagedAttention& a, int64_t i0, int64_t i1);

// Both phases on the pool's threads (on the calling thread alone when the work is small).
void paged_attention_forward(const PagedAttention& a);

}  // namespace pg
