// Weight-only quantization (patentgpt/quant.h): llama.cpp's Q8_0, Q4_0 and Q4_K blocks (the
// reference quantizers and dequantizers of ggml-quants.c, reimplemented) and its F16 and BF16
// weights, the quantization of x before a product, the plain-loop reference GEMV, and the run-time
// choice of the SIMD kernel (quant_gemv_avx512.cpp: AVX-512 VNNI; quant_gemv_avx2.cpp: AVX2) with
// the split over threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "patentgpt/gemm_bf16.h"
#include "patentgpt/ops.h"
#include "patentgpt/quant.h"
#include "patentgpt/runtime.h"
#include "half.h"
#include "quant_kernels.h"

namespace pg {

using quant_detail::ActBlock;
using quant_detail::act_row_bytes;
using quant_detail::load_u16;
using quant_detail::scale_min_k4;

bool quant_type_valid(int32_t t) {
  return t == 0 || t == static_cast<int32_t>(QuantType::Q4_0) || t == static_cast<int32_t>(QuantType::Q8_0) ||
         t == static_cast<int32_t>(QuantType::Q4_K) || t == static_cast<int32_t>(QuantType::F16) ||
         t == static_cast<int32_t>(QuantType::BF16);
}

const char* quant_type_name(QuantType t) {
  switch (t) {
    case QuantType::Q4_0: return "q4_0";
    case QuantType::Q8_0: return "q8_0";
    case QuantType::Q4_K: return "q4_k";
    case QuantType::F16: return "f16";
    case QuantType::BF16: return "bf16";
    default: return "f32";
  }
}

int64_t quant_block_weights(QuantType t) {
  switch (t) {
    case QuantType::Q4_0:
    case QuantType::Q8_0: return 32;
    case QuantType::Q4_K: return 256;
    default: return 1;
  }
}

int64_t quant_block_bytes(QuantType t) {
  switch (t) {
    case QuantType::Q4_0: return 18;
    case QuantType::Q8_0: return 34;
    case QuantType::Q4_K: return 144;
    case QuantType::F16:
    case QuantType::BF16: return 2;
    default: return 4;
  }
}

int64_t quant_row_bytes(QuantType t, int64_t K) {
  const int64_t bw = quant_block_weights(t),
                unit = t == QuantType::F32 ? 1 : t == QuantType::Q4_K ? 256 : quant_detail::is_half(t) ? 32 : 64;
  if (K < 0 || K % unit != 0) return -1;
  return K / bw * quant_block_bytes(t);
}

// ---- f16 ----

uint16_t fp32_to_fp16(float f) { return half::f32_to_f16(f); }

float fp16_to_fp32(uint16_t h) { return half::f16_to_f32(h); }

uint16_t fp32_to_bf16(float f) { return half::f32_to_bf16(f); }

float bf16_to_fp32(uint16_t h) { return half::bf16_to_f32(h); }

namespace {

inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// ggml's nearest_int: round half to even through the float mantissa (|f| < 2^22).
inline int nearest_int(float f) {
  float val = f + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// ---- reference quantizers (one row each) ----

void quantize_row_q8_0(uint8_t* y, const float* x, int64_t K) {
  for (int64_t b = 0; b < K / 32; ++b, x += 32, y += 34) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(y, fp32_to_fp16(d));
    for (int i = 0; i < 32; ++i) y[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[i] * id)));
  }
}

void quantize_row_q4_0(uint8_t* y, const float* x, int64_t K) {
  for (int64_t b = 0; b < K / 32; ++b, x += 32, y += 18) {
    float amax = 0.0f, max = 0.0f;  // the value of largest magnitude, with its sign
    for (int i = 0; i < 32; ++i)
      if (amax < std::fabs(x[i])) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(y, fp32_to_fp16(d));
    for (int j = 0; j < 16; ++j) {
      const uint8_t q0 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f))));
      const uint8_t q1 =
          static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x[16 + j] * id + 8.5f))));
      y[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// ggml's make_qkx2_quants: an affine (scale, -min) fit of n values to [0, nmax], the grid search
// of llama.cpp's reference Q4_K quantizer.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * diff * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        cur_error += weights[i] * diff * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

void quantize_row_q4_K(uint8_t* y, const float* x, int64_t K) {
  uint8_t L[256], Laux[32];
  float weights[32], mins[8], scales[8];
  for (int64_t b = 0; b < K / 256; ++b, x += 256, y += 144) {
    uint8_t* sc = y + 4;
    std::memset(sc, 0, 12);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
      const uint8_t ls = static_cast<uint8_t>(std::min(63, static_cast<int>(static_cast<uint8_t>(nearest_int(inv_scale * scales[j])))));
      const uint8_t lm = static_cast<uint8_t>(std::min(63, static_cast<int>(static_cast<uint8_t>(nearest_int(inv_min * mins[j])))));
      if (j < 4) {
        sc[j] = ls;
        sc[j + 4] = lm;
      } else {
        sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        sc[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        sc[j] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
    }
    const uint16_t dh = fp32_to_fp16(max_scale / 63.f), mh = fp32_to_fp16(max_min / 63.f);
    store_u16(y, dh);
    store_u16(y + 2, mh);
    for (int j = 0; j < 8; ++j) {
      uint8_t s, m;
      scale_min_k4(j, sc, s, m);
      const float d = fp16_to_fp32(dh) * s;
      if (d == 0.0f) continue;
      const float dm = fp16_to_fp32(mh) * m;
      for (int ii = 0; ii < 32; ++ii) {
        const int l = nearest_int((x[32 * j + ii] + dm) / d);
        L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(15, l)));
      }
    }
    uint8_t* q = y + 16;
    for (int j = 0; j < 256; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

// ---- dequantizers (one row each) ----

void dequantize_row_q8_0(float* y, const uint8_t* x, int64_t K) {
  for (int64_t b = 0; b < K / 32; ++b, x += 34, y += 32) {
    const float d = fp16_to_fp32(load_u16(x));
    for (int i = 0; i < 32; ++i) y[i] = static_cast<int8_t>(x[2 + i]) * d;
  }
}

void dequantize_row_q4_0(float* y, const uint8_t* x, int64_t K) {
  for (int64_t b = 0; b < K / 32; ++b, x += 18, y += 32) {
    const float d = fp16_to_fp32(load_u16(x));
    for (int j = 0; j < 16; ++j) {
      y[j] = ((x[2 + j] & 0x0F) - 8) * d;
      y[j + 16] = ((x[2 + j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_K(float* y, const uint8_t* x, int64_t K) {
  for (int64_t b = 0; b < K / 256; ++b, x += 144) {
    const float d = fp16_to_fp32(load_u16(x)), min = fp16_to_fp32(load_u16(x + 2));
    const uint8_t *sc = x + 4, *q = x + 16;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
      uint8_t s, m;
      scale_min_k4(is, sc, s, m);
      const float d1 = d * s, m1 = min * m;
      scale_min_k4(is + 1, sc, s, m);
      const float d2 = d * s, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// ---- x before a product ----

// Each row of x (M, K) as quant_kernels.h lays it out for weights of type t (act_row_bytes apart).
// f16_x: x for F16 weights rounded to f16 (still stored as f32).
void quantize_act(QuantType t, uint8_t* act, const float* x, int64_t ldx, int64_t M, int64_t K, bool f16_x) {
  const int64_t nb = K / 32, stride = act_row_bytes(t, K);
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    uint8_t* row = act + m * stride;
    if (t == QuantType::F16) {
      float* xs = reinterpret_cast<float*>(row);
      if (f16_x) for (int64_t k = 0; k < K; ++k) xs[k] = fp16_to_fp32(fp32_to_fp16(xr[k]));
      else std::memcpy(xs, xr, static_cast<size_t>(K) * sizeof(float));
      continue;
    }
    if (t == QuantType::BF16) {
      cast_f32_to_bf16(reinterpret_cast<uint16_t*>(row), xr, K);
      continue;
    }
    if (t == QuantType::Q4_K) {  // llama.cpp's quantize_row_q8_K_ref, which its AMX path runs for Q4_K
      int8_t* qs = reinterpret_cast<int8_t*>(row);
      float* ds = reinterpret_cast<float*>(row + K);
      int32_t* bsums = reinterpret_cast<int32_t*>(row + K + K / 256 * 4);
      for (int64_t b = 0; b < K / 256; ++b) {
        const float* v = xr + b * 256;
        int8_t* q = qs + b * 256;
        float max = 0, amax = 0;  // the value of largest magnitude, with its sign
        for (int i = 0; i < 256; ++i)
          if (std::fabs(v[i]) > amax) {
            amax = std::fabs(v[i]);
            max = v[i];
          }
        if (amax == 0.0f) {
          ds[b] = 0;
          std::memset(q, 0, 256);
          for (int j = 0; j < 8; ++j) bsums[b * 8 + j] = 0;
          continue;
        }
        const float iscale = -127.f / max;
        for (int i = 0; i < 256; ++i) q[i] = static_cast<int8_t>(std::min(127, nearest_int(iscale * v[i])));
        for (int j = 0; j < 8; ++j) {
          int32_t s = 0;
          for (int i = 0; i < 32; ++i) s += q[j * 32 + i];
          bsums[b * 8 + j] = s;
        }
        ds[b] = 1 / iscale;
      }
      continue;
    }
    ActBlock* blocks = reinterpret_cast<ActBlock*>(row);
    float* ds = reinterpret_cast<float*>(row + nb * 64);
    const int32_t bias = t == QuantType::Q8_0 ? 128 : 8;
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = xr + b * 32;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(v[i]));
      // As ggml's x86 quantize_row_q8_0: d rounded to f16, q = round-half-even(v * 127 / amax).
      const float id = amax != 0.0f ? 127.f / amax : 0.0f;
      ds[b] = fp16_to_fp32(fp32_to_fp16(amax / 127.f));
      ActBlock& blk = blocks[b];
      for (int l = 0; l < 8; ++l) {
        int32_t s = 0;
        for (int i = 4 * l; i < 4 * l + 4; ++i) {
          blk.qs[i] = static_cast<int8_t>(std::nearbyint(v[i] * id));
          s += blk.qs[i];
        }
        blk.corr[l] = -bias * s;
      }
    }
  }
}

// The reference product of one (x row, W row) pair on quantized x: per block the exact integer
// dot times d_w * d_x, fused into the sum (Q8_0, Q4_0); Q4_K per super-block, as llama.cpp's
// AMX/VNNI kernel (ggml-cpu/amx/mmq.cpp, tinygemm_kernel_vnni<block_q8_K, block_q4_K>): the exact
// integer sums sum_j sc_j * dot(q4_j, q8_j) and sum_j m_j * bsum_j, each fused into the sum,
// times d * d_x and -(dmin * d_x), super-block after super-block.
float dot_ref(QuantType t, const uint8_t* w, const float* x, const uint8_t* act, int64_t K) {
  (void)x;
  const int64_t nb = K / 32;
  float s = 0;
  if (quant_detail::is_half(t)) {  // tinyBLAS's lanes and tree (quant_kernels.h)
    float lanes[16] = {};
    if (t == QuantType::F16) {
      const float* xs = reinterpret_cast<const float*>(act);
      for (int64_t k = 0; k < K; ++k) lanes[k % 16] = std::fma(fp16_to_fp32(load_u16(w + 2 * k)), xs[k], lanes[k % 16]);
    } else {
      auto v = [](const uint8_t* p, int64_t k) { return bf16_to_fp32(load_u16(p + 2 * k)); };
      for (int64_t k = 0; k < K; k += 2) {
        float& l = lanes[(k % 32) / 2];
        l = std::fma(v(w, k + 1), v(act, k + 1), l);
        l = std::fma(v(w, k), v(act, k), l);
      }
    }
    return quant_detail::reduce16(lanes);
  }
  if (t == QuantType::Q4_K) {
    const int8_t* qs = quant_detail::q8k_qs(act);
    const float* ds = quant_detail::q8k_d(act, K);
    const int32_t* bsums = quant_detail::q8k_bsums(act, K);
    for (int64_t b = 0; b < K / 256; ++b, w += 144) {
      const float d = fp16_to_fp32(load_u16(w)), dmin = fp16_to_fp32(load_u16(w + 2));
      int32_t sumi = 0, summ = 0;
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        scale_min_k4(j, w + 4, sc, m);
        const uint8_t* q = w + 16 + (j / 2) * 32;
        const int8_t* a = qs + b * 256 + j * 32;
        int32_t dot = 0;
        for (int l = 0; l < 32; ++l) dot += ((j & 1) ? q[l] >> 4 : q[l] & 0xF) * a[l];
        sumi += sc * dot;
        summ += m * bsums[b * 8 + j];
      }
      s = std::fma(static_cast<float>(sumi), d * ds[b], s);
      s = std::fma(static_cast<float>(summ), -(dmin * ds[b]), s);
    }
    return s;
  }
  const ActBlock* blocks = reinterpret_cast<const ActBlock*>(act);
  const float* ds = reinterpret_cast<const float*>(act + nb * 64);
  const int64_t bb = quant_block_bytes(t);
  for (int64_t b = 0; b < nb; ++b, w += bb) {
    const float dw = fp16_to_fp32(load_u16(w));
    int32_t sumi = 0;
    for (int i = 0; i < 32; ++i) {
      const int q = t == QuantType::Q8_0 ? static_cast<int8_t>(w[2 + i])
                                          : (i < 16 ? (w[2 + i] & 0xF) : (w[2 + i - 16] >> 4)) - 8;
      sumi += q * blocks[b].qs[i];
    }
    s = std::fma(static_cast<float>(sumi), dw * ds[b], s);  // one rounding per block, as the SIMD kernels
  }
  return s;
}

void rows_scalar(QuantType t, const uint8_t* w, int64_t row_bytes, float* y, int64_t ldy, bool accumulate,
                 const float* x, int64_t ldx, const uint8_t* act, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  const int64_t stride = act_row_bytes(t, K);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = j0; j < j1; ++j) {
      const float v = dot_ref(t, w + j * row_bytes, x + m * ldx, act + m * stride, K);
      float* out = y + m * ldy + j;
      *out = accumulate ? *out + v : v;
    }
}

bool cpu_has_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
  }();
  return has;
#else
  return false;
#endif
}

quant_detail::RowsFn pick_rows() {
  switch (simd_level()) {
#if PG_X86_KERNELS
    case SimdLevel::AVX512: return cpu_has_vnni() ? quant_detail::rows_vnni : quant_detail::rows_avx2;
    case SimdLevel::AVX2: return quant_detail::rows_avx2;
#endif
    default: return rows_scalar;
  }
}

// This thread's quantized x: grown to the largest call's need, then reused (no allocation per
// decode step once warm).
uint8_t* act_scratch(int64_t bytes) {
  static thread_local std::vector<uint8_t> buf;
  if (static_cast<int64_t>(buf.size()) < bytes + 64) buf.resize(static_cast<size_t>(bytes + 64));
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<uint8_t*>((p + 63) & ~uintptr_t(63));
}

// Rows of x quantized per call of the kernel: bounds the scratch (and keeps it in L2).
constexpr int64_t kActRows = 16;

// From this many rows of x, a product with BF16 weights runs as the AMX GEMM (where the CPU has
// AMX) rather than the GEMV's tiles.
constexpr int64_t kBf16GemmRows = 16;

// Whether kernel f meets F16 weights with x rounded to f16 (quant_f16_rounds_x).
bool rounds_f16_x(quant_detail::RowsFn f) {
#if PG_X86_KERNELS
  return f == quant_detail::rows_avx2;
#else
  (void)f;
  return false;
#endif
}

}  // namespace

void quantize_rows(QuantType t, uint8_t* dst, const float* src, int64_t rows, int64_t K) {
  const int64_t rb = quant_row_bytes(t, K);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* y = dst + r * rb;
    const float* x = src + r * K;
    switch (t) {
      case QuantType::Q8_0: quantize_row_q8_0(y, x, K); break;
      case QuantType::Q4_0: quantize_row_q4_0(y, x, K); break;
      case QuantType::Q4_K: quantize_row_q4_K(y, x, K); break;
      case QuantType::F16: cast_f32_to_f16(reinterpret_cast<uint16_t*>(y), x, K); break;
      case QuantType::BF16: cast_f32_to_bf16(reinterpret_cast<uint16_t*>(y), x, K); break;
      default: std::memcpy(y, x, static_cast<size_t>(K) * sizeof(float));
    }
  }
}

void dequantize_rows(QuantType t, float* dst, const uint8_t* src, int64_t rows, int64_t K) {
  const int64_t rb = quant_row_bytes(t, K);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* x = src + r * rb;
    float* y = dst + r * K;
    switch (t) {
      case QuantType::Q8_0: dequantize_row_q8_0(y, x, K); break;
      case QuantType::Q4_0: dequantize_row_q4_0(y, x, K); break;
      case QuantType::Q4_K: dequantize_row_q4_K(y, x, K); break;
      case QuantType::F16: cast_f16_to_f32(y, reinterpret_cast<const uint16_t*>(x), K); break;
      case QuantType::BF16: cast_bf16_to_f32(y, reinterpret_cast<const uint16_t*>(x), K); break;
      default: std::memcpy(y, x, static_cast<size_t>(K) * sizeof(float));
    }
  }
}

bool quant_f16_rounds_x() { return rounds_f16_x(pick_rows()); }

const char* quant_gemv_kernel_name() {
  const quant_detail::RowsFn f = pick_rows();
#if PG_X86_KERNELS
  if (f == quant_detail::rows_vnni) return "vnni";
  if (f == quant_detail::rows_avx2) return "avx2";
#endif
  (void)f;
  return "scalar";
}

void quant_gemv_rows(QuantType t, const uint8_t* w, float* y, int64_t ldy, bool accumulate, const float* x,
                     int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  if (M <= 0 || j0 >= j1) return;
  const quant_detail::RowsFn rows = pick_rows();
  const bool f16_x = rounds_f16_x(rows);
  const int64_t rb = quant_row_bytes(t, K), stride = act_row_bytes(t, K);
  uint8_t* act = act_scratch(std::min(M, kActRows) * stride);
  for (int64_t m0 = 0; m0 < M; m0 += kActRows) {
    const int64_t mr = std::min(kActRows, M - m0);
    quantize_act(t, act, x + m0 * ldx, ldx, mr, K, f16_x);
    rows(t, w, rb, y + m0 * ldy, ldy, accumulate, x + m0 * ldx, ldx, act, mr, K, j0, j1);
  }
}

void quant_gemv(QuantType t, float* y, int64_t ldy, const float* x, int64_t ldx, const uint8_t* w, int64_t M,
                int64_t N, int64_t K, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (t == QuantType::BF16 && M >= kBf16GemmRows && bf16_kernel() == Bf16Kernel::Amx) {
    // Many rows of x (a prompt's prefill): x rounded to bf16 as the GEMV rounds it, then the AMX
    // GEMM on the weights in place (sums in its own order: the same to f32 rounding).
    const int64_t stride = act_row_bytes(t, K);
    uint8_t* a = act_scratch(M * stride);
    quantize_act(t, a, x, ldx, M, K, false);
    gemm_bf16_compute(false, true, M, N, K, 1.0f, reinterpret_cast<const uint16_t*>(a), stride / 2, 0,
                      reinterpret_cast<const uint16_t*>(w), K, 0, accumulate ? 1.0f : 0.0f, y, ldy, 0, 1);
    return;
  }
  constexpr int64_t kTile = 16;  // rows of W per unit of work
  const int64_t tiles = (N + kTile - 1) / kTile;
  const double bytes = static_cast<double>(N) * quant_row_bytes(t, K);
  const int nt = num_threads();
  auto run = [&](int64_t t0, int64_t t1) {
    quant_gemv_rows(t, w, y, ldy, accumulate, x, ldx, M, K, t0 * kTile, std::min(N, t1 * kTile));
  };
  if (nt <= 1 || bytes < 128 * 1024) run(0, tiles);
  else parallel_for(tiles, std::max<int64_t>(1, (tiles + nt - 1) / nt), run);
}

void quant_gemv_ref(QuantType t, float* y, int64_t ldy, const float* x, int64_t ldx, const uint8_t* w, int64_t M,
                    int64_t N, int64_t K, bool accumulate, bool f16_x) {
  if (M <= 0 || N <= 0) return;
  const int64_t stride = act_row_bytes(t, K);
  std::vector<uint8_t> act(static_cast<size_t>(M * stride + 64));
  uint8_t* a = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(act.data()) + 63) & ~uintptr_t(63));
  quantize_act(t, a, x, ldx, M, K, f16_x);
  rows_scalar(t, w, quant_row_bytes(t, K), y, ldy, accumulate, x, ldx, a, M, K, 0, N);
}

}  // namespace pg
