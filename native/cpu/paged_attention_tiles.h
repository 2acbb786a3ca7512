// Private to native/cpu/paged_attention*.cpp: a paged attention task's loops and the cache's
// stores, written once over the cache's element type (f32, bf16, f16) and compiled once per ISA
// (paged_attention_avx512.cpp, paged_attention_avx2.cpp, and paged_attention.cpp for the baseline
// x86-64 or another processor: the scalar reference); pg::simd_level() picks one per call. Each
// includer defines PG_PAGED_ISA, the namespace of its copy, so copies built with different -m
// flags never meet at link time; the copies use no standard-library templates for the same reason.
//
// A 16-bit cache is widened to f32 as it is loaded (bf16: a 16-bit shift; f16: vcvtph2ps, F16C or
// AVX-512), so scores, softmax and the weighted sums of values are f32 exactly as for an f32 cache.
#ifndef PG_PAGED_TILES_SHARED
#define PG_PAGED_TILES_SHARED
#include <cstdint>

#include "patentgpt/paged_attention.h"

namespace pg {
namespace paged {

#define PG_PAGED_DECLARE(ns)                                                       \
  namespace ns {                                                                   \
  void tasks(const PagedAttention& a, int64_t i0, int64_t i1);                     \
  void store_rows(void* cache, KvDType dtype, int64_t at, const float* src, int64_t n); \
  }
PG_PAGED_DECLARE(avx512)
PG_PAGED_DECLARE(avx2)
PG_PAGED_DECLARE(scalar)
#undef PG_PAGED_DECLARE

// paged_attention.cpp: the sequence that owns query row r, and the tokens row r attends to.
int64_t seq_of_row(const int32_t* cu_q, int64_t nseq, int64_t r);
int64_t row_length(const int32_t* cu_q, const int32_t* context_lens, int64_t s, int64_t r);

}  // namespace paged
}  // namespace pg
#endif  // PG_PAGED_TILES_SHARED

#ifdef PG_PAGED_ISA
#if defined(PG_PAGED_AVX512) || defined(PG_PAGED_AVX2)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstring>

#include "fast_exp.h"
#include "half.h"
#include "patentgpt/workspace.h"

// Vectors pass only between inline functions of this file (see gemm_kernels.h).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace pg {
namespace paged {
namespace PG_PAGED_ISA {

#define PG_INLINE __attribute__((always_inline)) inline

// Head sizes of 32, 64 and 128 floats: queries and outputs in vector registers, and scores 16
// tokens at a time, their 16 dot products reduced together (lane_sums16). Everything below is
// inlined into attend_task: a helper left out of line ran 2.7x slower.
typedef float f32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

PG_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

PG_INLINE f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

PG_INLINE void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }

// scalar conversions (the tails, and the baseline copy): the cast ops' (half.h)
using pg::half::bf16_to_f32;
using pg::half::f16_to_f32;
using pg::half::f32_to_bf16;
using pg::half::f32_to_f16;

// ---- the cache's element types: T as stored, 16 of them (load) or one (at) widened to f32 ----
struct F32 {
  using T = float;
  static PG_INLINE f32x16 load(const float* p) { return load16(p); }
  static PG_INLINE float at(const float* p) { return *p; }
};

struct BF16 {
  using T = uint16_t;
  // The 16 bits as the high half of an f32: zero-extend and shift (vpmovzxwd + vpslld; written
  // with intrinsics, as GCC split __builtin_convertvector into ymm halves and inserts).
  static PG_INLINE f32x16 load(const uint16_t* p) {
    f32x16 f;
#if defined(PG_PAGED_AVX512)
    const __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16);
    std::memcpy(&f, &w, sizeof f);
#elif defined(PG_PAGED_AVX2)
    const __m256i lo = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16);
    const __m256i hi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8))), 16);
    std::memcpy(&f, &lo, sizeof lo);
    std::memcpy(reinterpret_cast<char*>(&f) + sizeof lo, &hi, sizeof hi);
#else
    u16x16 h;
    std::memcpy(&h, p, sizeof h);
    const u32x16 w = __builtin_convertvector(h, u32x16) << 16;
    std::memcpy(&f, &w, sizeof f);
#endif
    return f;
  }
  static PG_INLINE float at(const uint16_t* p) { return bf16_to_f32(*p); }
};

struct F16 {
  using T = uint16_t;
  static PG_INLINE f32x16 load(const uint16_t* p) {
    f32x16 f;
#if defined(PG_PAGED_AVX512)
    const __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    std::memcpy(&f, &v, sizeof f);
#elif defined(PG_PAGED_AVX2)
    const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
    std::memcpy(&f, &lo, sizeof lo);
    std::memcpy(reinterpret_cast<char*>(&f) + sizeof lo, &hi, sizeof hi);
#else
    for (int l = 0; l < 16; ++l) f[l] = f16_to_f32(p[l]);
#endif
    return f;
  }
  static PG_INLINE float at(const uint16_t* p) { return f16_to_f32(*p); }
};

// n floats of src into dst (bf16), 16 at a time: round to nearest even, NaN kept quiet.
PG_INLINE void store_bf16(uint16_t* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    u32x16 u;
    std::memcpy(&u, src + i, sizeof u);
    const u32x16 nan = (u32x16)((u & 0x7fffffffu) > 0x7f800000u);  // all ones where NaN
    const u32x16 r = ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16 & ~nan) | (((u >> 16) | 0x40u) & nan);
    const u16x16 h = __builtin_convertvector(r, u16x16);
    std::memcpy(dst + i, &h, sizeof h);
  }
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

// n floats of src into dst (f16), IEEE round to nearest even.
PG_INLINE void store_f16(uint16_t* dst, const float* src, int64_t n) {
  int64_t i = 0;
#if defined(PG_PAGED_AVX512)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(PG_PAGED_AVX2)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

// One (row, head, partition) of any head size: positions [p0, p1) of the sequence whose table is
// `table`. Writes m = max score, l = sum exp(score - m), acc (D) = sum exp(score - m) * v; with
// `normalise` (the row's only partition), acc / l instead.
template <class E>
void partition_attend(float* acc, float* stats, const float* qh, const int32_t* table, int64_t kvh, int64_t p0,
                      int64_t p1, const PagedAttention& g, bool normalise) {
  using T = typename E::T;
  float scores[kPagedMaxPartition];
  const T* k_cache = static_cast<const T*>(g.k_cache);
  const T* v_cache = static_cast<const T*>(g.v_cache);
  const int64_t D = g.D, row = g.Hkv * g.D;
  float m = -INFINITY;
  for (int64_t t = p0; t < p1; ++t) {
    const T* kt = k_cache + (static_cast<int64_t>(table[t / g.block_size]) * g.block_size + t % g.block_size) * row + kvh * D;
    float lanes[16] = {};
    int64_t d = 0;
    for (; d + 16 <= D; d += 16)
      for (int l = 0; l < 16; ++l) lanes[l] += qh[d + l] * E::at(kt + d + l);
    float s = 0;
    for (; d < D; ++d) s += qh[d] * E::at(kt + d);
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
    const T* vt = v_cache + (static_cast<int64_t>(table[t / g.block_size]) * g.block_size + t % g.block_size) * row + kvh * D;
    const float e = scores[t - p0];
    for (int64_t d = 0; d < D; ++d) acc[d] += e * E::at(vt + d);
  }
  if (normalise) {
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int64_t d = 0; d < D; ++d) acc[d] *= inv;
  } else {
    stats[0] = m;
    stats[1] = l;
  }
}

// {sum of a[0]'s lanes, ..., sum of a[15]'s}: a transpose by halves. Each level adds the two
// halves of every vector, packing two vectors' halves into one (after level 1, token j shares a
// vector with token j + 8; after level 4, lanes hold the tokens in bit-reversed order).
PG_INLINE f32x16 lane_sums16(const f32x16* a) {
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

template <int ND, class E, class Acc, class Stats>
PG_INLINE void attend_heads(const PagedAttention& g, const HeadsTask& t, Acc&& acc, Stats&& stats) {
  using T = typename E::T;
  constexpr int64_t D = 16 * ND;
  const int64_t row = g.Hkv * D, bs = g.block_size, n = t.p1 - t.p0, nh = t.h1 - t.h0;
  const int64_t c0 = t.h0 / t.G, c1 = (t.h1 - 1) / t.G + 1;  // the cache heads read
  float* scores = thread_workspace().attn;  // (nh, n); nh <= kPagedMaxTaskHeads, n <= kPagedMaxPartition
  float* out = scores + nh * n;    // (nh, D)
  float* mx = out + nh * D;        // (nh): the softmax's maximum and sum per head
  float* sum = mx + nh;
  // A power-of-two block size (the engine's) finds a token's slot by shift and mask: 64-bit
  // divisions, three per token with the prefetch, cost as much as the scores at D = 32.
  const int shift = (bs & (bs - 1)) == 0 ? __builtin_ctzll(static_cast<unsigned long long>(bs)) : -1;
  auto token = [&](const T* cache, int64_t pos) __attribute__((always_inline)) {
    const int64_t blk = shift >= 0 ? pos >> shift : pos / bs, off = shift >= 0 ? pos & (bs - 1) : pos % bs;
    return cache + (static_cast<int64_t>(t.table[blk]) * bs + off) * row;
  };
  // The rows of tokens [s0, s0 + 16) of `cache` into rows (returns how many there are); the next
  // 16 tokens' runs of the task's heads are prefetched into L2 meanwhile.
  auto chunk = [&](const T* cache, int64_t s0, const T** rows) __attribute__((always_inline)) {
    const int64_t m = min64(16, t.p1 - s0);
    for (int64_t j = 0; j < m; ++j) {
      rows[j] = token(cache, s0 + j);
      if (s0 + 16 + j >= t.p1) continue;
      const char* p = reinterpret_cast<const char*>(token(cache, s0 + 16 + j) + c0 * D);
      for (int64_t b = 0; b < (c1 - c0) * D * static_cast<int64_t>(sizeof(T)); b += 64) __builtin_prefetch(p + b, 0, 2);
    }
    return m;
  };
  const T* k_cache = static_cast<const T*>(g.k_cache);
  const T* v_cache = static_cast<const T*>(g.v_cache);
  // Scores, 16 tokens at a time.
  for (int64_t s0 = t.p0; s0 < t.p1; s0 += 16) {
    const T* k[16];
    const int64_t m = chunk(k_cache, s0, k);
    for (int64_t h = t.h0; h < t.h1; ++h) {
      f32x16 qv[ND];
      for (int c = 0; c < ND; ++c) qv[c] = load16(t.q + h * D + 16 * c);
      const int64_t off = h / t.G * D;
      auto dot = [&](int64_t j) __attribute__((always_inline)) {
        f32x16 s = qv[0] * E::load(k[j] + off);
        for (int c = 1; c < ND; ++c) s += qv[c] * E::load(k[j] + off + 16 * c);
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
  // Softmax numerators per head; the maxima and sums kept for the merge. The running sum stays
  // scalar and in order (16 lanes were faster but rounded differently from llama.cpp's
  // ggml_vec_soft_max, which the quantized engine's greedy parity with it needs).
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
    const T* v[16];
    const int64_t m = chunk(v_cache, s0, v);
    for (int64_t h = t.h0; h < t.h1; ++h) {
      const float* e = scores + (h - t.h0) * n + (s0 - t.p0);
      const int64_t off = h / t.G * D;
      float* o = out + (h - t.h0) * D;
      f32x16 ov[ND];
      for (int c = 0; c < ND; ++c) ov[c] = load16(o + 16 * c);
      for (int64_t j = 0; j < m; ++j)
        for (int c = 0; c < ND; ++c) ov[c] += e[j] * E::load(v[j] + off + 16 * c);
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

// Task i's heads, for the head size: the vector path for D = 32, 64, 128, else head by head.
template <int ND, class E>
void attend_task(const PagedAttention& a, const HeadsTask& t, int64_t r, int64_t p) {
  const int64_t H = a.H, P = a.max_partitions, D = a.D;
  auto acc = [&](int64_t h) __attribute__((always_inline)) { return t.normalise ? a.out + (r * H + h) * D : a.part_out + ((r * H + h) * P + p) * D; };
  auto stats = [&](int64_t h) __attribute__((always_inline)) { return a.part_stats + ((r * H + h) * P + p) * 2; };
  if constexpr (ND > 0) {
    static_assert(16 * ND <= kPagedMaxVectorHeadDim, "the workspace holds outputs of at most kPagedMaxVectorHeadDim");
    // Heads are independent: chunks of heads give the same bits as one run, within the scratch.
    for (int64_t h0 = t.h0; h0 < t.h1; h0 += kPagedMaxTaskHeads) {
      HeadsTask sub = t;
      sub.h0 = h0;
      sub.h1 = min64(t.h1, h0 + kPagedMaxTaskHeads);
      attend_heads<ND, E>(a, sub, acc, stats);
    }
  } else {
    for (int64_t h = t.h0; h < t.h1; ++h)
      partition_attend<E>(acc(h), t.normalise ? nullptr : stats(h), t.q + h * D, t.table, h / t.G, t.p0, t.p1, a,
                          t.normalise);
  }
}

template <class E>
void tasks_of(const PagedAttention& a, int64_t i0, int64_t i1) {
  const int64_t P = a.max_partitions, groups = a.head_groups(), H = a.H, G = a.H / a.Hkv;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t grp = i % groups, p = (i / groups) % P, r = i / (groups * P);
    const int64_t s = seq_of_row(a.cu_q, a.nseq, r);
    const int64_t len = row_length(a.cu_q, a.context_lens, s, r);
    const int64_t p0 = p * a.partition_size, p1 = min64(len, p0 + a.partition_size);
    if (p0 >= p1) continue;
    const HeadsTask t{a.q + r * H * a.D, a.block_tables + s * a.max_blocks, a.Hkv * grp / groups * G,
                      a.Hkv * (grp + 1) / groups * G, G, p0, p1, len <= a.partition_size};
    switch (a.D) {  // one partition: straight into out
      case 32: attend_task<2, E>(a, t, r, p); break;
      case 64: attend_task<4, E>(a, t, r, p); break;
      case 128: attend_task<8, E>(a, t, r, p); break;
      default: attend_task<0, E>(a, t, r, p);
    }
  }
}

void tasks(const PagedAttention& a, int64_t i0, int64_t i1) {
  switch (a.kv_dtype) {
    case KvDType::BF16: tasks_of<BF16>(a, i0, i1); break;
    case KvDType::F16: tasks_of<F16>(a, i0, i1); break;
    default: tasks_of<F32>(a, i0, i1);
  }
}

void store_rows(void* cache, KvDType dtype, int64_t at, const float* src, int64_t n) {
  switch (dtype) {
    case KvDType::BF16: store_bf16(static_cast<uint16_t*>(cache) + at, src, n); break;
    case KvDType::F16: store_f16(static_cast<uint16_t*>(cache) + at, src, n); break;
    default: std::memcpy(static_cast<float*>(cache) + at, src, static_cast<size_t>(n) * sizeof(float));
  }
}

#undef PG_INLINE

}  // namespace PG_PAGED_ISA
}  // namespace paged
}  // namespace pg
#endif  // PG_PAGED_ISA
