// Weight-only quantization (quant.cpp, quant_gemv_*.cpp): llama.cpp's block layouts byte for
// byte on hand-made blocks (Q8_0, Q4_0, Q4_K's 6-bit scale packing), f16 rounding, round trips
// within each format's step, and the GEMV at every SIMD level and thread count against the
// plain-loop reference (same quantization of x) and against f32 products of the dequantized
// weights (off by the quantization of x alone).
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "check.h"
#include "patentgpt/gemm_bf16.h"
#include "patentgpt/gemv.h"
#include "patentgpt/ops.h"
#include "patentgpt/quant.h"
#include "patentgpt/runtime.h"

namespace {

using pg::QuantType;
const QuantType kTypes[] = {QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_K, QuantType::F16, QuantType::BF16};
const pg::SimdLevel kLevels[] = {pg::SimdLevel::AVX512, pg::SimdLevel::AVX2, pg::SimdLevel::Scalar};

uint16_t u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

std::vector<uint8_t> quantize(QuantType t, const std::vector<float>& w, int64_t N, int64_t K) {
  std::vector<uint8_t> q(static_cast<size_t>(N * pg::quant_row_bytes(t, K)));
  pg::quantize_rows(t, q.data(), w.data(), N, K);
  return q;
}

}  // namespace

TEST(sizes_are_ggml) {
  CHECK(pg::quant_row_bytes(QuantType::Q8_0, 64) == 68);
  CHECK(pg::quant_row_bytes(QuantType::Q4_0, 64) == 36);
  CHECK(pg::quant_row_bytes(QuantType::Q4_K, 512) == 288);
  CHECK(pg::quant_row_bytes(QuantType::Q8_0, 32) == -1);  // rows must be whole words
  CHECK(pg::quant_row_bytes(QuantType::Q4_K, 128) == -1);
  CHECK(pg::quant_row_bytes(QuantType::F16, 96) == 192);
  CHECK(pg::quant_row_bytes(QuantType::BF16, 32) == 64);
  CHECK(pg::quant_row_bytes(QuantType::BF16, 48) == -1);  // rows of whole 32-weight vectors
  CHECK(pg::quant_type_valid(8) && pg::quant_type_valid(2) && pg::quant_type_valid(12) && pg::quant_type_valid(1) &&
        pg::quant_type_valid(30) && !pg::quant_type_valid(3) && !pg::quant_type_valid(31));
}

// As ggml_compute_fp32_to_bf16: the top 16 bits rounded to nearest even, NaN kept a quiet NaN.
TEST(bf16_rounds_to_nearest_even) {
  CHECK(pg::fp32_to_bf16(1.0f) == 0x3F80);
  CHECK(pg::fp32_to_bf16(-2.0f) == 0xC000);
  CHECK(pg::fp32_to_bf16(1.0f + 1.0f / 256) == 0x3F80);  // a tie: to the even mantissa
  CHECK(pg::fp32_to_bf16(1.0f + 3.0f / 256) == 0x3F82);
  CHECK(pg::fp32_to_bf16(1.0f + 1.0f / 256 + 1.0f / 65536) == 0x3F81);  // past the tie: up
  CHECK(pg::fp32_to_bf16(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(pg::fp32_to_bf16(3.4e38f) == 0x7F80);  // rounds up to infinity, as ggml
  const uint16_t nan = pg::fp32_to_bf16(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7F80) == 0x7F80 && (nan & 0x7F) != 0);
  uint32_t snan_bits = 0x7F800001;  // a signaling NaN whose payload is below the top 16 bits
  float snan;
  std::memcpy(&snan, &snan_bits, 4);
  CHECK(pg::fp32_to_bf16(snan) == 0x7FC0);
  for (uint32_t h = 0; h < 0x7F80; ++h) CHECK(pg::fp32_to_bf16(pg::bf16_to_fp32(static_cast<uint16_t>(h))) == h);
}

TEST(fp16_rounds_to_nearest_even) {
  CHECK(pg::fp32_to_fp16(1.0f) == 0x3C00);
  CHECK(pg::fp32_to_fp16(-2.0f) == 0xC000);
  CHECK(pg::fp32_to_fp16(65504.0f) == 0x7BFF);
  CHECK(pg::fp32_to_fp16(0.1f) == 0x2E66);
  CHECK(pg::fp32_to_fp16(1.0f + 1.0f / 2048) == 0x3C00);  // a tie: to the even mantissa
  CHECK(pg::fp32_to_fp16(1.0f + 3.0f / 2048) == 0x3C02);
  CHECK(pg::fp32_to_fp16(5.9604645e-8f) == 0x0001);  // smallest subnormal
  for (uint32_t h = 0; h < 0x7C00; ++h) CHECK(pg::fp32_to_fp16(pg::fp16_to_fp32(static_cast<uint16_t>(h))) == h);
}

// x = i - 16: amax 16, d = 16 / 127, q = round(x * 127 / 16) (half away from zero).
TEST(q8_0_block_layout) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(i % 32 - 16);
  const auto q = quantize(QuantType::Q8_0, x, 1, 64);
  CHECK(q.size() == 68);
  CHECK(u16(q.data()) == pg::fp32_to_fp16(16.0f / 127.0f));
  const float d = 16.0f / 127.0f, id = 1.0f / d;
  for (int i = 0; i < 32; ++i) CHECK(static_cast<int8_t>(q[2 + i]) == static_cast<int>(std::round((i - 16) * id)));
  CHECK(static_cast<int8_t>(q[2]) == -127 && static_cast<int8_t>(q[2 + 16]) == 0 && static_cast<int8_t>(q[2 + 31]) == 119);
  CHECK(std::memcmp(q.data(), q.data() + 34, 34) == 0);  // the second block is the same
}

// x = i - 16: the largest magnitude is -16, so d = -16 / -8 = 2 and q = int(x / 2 + 8.5) capped at 15.
TEST(q4_0_block_layout) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(i % 32 - 16);
  const auto q = quantize(QuantType::Q4_0, x, 1, 64);
  CHECK(q.size() == 36);
  CHECK(u16(q.data()) == 0x4000);  // 2.0
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, static_cast<int>((j - 16) * 0.5f + 8.5f)), hi = std::min(15, static_cast<int>(j * 0.5f + 8.5f));
    CHECK(q[2 + j] == (lo | (hi << 4)));
  }
  std::vector<float> back(64);
  pg::dequantize_rows(QuantType::Q4_0, back.data(), q.data(), 1, 64);
  CHECK(back[0] == -16.0f && back[16] == 0.0f && back[31] == 14.0f);  // (q - 8) * d; 15 is capped at 7 * 2
}

// A Q4_K super-block made by hand: d = 0.5, dmin = 0.25, sub-block j with scale 3 + 7j and min
// 60 - 5j (6 bits each, packed as ggml's get_scale_min_k4 reads them), q = (l + j) % 16.
TEST(q4_k_dequantizes_ggml_layout) {
  uint8_t blk[144] = {};
  const uint16_t d = pg::fp32_to_fp16(0.5f), dmin = pg::fp32_to_fp16(0.25f);
  std::memcpy(blk, &d, 2);
  std::memcpy(blk + 2, &dmin, 2);
  int sc[8], mn[8];
  uint8_t* s = blk + 4;
  for (int j = 0; j < 8; ++j) {
    sc[j] = 3 + 7 * j, mn[j] = 60 - 5 * j;
    if (j < 4) {
      s[j] |= sc[j] & 63;
      s[j + 4] |= mn[j] & 63;
    } else {
      s[j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
      s[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      s[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
    }
  }
  for (int j = 0; j < 8; ++j)
    for (int l = 0; l < 32; ++l) {
      const uint8_t q = static_cast<uint8_t>((l + j) % 16);
      uint8_t& byte = blk[16 + (j / 2) * 32 + l];
      byte |= (j & 1) ? static_cast<uint8_t>(q << 4) : q;
    }
  std::vector<float> y(256);
  pg::dequantize_rows(QuantType::Q4_K, y.data(), blk, 1, 256);
  for (int j = 0; j < 8; ++j)
    for (int l = 0; l < 32; ++l) {
      const float want = 0.5f * sc[j] * ((l + j) % 16) - 0.25f * mn[j];
      CHECK(y[j * 32 + l] == want);
    }
}

// dequantize(quantize(w)) is within half a step of w for Q8_0 (d / 2, plus d's own rounding to
// f16 at the largest q), within a step for Q4_0 (values of the opposite sign to the block's
// extreme are capped at 7 steps, llama.cpp's choice) and Q4_K; re-quantizing the result gives the same bytes for Q8_0 and Q4_0.
TEST(round_trips) {
  const int64_t N = 7, K = 512;
  const auto w = pgtest::randn(static_cast<size_t>(N * K), 3, 0.05f);
  for (QuantType t : kTypes) {
    const auto q = quantize(t, w, N, K);
    std::vector<float> back(w.size());
    pg::dequantize_rows(t, back.data(), q.data(), N, K);
    const int64_t bw = pg::quant_block_weights(t);
    for (int64_t b = 0; b < N * K / bw; ++b) {
      float amax = 0, lo = 1e30f, hi = -1e30f;
      for (int64_t i = b * bw; i < (b + 1) * bw; ++i) amax = std::max(amax, std::fabs(w[i])), lo = std::min(lo, w[i]), hi = std::max(hi, w[i]);
      const float step = t == QuantType::Q8_0   ? amax / 127
                         : t == QuantType::Q4_0 ? amax / 4
                         : t == QuantType::F16  ? amax / 1024
                         : t == QuantType::BF16 ? amax / 128
                                                : (hi - lo) / 15 * 1.6f;
      for (int64_t i = b * bw; i < (b + 1) * bw; ++i)
        if (!(std::fabs(back[i] - w[i]) <= step * 0.5f + amax * 1e-3f)) {
          std::fprintf(stderr, "%s: w[%lld] = %g back %g step %g\n", pg::quant_type_name(t), (long long)i, w[i], back[i], step);
          CHECK(false);
        }
    }
    if (t != QuantType::Q4_K) CHECK(quantize(t, back, N, K) == q);
  }
}

// The GEMV against its reference at every level and thread count (bit for bit but for Q4_K),
// on shapes that leave partial tiles (N = 37, every M from 1 to 6 and 17), plain and accumulating; and against f32 products of
// the dequantized weights.
TEST(gemv_matches_reference) {
  const int64_t N = 37;
  for (QuantType t : kTypes)
    for (int64_t K : {256, 768}) {
      const auto w = pgtest::randn(static_cast<size_t>(N * K), 11, 0.05f);
      const auto q = quantize(t, w, N, K);
      std::vector<float> wd(w.size());
      pg::dequantize_rows(t, wd.data(), q.data(), N, K);
      for (int64_t M : {1, 2, 3, 4, 5, 6, 17}) {
        const int64_t ldx = K + 3, ldy = N + 5;
        const auto x = pgtest::randn(static_cast<size_t>(M * ldx), 7 + static_cast<unsigned>(M));
        const auto y0 = pgtest::randn(static_cast<size_t>(M * ldy), 5);
        for (bool accumulate : {false, true}) {
          std::vector<float> ref = y0;
          pg::quant_gemv_ref(t, ref.data(), ldy, x.data(), ldx, q.data(), M, N, K, accumulate);
          // f32 products of the dequantized weights: off by the quantization of x only (to 8-bit
          // blocks for every type: q8_0 for Q8_0 and Q4_0, q8_K for Q4_K, as llama.cpp).
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              double s = accumulate ? y0[m * ldy + n] : 0.0;
              for (int64_t k = 0; k < K; ++k) s += double(x[m * ldx + k]) * wd[n * K + k];
              const double tol = 0.03 * std::sqrt(double(K)) * 0.05;
              if (!(std::fabs(ref[m * ldy + n] - s) <= tol)) {
                std::fprintf(stderr, "%s K=%lld M=%lld: ref %g f32 %g\n", pg::quant_type_name(t), (long long)K, (long long)M, ref[m * ldy + n], s);
                CHECK(false);
              }
            }
          for (pg::SimdLevel level : kLevels) {
            pg::force_simd_level(level);
            // F16 with x as this level's kernel takes it (rounded to f16 on AVX2)
            std::vector<float> ref_level = y0;
            pg::quant_gemv_ref(t, ref_level.data(), ldy, x.data(), ldx, q.data(), M, N, K, accumulate,
                               pg::quant_f16_rounds_x());
            for (int threads : {1, 3}) {
              pg::set_num_threads(threads);
              std::vector<float> y = y0;
              pg::quant_gemv(t, y.data(), ldy, x.data(), ldx, q.data(), M, N, K, accumulate);
              // the same order as the reference (per block, or per lane), so the same bits; but Q4_K,
              // and BF16 from 16 rows of x where the AMX GEMM runs them (its own order)
              if (t == QuantType::Q4_K || (t == QuantType::BF16 && M >= 16 && pg::bf16_kernel() == pg::Bf16Kernel::Amx))
                CHECK_CLOSE(y, ref_level, y.size(), 2e-5, 1e-5);
              else CHECK_CLOSE(y, ref_level, y.size(), 0.0, 0.0);
            }
          }
          pg::force_simd_level(pg::SimdLevel::AVX512);
        }
      }
    }
  pg::set_num_threads(0);
}

// A weight of -128 never occurs in Q8_0 (|q| <= 127), but the kernels must be exact on the
// extremes that do: every q at +-127 against every x at +-127.
TEST(gemv_extremes_are_exact) {
  const int64_t N = 8, K = 256;
  std::vector<float> w(N * K), x(K);
  for (int64_t i = 0; i < N * K; ++i) w[i] = (i % 3 == 0) ? -1.0f : 1.0f;
  for (int64_t i = 0; i < K; ++i) x[i] = (i % 5 == 0) ? -1.0f : 1.0f;
  for (QuantType t : {QuantType::Q8_0, QuantType::Q4_0}) {
    const auto q = quantize(t, w, N, K);
    std::vector<float> ref(N);
    pg::quant_gemv_ref(t, ref.data(), N, x.data(), K, q.data(), 1, N, K, false);
    for (pg::SimdLevel level : kLevels) {
      pg::force_simd_level(level);
      std::vector<float> y(N);
      pg::quant_gemv(t, y.data(), N, x.data(), K, q.data(), 1, N, K, false);
      CHECK_CLOSE(y, ref, N, 1e-5, 1e-6);
    }
    pg::force_simd_level(pg::SimdLevel::AVX512);
    std::vector<float> wd(N * K);
    pg::dequantize_rows(t, wd.data(), q.data(), N, K);
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(wd[n * K + k]) * x[k];
      CHECK(std::fabs(ref[n] - s) <= 1e-3 * std::fabs(s) + 1e-3);
    }
  }
}

// The fused decode pieces on quantized weights (decode.cpp with wtype) equal their composition
// from the quantized GEMV, bit for bit: x += down(silu(gate(h)) * up(h)) with h = rmsnorm(x), and
// the head's logits = rmsnorm(x) @ W^T; on 1 and 3 threads.
TEST(fused_decode_reads_quantized_blocks) {
  const int64_t C = 128, F = 192, V = 320;
  for (QuantType t : {QuantType::Q8_0, QuantType::Q4_0, QuantType::F16, QuantType::BF16})
    for (int64_t M : {1, 3}) {
      const auto wg = pgtest::randn(F * C, 21, 0.05f), wu = pgtest::randn(F * C, 22, 0.05f), wd = pgtest::randn(C * F, 23, 0.05f);
      const auto wv = pgtest::randn(V * C, 24, 0.05f), norm = pgtest::randn(C, 25, 0.2f), x0 = pgtest::randn(M * C, 26);
      const auto qg = quantize(t, wg, F, C), qu = quantize(t, wu, F, C), qd = quantize(t, wd, C, F), qv = quantize(t, wv, V, C);
      std::vector<float> normw(norm);
      for (auto& v : normw) v += 1.0f;
      // composition
      std::vector<float> h(M * C), rstd(M), g(M * F), u(M * F), x = x0, logits_ref(M * V);
      pg::set_num_threads(1);
      pg::rmsnorm_forward(h.data(), rstd.data(), x.data(), normw.data(), M, C, 1e-5f);
      pg::quant_gemv(t, g.data(), F, h.data(), C, qg.data(), M, F, C, false);
      pg::quant_gemv(t, u.data(), F, h.data(), C, qu.data(), M, F, C, false);
      for (int64_t m = 0; m < M; ++m) pg::swiglu_forward(g.data() + m * F, g.data() + m * F, u.data() + m * F, F);
      pg::quant_gemv(t, x.data(), C, g.data(), F, qd.data(), M, C, F, true);
      pg::rmsnorm_forward(h.data(), rstd.data(), x.data(), normw.data(), M, C, 1e-5f);
      pg::quant_gemv(t, logits_ref.data(), V, h.data(), C, qv.data(), M, V, C, false);
      for (int threads : {1, 3}) {
        pg::set_num_threads(threads);
        std::vector<float> xf = x0, hf(M * C), gf(M * F), uf(M * F), logits(M * V), h2(M * C);
        pg::DecodeMlpArgs a{};
        a.h = hf.data(), a.g = gf.data(), a.u = uf.data(), a.norm_w = normw.data(), a.eps = 1e-5f;
        a.wg = reinterpret_cast<const float*>(qg.data()), a.wu = reinterpret_cast<const float*>(qu.data());
        a.wd = reinterpret_cast<const float*>(qd.data());
        a.M = M, a.C = C, a.F = F, a.wtype = t;
        pg::decode_swiglu_mlp(xf.data(), a);
        CHECK_CLOSE(xf, x, xf.size(), 0.0, 0.0);
        pg::decode_logits(logits.data(), h2.data(), xf.data(), normw.data(), 1e-5f, reinterpret_cast<const float*>(qv.data()), M, C, V, t);
        CHECK_CLOSE(logits, logits_ref, logits.size(), 0.0, 0.0);
      }
    }
  pg::set_num_threads(0);
}
