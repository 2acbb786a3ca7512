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
//
// A token's keys for all heads are one run of Hkv * D floats in the cache: a task walks tokens
// and, for each, all of its heads, so it streams whole runs; head by head it read D floats every
// Hkv * D, which ran at under half the read bandwidth.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fast_exp.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/runtime.h"
#include "patentgpt/workspace.h"
#include "simd.h"

// Vectors pass only between inline functions of this file (see gemm_kernels.h).
#pragma GCC diagnostic ignored "-Wpsabi"

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

// Head sizes of 32, 64 and 128 floats: queries and outputs in vector registers, and scores 16
// tokens at a time, their 16 dot products reduced together (lane_sums16). Everything below is
// inlined into attend_task's clones (PG_CLONES): a helper left out of line is compiled for the
// baseline ISA, and ran 2.7x slower.
typedef float f32x16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

__attribute__((always_inline)) inline void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }

// {sum of a[0]'s lanes, ..., sum of a[15]'s}: a transpose by halves. Each level adds the two
// halves of every vector, packing two vectors' halves into one (after level 1, token j shares a
// vector with token j + 8; after level 4, lanes hold the tokens in bit-reversed order).
__attribute__((always_inline)) inline f32x16 lane_sums16(const f32x16* a) {
  f32x16 b[8], c[4], d[2];
  for (int j = 0; j < 8; ++j)
    b[j] = __builtin_shufflevector(a[j], a[j + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(a[j], a[j + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int j = 0; j < 4; ++j)
    c[j] = __builtin_shufflevector(b[j], b[j + 4], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(b[j], b[j + 4], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  for (int j = 0; j < 2; ++j)
    d[j] = __builtin_shufflevector(c[j], c[j + 2], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
           __builtin_shufflevector(c[j], c[j + 2], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  const f32x16 e = __builtin_shufflevector(d[0], d[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
                   __builtin_shufflevector(d[0], d[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  return __builtin_shufflevector(e, e, 0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15);
}

// One task's heads over positions [p0, p1): query heads [h0, h1) (cache heads h / G), queries
// at q (H, D) of the row; head h's result goes to acc(h) and, unless `normalise`, stats(h).
struct HeadsTask {
  const float* q;
  const int32_t* table;
  int64_t h0, h1, G, p0, p1;
  bool normalise;
};

template <int ND, class Acc, class Stats>
__attribute__((always_inline)) inline void attend_heads(const PagedAttention& g, const HeadsTask& t, Acc&& acc, Stats&& stats) {
  constexpr int64_t D = 16 * ND;
  const int64_t row = g.Hkv * D, bs = g.block_size, n = t.p1 - t.p0, nh = t.h1 - t.h0;
  const int64_t c0 = t.h0 / t.G, c1 = (t.h1 - 1) / t.G + 1;  // the cache heads read
  float* scores = thread_workspace().attn;  // (nh, n); nh <= kPagedMaxTaskHeads, n <= kPagedMaxPartition
  float* out = scores + nh * n;    // (nh, D)
  float* mx = out + nh * D;        // (nh): the softmax's maximum and sum per head
  float* sum = mx + nh;
  auto token = [&](const float* cache, int64_t pos) __attribute__((always_inline)) {
    return cache + (static_cast<int64_t>(t.table[pos / bs]) * bs + pos % bs) * row;
  };
  // The rows of tokens [s0, s0 + 16) of `cache` into rows (returns how many there are); the next
  // 16 tokens' runs of the task's heads are prefetched into L2 meanwhile.
  auto chunk = [&](const float* cache, int64_t s0, const float** rows) __attribute__((always_inline)) {
    const int64_t m = std::min<int64_t>(16, t.p1 - s0);
    for (int64_t j = 0; j < m; ++j) {
      rows[j] = token(cache, s0 + j);
      if (s0 + 16 + j >= t.p1) continue;
      const char* p = reinterpret_cast<const char*>(token(cache, s0 + 16 + j) + c0 * D);
      for (int64_t b = 0; b < (c1 - c0) * D * 4; b += 64) __builtin_prefetch(p + b, 0, 2);
    }
    return m;
  };
  // Scores, 16 tokens at a time.
  for (int64_t s0 = t.p0; s0 < t.p1; s0 += 16) {
    const float* k[16];
    const int64_t m = chunk(g.k_cache, s0, k);
    for (int64_t h = t.h0; h < t.h1; ++h) {
      f32x16 qv[ND];
      for (int c = 0; c < ND; ++c) qv[c] = load16(t.q + h * D + 16 * c);
      const int64_t off = h / t.G * D;
      auto dot = [&](int64_t j) __attribute__((always_inline)) {
        f32x16 s = qv[0] * load16(k[j] + off);
        for (int c = 1; c < ND; ++c) s += qv[c] * load16(k[j] + off + 16 * c);
        return s;
      };
      float* sc = scores + (h - t.h0) * n + (s0 - t.p0);
      if (m == 16) {
        f32x16 a[16];
        for (int j = 0; j < 16; ++j) a[j] = dot(j);
        store16(sc, lane_sums16(a) * g.scale);
      } else {
        for (int64_t j = 0; j < m; ++j) {
          const f32x16 s = dot(j);
          float sum = 0;
          for (int l = 0; l < 16; ++l) sum += s[l];
          sc[j] = sum * g.scale;
        }
      }
    }
  }
  // Softmax numerators per head; the maxima and sums kept for the merge.
  for (int64_t h = 0; h < nh; ++h) {
    float* sc = scores + h * n;
    float m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) m = sc[j] > m ? sc[j] : m;
    float l = 0;
    for (int64_t j = 0; j < n; ++j) {
      sc[j] = fast_exp(sc[j] - m);
      l += sc[j];
    }
    mx[h] = m;
    sum[h] = l;
  }
  // Outputs, 16 tokens at a time like the scores, each head's output in registers over the 16.
  for (int64_t i = 0; i < nh * D; ++i) out[i] = 0;
  for (int64_t s0 = t.p0; s0 < t.p1; s0 += 16) {
    const float* v[16];
    const int64_t m = chunk(g.v_cache, s0, v);
    for (int64_t h = t.h0; h < t.h1; ++h) {
      const float* e = scores + (h - t.h0) * n + (s0 - t.p0);
      const int64_t off = h / t.G * D;
      float* o = out + (h - t.h0) * D;
      f32x16 ov[ND];
      for (int c = 0; c < ND; ++c) ov[c] = load16(o + 16 * c);
      for (int64_t j = 0; j < m; ++j)
        for (int c = 0; c < ND; ++c) ov[c] += e[j] * load16(v[j] + off + 16 * c);
      for (int c = 0; c < ND; ++c) store16(o + 16 * c, ov[c]);
    }
  }
  for (int64_t h = 0; h < nh; ++h) {
    const float inv = t.normalise ? (sum[h] > 0 ? 1.0f / sum[h] : 0.0f) : 1.0f;
    float* dst = acc(t.h0 + h);
    for (int c = 0; c < ND; ++c) store16(dst + 16 * c, load16(out + h * D + 16 * c) * inv);
    if (!t.normalise) {
      stats(t.h0 + h)[0] = mx[h];
      stats(t.h0 + h)[1] = sum[h];
    }
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

// Task i's heads, for the head size: the vector path for D = 32, 64, 128, else head by head.
template <int ND>
PG_CLONES void attend_task(const PagedAttention& a, const HeadsTask& t, int64_t r, int64_t p) {
  const int64_t H = a.H, P = a.max_partitions, D = a.D;
  auto acc = [&](int64_t h) __attribute__((always_inline)) { return t.normalise ? a.out + (r * H + h) * D : a.part_out + ((r * H + h) * P + p) * D; };
  auto stats = [&](int64_t h) __attribute__((always_inline)) { return a.part_stats + ((r * H + h) * P + p) * 2; };
  if constexpr (ND > 0) {
    static_assert(16 * ND <= kPagedMaxVectorHeadDim, "the workspace holds outputs of at most kPagedMaxVectorHeadDim");
    // Heads are independent: chunks of heads give the same bits as one run, within the scratch.
    for (int64_t h0 = t.h0; h0 < t.h1; h0 += kPagedMaxTaskHeads) {
      HeadsTask sub = t;
      sub.h0 = h0;
      sub.h1 = std::min(t.h1, h0 + kPagedMaxTaskHeads);
      attend_heads<ND>(a, sub, acc, stats);
    }
  } else {
    for (int64_t h = t.h0; h < t.h1; ++h)
      partition_attend(acc(h), t.normalise ? nullptr : stats(h), t.q + h * D, a.k_cache, a.v_cache, t.table, h / t.G, t.p0,
                       t.p1, a, t.normalise);
  }
}

}  // namespace

int64_t PagedAttention::work() const {
  int64_t total = 0;
  for (int64_t s = 0; s < nseq; ++s) total += static_cast<int64_t>(cu_q[s + 1] - cu_q[s]) * context_lens[s];
  return total * H * D * 2;
}

void paged_attention_tasks(const PagedAttention& a, int64_t i0, int64_t i1) {
  const int64_t P = a.max_partitions, groups = a.head_groups(), H = a.H, G = a.H / a.Hkv;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t grp = i % groups, p = (i / groups) % P, r = i / (groups * P);
    const int64_t s = seq_of_row(a.cu_q, a.nseq, r);
    const int64_t len = row_length(a.cu_q, a.context_lens, s, r);
    const int64_t p0 = p * a.partition_size, p1 = std::min(len, p0 + a.partition_size);
    if (p0 >= p1) continue;
    const HeadsTask t{a.q + r * H * a.D, a.block_tables + s * a.max_blocks, a.Hkv * grp / groups * G,
                      a.Hkv * (grp + 1) / groups * G, G, p0, p1, len <= a.partition_size};
    switch (a.D) {  // one partition: straight into out
      case 32: attend_task<2>(a, t, r, p); break;
      case 64: attend_task<4>(a, t, r, p); break;
      case 128: attend_task<8>(a, t, r, p); break;
      default: attend_task<0>(a, t, r, p);
    }
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
