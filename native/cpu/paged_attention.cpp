// Paged attention on CPU (vLLM's paged_attention v2, in llm.c form): keys and values live in a
// pool of fixed-size blocks and each sequence reads them through its block table, so sequences
// grow without reallocation and share prefix blocks.
//
// paged_kv_store scatters the new keys/values of a step into their slots. paged_attention_forward
// handles decode rows (one query per sequence) and prefill chunks (several causal queries per
// sequence over a cached prefix) alike. A row's context is split in partitions of at most
// partition_size tokens, each done by one task (parallelism for long contexts and few rows);
// partials (max, exp-sum, unnormalised output) are merged afterwards. Softmax is in f32.
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

struct Geometry {
  const int32_t* block_tables;
  int64_t H, Hkv, D, block_size, max_blocks;
  float scale;
};

// One (row, head, partition): positions [p0, p1) of the sequence whose table is `table`.
// Writes m = max score, l = sum exp(score - m), acc (D) = sum exp(score - m) * v.
PG_CLONES void partition_attend(float* acc, float* stats, const float* qh, const float* k_cache, const float* v_cache,
                                const int32_t* table, int64_t kvh, int64_t p0, int64_t p1, const Geometry& g) {
  float scores[kPagedMaxPartition];
  const int64_t D = g.D, row = g.Hkv * g.D;
  float m = -INFINITY;
  for (int64_t t = p0; t < p1; ++t) {
    const float* kt = k_cache + (static_cast<int64_t>(table[t / g.block_size]) * g.block_size + t % g.block_size) * row + kvh * D;
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
    const float* vt = v_cache + (static_cast<int64_t>(table[t / g.block_size]) * g.block_size + t % g.block_size) * row + kvh * D;
    const float e = scores[t - p0];
    for (int64_t d = 0; d < D; ++d) acc[d] += e * vt[d];
  }
  stats[0] = m;
  stats[1] = l;
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

}  // namespace

void paged_attention_forward(float* out, float* part_out, float* part_stats, const float* q, const float* k_cache,
                             const float* v_cache, const int32_t* block_tables, const int32_t* cu_q,
                             const int32_t* context_lens, int64_t nseq, int64_t Tq, int64_t H, int64_t Hkv, int64_t D,
                             int64_t block_size, int64_t max_blocks, int64_t partition_size, int64_t max_partitions,
                             float scale) {
  const Geometry g{block_tables, H, Hkv, D, block_size, max_blocks, scale};
  const int64_t P = max_partitions;
  // Phase 1: tasks (row, head, partition); partitions past a row's length do nothing.
  parallel_for(Tq * H * P, 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t p = i % P, h = (i / P) % H, r = i / (P * H);
      const int64_t s = seq_of_row(cu_q, nseq, r);
      const int64_t len = row_length(cu_q, context_lens, s, r);
      const int64_t p0 = p * partition_size, p1 = std::min(len, p0 + partition_size);
      if (p0 >= p1) continue;
      partition_attend(part_out + i * D, part_stats + 2 * i, q + (r * H + h) * D, k_cache, v_cache,
                       block_tables + s * max_blocks, h / (H / Hkv), p0, p1, g);
    }
  });
  // Phase 2: merge each (row, head)'s partitions by max and exp-sum.
  parallel_for(Tq * H, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = i / H;
      const int64_t s = seq_of_row(cu_q, nseq, r);
      const int64_t len = row_length(cu_q, context_lens, s, r);
      const int64_t n = (len + partition_size - 1) / partition_size;
      merge_partitions(out + i * D, part_out + i * P * D, part_stats + 2 * i * P, n, D);
    }
  });
}

}  // namespace pg
