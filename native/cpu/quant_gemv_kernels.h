// Private to quant_gemv_avx512.cpp and quant_gemv_avx2.cpp: the quantized GEMV's tiles on 256-bit
// vectors, instantiated per ISA (VNNI: vpdpbusd on AVX-512 VL; else AVX2's vpmaddubsw +
// vpmaddwd, llama.cpp's sign trick for signed weights). Each file compiles this with its own
// flags: everything here is in an anonymous namespace.
//
// A tile is MR rows of x against NR rows of W. Per 32-weight block: the NR weight blocks are
// loaded once (and unpacked: Q4_0 nibbles to bytes, Q8_0 biased for vpdpbusd) and reused for
// the MR rows of x; each block's exact integer dot (its 8 int32 lanes summed) is added as
// acc = fma(float(dot), d_w * d_x, acc), block after block: the order of llama.cpp's AMX/VNNI
// kernels (ggml-cpu/amx/mmq.cpp, which it runs on CPUs with AMX), so the sums match its bits.
// Q4_K: x quantized to q8_K; per super-block the exact integer sums of llama.cpp's AMX/VNNI
// kernel, two fused multiply-adds each (tile_q4k).
// F16/BF16: the lanes of quant_kernels.h as 8-wide vectors, reduced by reduce16.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "quant_kernels.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace pg {
namespace quant_detail {
namespace {

template <int R, class F>
inline void with_count(int n, F&& f) {  // f(integral_constant<n>) for 1 <= n <= R
  if constexpr (R > 1) {
    if (n < R) return with_count<R - 1>(n, f);
  }
  f(std::integral_constant<int, R>{});
}

inline float half_to_float(const uint8_t* p) { return _cvtsh_ss(load_u16(p)); }

inline int32_t hsum_i32(__m256i v) {
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  t = _mm_add_epi32(t, _mm_unpackhi_epi64(t, t));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 1));
  return _mm_cvtsi128_si32(t);
}

// Weights of one 32-block as 32 bytes in element order: Q8_0 as stored (signed), Q4_0 nibbles
// as unsigned 0..15.
inline __m256i load_q4_0(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i lo = _mm_and_si128(q, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F));
  return _mm256_set_m128i(hi, lo);
}

template <bool VNNI, bool Q8, int MR, int NR>
inline void tile_q(const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate, const uint8_t* act,
                   int64_t stride, int64_t nb) {
  constexpr int64_t BB = Q8 ? 34 : 18;
  float acc[MR][NR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) acc[m][n] = 0.0f;
  const float* ds[MR];
  for (int m = 0; m < MR; ++m) ds[m] = reinterpret_cast<const float*>(act + m * stride + nb * 64);
  const __m256i ones16 = _mm256_set1_epi16(1), bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wv[NR];
    float dw[NR];
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) {
      const uint8_t* blk = w + n * row_bytes + b * BB;
      dw[n] = half_to_float(blk);
      if constexpr (Q8) {
        wv[n] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
        if constexpr (VNNI) wv[n] = _mm256_xor_si256(wv[n], bias);  // w + 128 as unsigned
      } else {
        wv[n] = load_q4_0(blk + 2);
      }
    }
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const ActBlock* ab = reinterpret_cast<const ActBlock*>(act + m * stride) + b;
      const __m256i a = _mm256_load_si256(reinterpret_cast<const __m256i*>(ab->qs));
      const __m256i corr = _mm256_load_si256(reinterpret_cast<const __m256i*>(ab->corr));
      const float da = ds[m][b];
#pragma GCC unroll 8
      for (int n = 0; n < NR; ++n) {
        __m256i s;
        if constexpr (VNNI) {
          s = _mm256_dpbusd_epi32(corr, wv[n], a);
        } else if constexpr (Q8) {  // |w| times a with w's sign: vpmaddubsw cannot overflow (|w| <= 127)
          s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv[n], wv[n]), _mm256_sign_epi8(a, wv[n])),
                                ones16);
        } else {
          s = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wv[n], a), ones16), corr);
        }
        acc[m][n] = __builtin_fmaf(static_cast<float>(hsum_i32(s)), dw[n] * da, acc[m][n]);
      }
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) {
      float* out = y + m * ldy + n;
      *out = accumulate ? *out + acc[m][n] : acc[m][n];
    }
}

// One Q4_K row of W against MR rows of x quantized to q8_K, as llama.cpp's AMX/VNNI kernel sums
// them (see dot_ref): per super-block the exact sum_j sc_j * dot(q4_j, q8_j) (vpmaddubsw: the
// unsigned nibbles times the signed q's, pairs within int16; vpmaddwd by sc_j: int32) and
// sum_j m_j * bsum_j, then two fused multiply-adds into the row's f32 sum.
template <int MR>
inline void tile_q4k(const uint8_t* w, float* y, int64_t ldy, bool accumulate, const uint8_t* act, int64_t stride,
                     int64_t K) {
  float acc[MR];
  for (int m = 0; m < MR; ++m) acc[m] = 0.0f;
  const __m256i low = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < K / 256; ++b, w += 144) {
    const float d = half_to_float(w), dmin = half_to_float(w + 2);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) scale_min_k4(j, w + 4, sc[j], mn[j]);
    __m256i wv[8], scv[8];
    for (int p = 0; p < 4; ++p) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16 + 32 * p));
      wv[2 * p] = _mm256_and_si256(q, low);
      wv[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
    }
    for (int j = 0; j < 8; ++j) scv[j] = _mm256_set1_epi16(static_cast<int16_t>(sc[j]));
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m) {
      const uint8_t* row = act + m * stride;
      const int8_t* a = q8k_qs(row) + b * 256;
      const int32_t* bs = q8k_bsums(row, K) + b * 8;
      __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32 * j));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(wv[j], av), scv[j]));
      }
      int32_t summ = 0;
      for (int j = 0; j < 8; ++j) summ += mn[j] * bs[j];
      const float dx = q8k_d(row, K)[b];
      acc[m] = __builtin_fmaf(static_cast<float>(hsum_i32(isum)), d * dx, acc[m]);
      acc[m] = __builtin_fmaf(static_cast<float>(summ), -(dmin * dx), acc[m]);
    }
  }
  for (int m = 0; m < MR; ++m) y[m * ldy] = accumulate ? y[m * ldy] + acc[m] : acc[m];
}

// 16 bf16 values (a 32-byte half of a step): the even ones and the odd ones as f32, lane i of
// each holding pair i.
inline void bf16_pairs(const uint8_t* p, __m256& even, __m256& odd) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

// NR rows of F16/BF16 W against MR rows of x (act rows as quant_kernels.h lays them out).
template <bool BF16, int MR, int NR>
inline void tile_half(const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate, const uint8_t* act,
                      int64_t stride, int64_t K) {
  __m256 acc[MR][NR][2];
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int n = 0; n < NR; ++n) acc[m][n][0] = acc[m][n][1] = _mm256_setzero_ps();
  if constexpr (BF16) {
    for (int64_t k = 0; k < K; k += 32) {  // lanes 0-7: values 0-15 of the step; 8-15: 16-31
      __m256 we[NR][2], wo[NR][2];
#pragma GCC unroll 4
      for (int n = 0; n < NR; ++n) {
        const uint8_t* p = w + n * row_bytes + 2 * k;
        bf16_pairs(p, we[n][0], wo[n][0]);
        bf16_pairs(p + 32, we[n][1], wo[n][1]);
      }
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) {
        const uint8_t* xs = act + m * stride + 2 * k;
        __m256 xe[2], xo[2];
        bf16_pairs(xs, xe[0], xo[0]);
        bf16_pairs(xs + 32, xe[1], xo[1]);
#pragma GCC unroll 4
        for (int n = 0; n < NR; ++n)
#pragma GCC unroll 2
          for (int h = 0; h < 2; ++h)
            acc[m][n][h] = _mm256_fmadd_ps(we[n][h], xe[h], _mm256_fmadd_ps(wo[n][h], xo[h], acc[m][n][h]));
      }
    }
  } else {
    for (int64_t k = 0; k < K; k += 16) {
      __m256 wv[NR][2];
#pragma GCC unroll 4
      for (int n = 0; n < NR; ++n) {
        const uint8_t* p = w + n * row_bytes + 2 * k;
        wv[n][0] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        wv[n][1] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
      }
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) {
        const float* xs = reinterpret_cast<const float*>(act + m * stride) + k;
        const __m256 x0 = _mm256_loadu_ps(xs), x1 = _mm256_loadu_ps(xs + 8);
#pragma GCC unroll 4
        for (int n = 0; n < NR; ++n) {
          acc[m][n][0] = _mm256_fmadd_ps(wv[n][0], x0, acc[m][n][0]);
          acc[m][n][1] = _mm256_fmadd_ps(wv[n][1], x1, acc[m][n][1]);
        }
      }
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) {
      alignas(32) float lanes[16];
      _mm256_store_ps(lanes, acc[m][n][0]);
      _mm256_store_ps(lanes + 8, acc[m][n][1]);
      const float s = reduce16(lanes);
      float* out = y + m * ldy + n;
      *out = accumulate ? *out + s : s;
    }
}

// Rows [j0, j1) of W: tiles of NR1 W rows for one row of x, else MRk x NRk.
template <bool VNNI, int NR1, int MRk, int NRk>
void rows_impl(QuantType t, const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate,
               const float* x, int64_t ldx, const uint8_t* act, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  const int64_t stride = act_row_bytes(t, K), nb = K / 32;
  if (is_half(t)) {  // 32 registers (AVX-512 VL): 4 W rows per tile, else 2
    constexpr int NRH = VNNI ? 4 : 2;
    for (int64_t j = j0; j < j1; j += NRH)
      for (int64_t m0 = 0; m0 < M; m0 += 2)
        with_count<2>(static_cast<int>(M - m0 < 2 ? M - m0 : 2), [&](auto mc) {
          with_count<NRH>(static_cast<int>(j1 - j < NRH ? j1 - j : NRH), [&](auto nc) {
            constexpr int MC = decltype(mc)::value, NC = decltype(nc)::value;
            if (t == QuantType::BF16)
              tile_half<true, MC, NC>(w + j * row_bytes, row_bytes, y + m0 * ldy + j, ldy, accumulate,
                                      act + m0 * stride, stride, K);
            else
              tile_half<false, MC, NC>(w + j * row_bytes, row_bytes, y + m0 * ldy + j, ldy, accumulate,
                                       act + m0 * stride, stride, K);
          });
        });
    return;
  }
  if (t == QuantType::Q4_K) {
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t m0 = 0; m0 < M; m0 += 4)
        with_count<4>(static_cast<int>(M - m0 < 4 ? M - m0 : 4), [&](auto mc) {
          tile_q4k<decltype(mc)::value>(w + j * row_bytes, y + m0 * ldy + j, ldy, accumulate, act + m0 * stride,
                                        stride, K);
        });
    return;
  }
  auto run = [&](auto q8, auto mr_max, auto nr_max) {
    constexpr int MRX = decltype(mr_max)::value, NRX = decltype(nr_max)::value;
    for (int64_t j = j0; j < j1; j += NRX) {
      const int nr = static_cast<int>(j1 - j < NRX ? j1 - j : NRX);
      for (int64_t m0 = 0; m0 < M; m0 += MRX) {
        const int mr = static_cast<int>(M - m0 < MRX ? M - m0 : MRX);
        with_count<MRX>(mr, [&](auto mc) {
          with_count<NRX>(nr, [&](auto nc) {
            tile_q<VNNI, decltype(q8)::value, decltype(mc)::value, decltype(nc)::value>(
                w + j * row_bytes, row_bytes, y + m0 * ldy + j, ldy, accumulate, act + m0 * stride, stride, nb);
          });
        });
      }
    }
  };
  using One = std::integral_constant<int, 1>;
  if (t == QuantType::Q8_0) {
    if (M == 1) run(std::true_type{}, One{}, std::integral_constant<int, NR1>{});
    else run(std::true_type{}, std::integral_constant<int, MRk>{}, std::integral_constant<int, NRk>{});
  } else {
    if (M == 1) run(std::false_type{}, One{}, std::integral_constant<int, NR1>{});
    else run(std::false_type{}, std::integral_constant<int, MRk>{}, std::integral_constant<int, NRk>{});
  }
}

}  // namespace
}  // namespace quant_detail
}  // namespace pg
