// Paged attention on CPU (vLLM's paged_attention v2, in llm.c form): keys and values live in a
// pool of fixed-size blocks and each sequence reads them through its block table, so sequences
// grow without reallocation and share prefix blocks.
//
// paged_kv_store scatters the new keys/values of a step into their slots. paged_attention_forward
// handles decode rows (one query per sequence) and prefill chunks (several causal queries per
// sequence over a cached prefix) alike. A row's context is split in partitions of at most
// partition_size tokens, each done by one task (parallelism for long contexts and few rows);
// partials (max, exp-sum, unnormalised output) are merged afterwards; a row of one partition is
// finished by its task. The phases are exposed (paged_attention_tasks / _merges) so the fused
// decoder layer of decode.cpp can share them out inside its own parallel region. Softmax is in f32.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fast_exp.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

void paged_kv_store(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slot_mapping,
                    int64_t T, int64_t Hkv, int64_t D) {
  const int64_t row = Hkv * D;  // one token's keys: (Hkv, D)
  parallel_for(T, 64, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = slot_mapping[t];
      if (s < 0) continue;
      std::memcpy(k_cache + s * row, k + t * row, row * sizeof(float));
      std::memcpy(v_cache + s * row, v + t * row, row * sizeof(float));
    }
  });
}

namespace {

// One (row, head, partition): positions [p0, p1) of the sequence whose table is `table`.
// Writes m = max score, l = sum exp(score - m), acc (D) = sum exp(score - m) * v; with
// `normalise` (the row's only partition), acc / l instead.
PG_CLONES void partition_attend(float* acc, float* stats, const float* qh, const float* k_cache, const float* v_cache,
                                const int32_t* table, int64_t kvh, int64_t p0, int64_t p1, const PagedAttention& g,
                                bool normalise) {
  float scores[kPagedMaxPartition];
  const int64_t D = g.D, row = g.Hkv * g.D;
  float m = -INFINITY;
  for (int64_t t = p0; t < p1; ++t) {
    const float* kt = g.k_cache + (static_cast<int64_t>(table[t / g.block_size]) * g.block_size + t % g.block_size) * row + kvh * D;
    float lanes[16] = {};
    int64_t d = 0;
    for (; d + 16 <= D; d += 16)
      for (int l = 0; l < 16; ++l) lanes[l] += qh[d + l] * kt[d + l];
    float s = 0;
    for (; d < D; ++d) s += qh[d] * kt[d];
    for (int l = 0; l < 16; ++l) s += lanes[l];
    s *= g.scale;
    scores[t - p0] = s;
    m = s > m ? s : m;
  }
  float l = 0;
  for (int64_t t = p0; t < p1; ++t) {
    const float e = fast_exp(scores[t - p0] - m);
    scores[t - p0] = e;
    l += e;
  }
  for (int64_t d = 0; d < D; ++d) acc[d] = 0;
  for (int64_t t = p0; t < p1; ++t) {
    const float* vt = g.v_cache + (static_cast<int64_t>(table[t / g.block_size]) * g.block_size + t % g.block_size) * row + kvh * D;
    const float e = scores[t - p0];
    for (int64_t d = 0; d < D; ++d) acc[d] += e * vt[d];
  }
  if (normalise) {
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int64_t d = 0; d < D; ++d) acc[d] *= inv;
  } else {
    stats[0] = m;
    stats[1] = l;
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

// The sequence that owns query row r (cu_q is non-decreasing, cu_q[0] = 0, cu_q[nseq] = Tq).
int64_t seq_of_row(const int32_t* cu_q, int64_t nseq, int64_t r) {
  return std::upper_bound(cu_q, cu_q + nseq + 1, static_cast<int32_t>(r)) - cu_q - 1;
}

// Tokens row r attends to.
int64_t row_length(const int32_t* cu_q, const int32_t* context_lens, int64_t s, int64_t r) {
  const int64_t qlen = cu_q[s + 1] - cu_q[s];
  return context_lens[s] - qlen + (r - cu_q[s]) + 1;
}

// Below this many key and value floats read, waking the pool costs more than a second core
// saves (one decode row of 12 heads of 64 reaches it at ~170 tokens of context).
constexpr int64_t kParallelWork = 1 << 18;

}  // namespace

int64_t PagedAttention::work() const {
  int64_t total = 0;
  for (int64_t s = 0; s < nseq; ++s) total += static_cast<int64_t>(cu_q[s + 1] - cu_q[s]) * context_lens[s];
  return total * H * D * 2;
}

void paged_attention_tasks(const PagedAttention& a, int64_t i0, int64_t i1) {
  const int64_t P = a.max_partitions, H = a.H, D = a.D;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t p = i % P, h = (i / P) % H, r = i / (P * H);
    const int64_t s = seq_of_row(a.cu_q, a.nseq, r);
    const int64_t len = row_length(a.cu_q, a.context_lens, s, r);
    const int64_t p0 = p * a.partition_size, p1 = std::min(len, p0 + a.partition_size);
    if (p0 >= p1) continue;
    const bool alone = len <= a.partition_size;  // one partition: straight into out
    partition_attend(alone ? a.out + (r * H + h) * D : a.part_out + i * D, alone ? nullptr : a.part_stats + 2 * i,
                     a.q + (r * H + h) * D, a.k_cache, a.v_cache, a.block_tables + s * a.max_blocks, h / (H / a.Hkv),
                     p0, p1, a, alone);
  }
}

void paged_attention_merges(const PagedAttention& a, int64_t i0, int64_t i1) {
  const int64_t P = a.max_partitions, H = a.H, D = a.D;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t r = i / H;
    const int64_t s = seq_of_row(a.cu_q, a.nseq, r);
    const int64_t len = row_length(a.cu_q, a.context_lens, s, r);
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
