// Private to the quantization family (quant.cpp, quant_gemv_avx512.cpp, quant_gemv_avx2.cpp): the
// layout of a quantized row of x and the per-ISA entry points of the GEMV.
//
// x for Q8_0/Q4_0 weights, per row (act_row_bytes): K / 32 ActBlocks, then K / 32 floats d (the
// f16-rounded scale of each block). ActBlock.corr holds, per group of 4 q's (a 32-bit lane of
// vpdpbusd), -bias * their sum: vpdpbusd multiplies unsigned bytes by signed ones, so a signed
// weight w enters as w + 128 (Q8_0: w ^ 0x80) and a Q4_0 nibble as q (= w + 8); starting the
// accumulator at corr removes the bias exactly.
// x for Q4_K weights, per row (llama.cpp's q8_K, quantize_row_q8_K_ref): K int8 q's, then K / 256
// floats d (one per super-block, f32: q8_K keeps it unrounded), then K / 32 int32 sums of the
// q's of each 32-sub-block (q8_K's bsums, paired as its AMX/VNNI kernel adds them, for the mins).
// x for F16 weights, per row: K floats, as they are or rounded to f16 (quant_f16_rounds_x: where
// the AVX2 kernel runs); for BF16: K bf16 values (x rounded, ggml's vec_dot_type). Measured
// against node-llama-cpp's llama.cpp: on an Intel Xeon with AMX (its AVX-512 build), greedy
// output equal on 12 of 12 models for each type, and with x rounded to f16 for F16 8 of 12; on an
// AMD EPYC with AVX2 only (its haswell build), F16 with x in f32 8 of 12, rounded 39 of 40 (the
// 40th parted at a tie, gap 6e-4), whether the sums took these 16 lanes or tinyBLAS<8>'s 8 (the
// lanes do not part these models; the rounding of x does). The sums take 16 f32
// lanes, as llamafile's tinyBLAS, then _mm512_reduce_add_ps's tree (reduce16). F16: lane k % 16
// takes w * x by FMA. BF16 (VDPBF16PS, 32 values a step): lane i takes the pair (2 i, 2 i + 1)
// of each step, the odd product first, each product exact in f32.
#pragma once
#include <cstdint>
#include <cstring>

#include "patentgpt/quant.h"

namespace pg {
namespace quant_detail {

struct ActBlock {
  int32_t corr[8];
  int8_t qs[32];
};
static_assert(sizeof(ActBlock) == 64, "ActBlock is one cache line");

inline int64_t round64(int64_t n) { return (n + 63) / 64 * 64; }
inline bool is_half(QuantType t) { return t == QuantType::F16 || t == QuantType::BF16; }
inline int64_t act_row_bytes(QuantType t, int64_t K) {
  const int64_t nb = K / 32;
  if (is_half(t)) return round64(t == QuantType::F16 ? K * 4 : K * 2);
  return t == QuantType::Q4_K ? round64(K + K / 256 * 4 + nb * 4) : round64(nb * 64 + nb * 4);
}
// Q4_K's x row: its q's, d's and sub-block sums.
inline const int8_t* q8k_qs(const uint8_t* row) { return reinterpret_cast<const int8_t*>(row); }
inline const float* q8k_d(const uint8_t* row, int64_t K) { return reinterpret_cast<const float*>(row + K); }
inline const int32_t* q8k_bsums(const uint8_t* row, int64_t K) {
  return reinterpret_cast<const int32_t*>(row + K + K / 256 * 4);
}

// Rows [j0, j1) of W (rows of row_bytes) against M rows of x (ldx) and their quantized form act
// (rows of act_row_bytes): y (+)= x W^T.
using RowsFn = void (*)(QuantType t, const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate,
                        const float* x, int64_t ldx, const uint8_t* act, int64_t M, int64_t K, int64_t j0, int64_t j1);
void rows_vnni(QuantType t, const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate,
               const float* x, int64_t ldx, const uint8_t* act, int64_t M, int64_t K, int64_t j0, int64_t j1);
void rows_avx2(QuantType t, const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate,
               const float* x, int64_t ldx, const uint8_t* act, int64_t M, int64_t K, int64_t j0, int64_t j1);

// The sum of 16 lanes in _mm512_reduce_add_ps's order: l[i] + l[i + 8], then + [i + 4], [i + 2],
// [i + 1].
inline float reduce16(const float* l) {
  float a[8], b[4];
  for (int i = 0; i < 8; ++i) a[i] = l[i] + l[i + 8];
  for (int i = 0; i < 4; ++i) b[i] = a[i] + a[i + 4];
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// Q4_K's 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

}  // namespace quant_detail
}  // namespace pg
