// Paged attention on CPU (vLLM's paged_attention v2, in llm.c form): keys and values live in a
// pool of fixed-size blocks and each sequence reads them through its block table, so sequences
// grow without reallocation and share prefix blocks.
//
// paged_kv_store scatters the new keys/values of a step into their slots. paged_attention_forward
// handles decode rows (one query per sequence) and prefill chunks (several causal queries per
// sequence over a cached prefix) alike. A row's context is split in partitions of at most
// partition_size tokens, each done by tasks (parallelism for long contexts and few rows);
// partials (max, exp-sum, unnormalised output) are merged afterwards; a row of one partition is
// finished by its task. The phases are exposed (paged_attention_tasks / _merges) so the fused
// decoder layer of decode.cpp can share them out inside its own parallel region. Softmax is in f32.
// The cache holds f32, bf16 or f16 (KvDType): the tasks' loops (paged_attention_tiles.h, one copy
// per ISA, picked by pg::simd_level()) widen 16-bit keys and values to f32 as they load them.
//
// A token's keys for all heads are one run of Hkv * D floats in the cache: a task walks tokens
// and, for each, all of its heads, so it streams whole runs; head by head it read D floats every
// Hkv * D, which ran at under half the read bandwidth.
#include <algorithm>
#include <cmath>

#include "paged_attention_tiles.h"
#include "patentgpt/runtime.h"
#include "simd.h"

// The baseline copy of the tasks' loops: the scalar reference, and the only one off x86-64.
#define PG_PAGED_ISA scalar
#include "paged_attention_tiles.h"
#undef PG_PAGED_ISA

namespace pg {

namespace paged {

int64_t seq_of_row(const int32_t* cu_q, int64_t nseq, int64_t r) {
  // cu_q is non-decreasing, cu_q[0] = 0, cu_q[nseq] = Tq
  return std::upper_bound(cu_q, cu_q + nseq + 1, static_cast<int32_t>(r)) - cu_q - 1;
}

int64_t row_length(const int32_t* cu_q, const int32_t* context_lens, int64_t s, int64_t r) {
  const int64_t qlen = cu_q[s + 1] - cu_q[s];
  return context_lens[s] - qlen + (r - cu_q[s]) + 1;
}

}  // namespace paged

namespace {

struct Isa {
  void (*tasks)(const PagedAttention&, int64_t, int64_t);
  void (*store)(void*, KvDType, int64_t, const float*, int64_t);
};

Isa isa() {
  switch (simd_level()) {
#if PG_X86_KERNELS  // the AVX copies are compiled on x86-64 only (native/CMakeLists.txt)
    case SimdLevel::AVX512: return {paged::avx512::tasks, paged::avx512::store_rows};
    case SimdLevel::AVX2: return {paged::avx2::tasks, paged::avx2::store_rows};
#endif
    default: return {paged::scalar::tasks, paged::scalar::store_rows};
  }
}

// out (D) = sum_p exp(m_p - M) acc_p / sum_p exp(m_p - M) l_p over the n partitions.
PG_CLONES void merge_partitions(float* out, const float* part_out, const float* part_stats, int64_t n, int64_t D) {
  float M = -INFINITY;
  for (int64_t p = 0; p < n; ++p) M = std::max(M, part_stats[2 * p]);
  float L = 0;
  for (int64_t d = 0; d < D; ++d) out[d] = 0;
  for (int64_t p = 0; p < n; ++p) {
    const float w = std::exp(part_stats[2 * p] - M);
    L += w * part_stats[2 * p + 1];
    for (int64_t d = 0; d < D; ++d) out[d] += w * part_out[p * D + d];
  }
  const float inv = L > 0 ? 1.0f / L : 0.0f;
  for (int64_t d = 0; d < D; ++d) out[d] *= inv;
}

// Below this many key and value elements read, waking the pool costs more than a second core
// saves (one decode row of 12 heads of 64 reaches it at ~170 tokens of context).
constexpr int64_t kParallelWork = 1 << 18;

}  // namespace

void kv_store_rows(void* cache, KvDType dtype, int64_t at, const float* src, int64_t n) {
  isa().store(cache, dtype, at, src, n);
}

void paged_kv_store(void* k_cache, void* v_cache, KvDType dtype, const float* k, const float* v,
                    const int32_t* slot_mapping, int64_t T, int64_t Hkv, int64_t D) {
  const int64_t row = Hkv * D;  // one token's keys: (Hkv, D)
  const auto store = isa().store;
  parallel_for(T, 64, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = slot_mapping[t];
      if (s < 0) continue;
      store(k_cache, dtype, s * row, k + t * row, row);
      store(v_cache, dtype, s * row, v + t * row, row);
    }
  });
}

int64_t PagedAttention::work() const {
  int64_t total = 0;
  for (int64_t s = 0; s < nseq; ++s) total += static_cast<int64_t>(cu_q[s + 1] - cu_q[s]) * context_lens[s];
  return total * H * D * 2;
}

void paged_attention_tasks(const PagedAttention& a, int64_t i0, int64_t i1) { isa().tasks(a, i0, i1); }

void paged_attention_merges(const PagedAttention& a, int64_t i0, int64_t i1) {
  const int64_t P = a.max_partitions, H = a.H, D = a.D;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t r = i / H;
    const int64_t s = paged::seq_of_row(a.cu_q, a.nseq, r);
    const int64_t len = paged::row_length(a.cu_q, a.context_lens, s, r);
    if (len <= a.partition_size) continue;  // done by its task
    const int64_t n = (len + a.partition_size - 1) / a.partition_size;
    merge_partitions(a.out + i * D, a.part_out + i * P * D, a.part_stats + 2 * i * P, n, D);
  }
}

void paged_attention_forward(const PagedAttention& a) {
  if (a.work() < kParallelWork) {
    paged_attention_tasks(a, 0, a.tasks());
    paged_attention_merges(a, 0, a.merges());
    return;
  }
  parallel_for(a.tasks(), 4, [&](int64_t i0, int64_t i1) { paged_attention_tasks(a, i0, i1); });
  parallel_for(a.merges(), 16, [&](int64_t i0, int64_t i1) { paged_attention_merges(a, i0, i1); });
}

}  // namespace pg
