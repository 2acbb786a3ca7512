// A 16 x 16 transpose of 32-bit lanes in AVX-512 registers, for the files compiled for AVX-512
// (the f32 GEMM's packing and the bf16 GEMM's pair packing). Internal linkage: each such file
// keeps its own copy, compiled with its own target flags.
#pragma once
#include <immintrin.h>

namespace pg {
namespace avx512 {

// r[i] = row i (16 values) -> r[c] = column c (16 values).
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4g + j], 128-bit lane L: column 4L + j of rows 4g .. 4g + 3.
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const __m512d lo0 = _mm512_castps_pd(t[4 * g]), lo1 = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d hi0 = _mm512_castps_pd(t[4 * g + 1]), hi1 = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo0, lo1));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo0, lo1));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi0, hi1));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi0, hi1));
  }
  // Gather lane L of the four row groups: column 4L + j.
  __m512 out[16];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512 t1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), t2 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
    const __m512 u1 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    out[j] = _mm512_shuffle_f32x4(t1, u1, 0x88);
    out[8 + j] = _mm512_shuffle_f32x4(t1, u1, 0xdd);
    out[4 + j] = _mm512_shuffle_f32x4(t2, u2, 0x88);
    out[12 + j] = _mm512_shuffle_f32x4(t2, u2, 0xdd);
  }
#pragma GCC unroll 16
  for (int c = 0; c < 16; ++c) r[c] = out[c];
}

}  // namespace avx512
}  // namespace pg
