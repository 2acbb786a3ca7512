// 16-bit KV caches (paged_attention.cpp, paged_attention_tiles.h, decode.cpp): stores round like
// the cast ops (bf16 nearest even, IEEE f16), bit for bit, on every SIMD level; attention over a
// bf16/f16 cache equals f32 attention over the same cache widened (the kernels widen exactly and
// accumulate in f32), and is within the 16-bit tolerance of attention over the unrounded f32
// keys and values; the fused decode layer stores and reads a 16-bit cache as its pieces do.
#include <cstring>
#include <limits>
#include <vector>

#include "check.h"
#include "patentgpt/gemv.h"
#include "patentgpt/ops.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/runtime.h"

namespace {

const pg::SimdLevel kLevels[] = {pg::SimdLevel::AVX512, pg::SimdLevel::AVX2, pg::SimdLevel::Scalar};
const pg::KvDType kHalves[] = {pg::KvDType::BF16, pg::KvDType::F16};

// The cast op's rounding of x (the reference for the cache's stores), and its widening.
std::vector<uint16_t> rounded(const std::vector<float>& x, pg::KvDType t) {
  std::vector<uint16_t> h(x.size());
  if (t == pg::KvDType::BF16) pg::cast_f32_to_bf16(h.data(), x.data(), static_cast<int64_t>(x.size()));
  else pg::cast_f32_to_f16(h.data(), x.data(), static_cast<int64_t>(x.size()));
  return h;
}
std::vector<float> widened(const std::vector<uint16_t>& h, pg::KvDType t) {
  std::vector<float> x(h.size());
  if (t == pg::KvDType::BF16) pg::cast_bf16_to_f32(x.data(), h.data(), static_cast<int64_t>(h.size()));
  else pg::cast_f16_to_f32(x.data(), h.data(), static_cast<int64_t>(h.size()));
  return x;
}

// Sequences over a pool of nb blocks of bs tokens: a decode row with a long context (spanning
// partitions), a 3-row prefill chunk over a cached prefix, a fresh 2-row prompt.
struct Case {
  int64_t D;
  static constexpr int64_t bs = 16, nb = 40, H = 4, Hkv = 2, M = 6, nseq = 3, max_blocks = 20;
  std::vector<int32_t> tables, cu{0, 1, 4, 6}, ctx{300, 40, 2}, pos{299, 37, 38, 39, 0, 1}, seq{0, 1, 1, 1, 2, 2}, slots;
  explicit Case(int64_t d) : D(d) {
    tables.assign(nseq * max_blocks, 0);
    for (int64_t b = 0; b < max_blocks; ++b) tables[b] = static_cast<int32_t>((7 * b + 3) % nb);  // scattered blocks
    for (int64_t b = 0; b < 3; ++b) tables[max_blocks + b] = static_cast<int32_t>(nb - 1 - b);
    tables[2 * max_blocks] = 1;
    for (int64_t r = 0; r < M; ++r)
      slots.push_back(tables[seq[r] * max_blocks + pos[r] / bs] * static_cast<int32_t>(bs) + pos[r] % static_cast<int32_t>(bs));
  }
  int64_t cache() const { return nb * bs * Hkv * D; }
  std::vector<float> run(const std::vector<float>& q, const void* kc, const void* vc, pg::KvDType t, int64_t partition) const {
    const int64_t P = (300 + partition - 1) / partition;
    std::vector<float> out(M * H * D, std::numeric_limits<float>::quiet_NaN()), part_out(M * H * P * D), part_stats(M * H * P * 2);
    pg::PagedAttention a{out.data(), P > 1 ? part_out.data() : nullptr, P > 1 ? part_stats.data() : nullptr, q.data(), kc, vc,
                         tables.data(), cu.data(), ctx.data(), nseq, M, H, Hkv, D, bs, max_blocks, partition, P,
                         1.0f / std::sqrt(static_cast<float>(D)), t};
    pg::paged_attention_forward(a);
    return out;
  }
};

}  // namespace

TEST(kv16_stores_round_like_the_cast_ops_on_every_simd_level) {
  auto x = pgtest::randn(1000, 1, 3.0f);
  const float specials[] = {0.0f, -0.0f, 1e-6f, -3e-8f, 65504.0f, 70000.0f, -1e30f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), 6.1e-5f};
  for (size_t i = 0; i < sizeof specials / sizeof *specials; ++i) x[17 * i] = specials[i];
  for (pg::SimdLevel level : kLevels) {
    pg::force_simd_level(level);
    for (pg::KvDType t : kHalves) {
      const auto want = rounded(x, t);
      for (int64_t n : {int64_t{1000}, int64_t{37}, int64_t{5}}) {  // whole vectors and tails
        std::vector<uint16_t> got(1003, 0xdead);
        pg::kv_store_rows(got.data(), t, 3, x.data(), n);
        CHECK(got[0] == 0xdead && got[2] == 0xdead);
        CHECK(std::memcmp(got.data() + 3, want.data(), n * sizeof(uint16_t)) == 0);
        if (n + 3 < 1003) CHECK(got[3 + n] == 0xdead);
      }
    }
  }
  pg::force_simd_level(pg::SimdLevel::AVX512);
}

TEST(kv16_paged_kv_store_scatters_rounded_rows) {
  const Case c(64);
  const int64_t row = c.Hkv * c.D;
  const auto k = pgtest::randn(c.M * row, 2), v = pgtest::randn(c.M * row, 3);
  for (pg::KvDType t : kHalves) {
    std::vector<uint16_t> kc(c.cache(), 0), vc(c.cache(), 0);
    std::vector<int32_t> slots = c.slots;
    slots[2] = -1;  // padding: skipped
    pg::paged_kv_store(kc.data(), vc.data(), t, k.data(), v.data(), slots.data(), c.M, c.Hkv, c.D);
    const auto kr = rounded(k, t), vr = rounded(v, t);
    for (int64_t r = 0; r < c.M; ++r) {
      if (slots[r] < 0) continue;
      CHECK(std::memcmp(kc.data() + slots[r] * row, kr.data() + r * row, row * sizeof(uint16_t)) == 0);
      CHECK(std::memcmp(vc.data() + slots[r] * row, vr.data() + r * row, row * sizeof(uint16_t)) == 0);
    }
    for (int64_t i = 0; i < row; ++i) CHECK(kc[c.slots[2] * row + i] == 0);
  }
}

TEST(kv16_attention_equals_f32_attention_over_the_widened_cache) {
  for (int64_t D : {int64_t{64}, int64_t{128}, int64_t{32}, int64_t{24}}) {  // vector paths, and head by head (24)
    const Case c(D);
    const auto q = pgtest::randn(c.M * c.H * D, 4), kf = pgtest::randn(c.cache(), 5), vf = pgtest::randn(c.cache(), 6);
    for (pg::KvDType t : kHalves) {
      const auto kh = rounded(kf, t), vh = rounded(vf, t);
      const auto kw = widened(kh, t), vw = widened(vh, t);
      for (pg::SimdLevel level : kLevels) {
        pg::force_simd_level(level);
        for (int64_t partition : {int64_t{64}, int64_t{512}})
          for (int threads : {1, 2}) {
            pg::set_num_threads(threads);
            const auto got = c.run(q, kh.data(), vh.data(), t, partition);
            const auto exact = c.run(q, kw.data(), vw.data(), pg::KvDType::F32, partition);
            const auto unrounded = c.run(q, kf.data(), vf.data(), pg::KvDType::F32, partition);
            CHECK_CLOSE(got, exact, got.size(), 1e-6, 1e-5);
            // bf16 keeps 8 bits of mantissa, f16 11: the 16-bit cache's own error, not the kernel's.
            const double tol = t == pg::KvDType::BF16 ? 3e-2 : 4e-3;
            CHECK_CLOSE(got, unrounded, got.size(), tol, tol);
          }
      }
    }
  }
  pg::force_simd_level(pg::SimdLevel::AVX512);
}

TEST(kv16_decode_layer_stores_and_reads_the_16_bit_cache) {
  const Case c(64);
  const int64_t M = c.M, H = c.H, Hkv = c.Hkv, D = c.D, C = 48, F = 64, HD = H * D, cache = c.cache(), partition = 128;
  const int64_t P = (300 + partition - 1) / partition;
  const auto x0 = pgtest::randn(M * C, 30), norm1 = pgtest::randn(C, 31, 0.3f), wq = pgtest::randn(HD * C, 32, 0.2f),
             wk = pgtest::randn(Hkv * D * C, 33, 0.2f), wv = pgtest::randn(Hkv * D * C, 34, 0.2f),
             wo = pgtest::randn(C * HD, 35, 0.2f), norm2 = pgtest::randn(C, 36, 0.3f), wg = pgtest::randn(F * C, 37, 0.2f),
             wu = pgtest::randn(F * C, 38, 0.2f), wd = pgtest::randn(C * F, 39, 0.2f);
  for (pg::KvDType t : kHalves)
    for (int threads : {1, 2}) {
      pg::set_num_threads(threads);
      std::vector<uint16_t> kc = rounded(pgtest::randn(cache, 40), t), vc = rounded(pgtest::randn(cache, 41), t);
      std::vector<float> x = x0, q(M * HD), k(M * Hkv * D), v(M * Hkv * D), h(M * C), o(M * HD), g(M * F), u(M * F),
                         part_out(M * H * P * D), part_stats(M * H * P * 2);
      pg::DecodeQkvArgs qkv{q.data(), k.data(), v.data(), h.data(), kc.data(), vc.data(), x.data(), norm1.data(), 1e-5f,
                            wq.data(), wk.data(), wv.data(), c.pos.data(), c.slots.data(), M, C, H, Hkv, D, 10000.0f, 1.0f, t};
      pg::PagedAttention attn{o.data(), part_out.data(), part_stats.data(), q.data(), kc.data(), vc.data(), c.tables.data(),
                              c.cu.data(), c.ctx.data(), c.nseq, M, H, Hkv, D, c.bs, c.max_blocks, partition, P,
                              1.0f / std::sqrt(static_cast<float>(D)), t};
      pg::DecodeMlpArgs mlp{h.data(), g.data(), u.data(), norm2.data(), 1e-5f, wg.data(), wu.data(), wd.data(), M, C, F};
      pg::decode_layer(x.data(), qkv, attn, wo.data(), mlp);
      // The rows' k and v went into their slots, rounded as the cast op rounds.
      const int64_t row = Hkv * D;
      const auto kr = rounded(k, t), vr = rounded(v, t);
      for (int64_t r = 0; r < M; ++r) {
        CHECK(std::memcmp(kc.data() + c.slots[r] * row, kr.data() + r * row, row * sizeof(uint16_t)) == 0);
        CHECK(std::memcmp(vc.data() + c.slots[r] * row, vr.data() + r * row, row * sizeof(uint16_t)) == 0);
      }
      // Its attention output is the f32 attention over the cache as it now stands, widened.
      const auto want = c.run(q, widened(kc, t).data(), widened(vc, t).data(), pg::KvDType::F32, partition);
      CHECK_CLOSE(o, want, M * HD, 1e-6, 1e-5);
    }
}
