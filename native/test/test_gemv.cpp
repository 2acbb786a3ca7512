// The decode kernels (gemv.cpp, decode.cpp, paged_attention.cpp) against plain double-precision
// loops: the GEMV on odd shapes and strides at every SIMD level and thread count (each tile
// shape: one row, two or three, four and more), exact on small integers, each row independent
// of the others; gemv_multi equal to separate products; paged attention equal to attention over
// the keys gathered through the block table; the fused decoder layer and the fused head equal
// to their pieces.
#include <cmath>
#include <cstring>
#include <limits>

#include "check.h"
#include "patentgpt/gemv.h"
#include "patentgpt/ops.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/runtime.h"

namespace {

const pg::SimdLevel kLevels[] = {pg::SimdLevel::AVX512, pg::SimdLevel::AVX2, pg::SimdLevel::Scalar};

// y (M, N) (+)= x (M, K) @ w (N, K)^T with row strides, in double.
std::vector<double> gemv_ref(const std::vector<float>& x, int64_t ldx, const std::vector<float>& w, int64_t ldw,
                             const std::vector<float>& y0, int64_t ldy, int64_t M, int64_t N, int64_t K,
                             bool accumulate) {
  std::vector<double> y(y0.begin(), y0.end());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = accumulate ? y0[m * ldy + n] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(x[m * ldx + k]) * w[n * ldw + k];
      y[m * ldy + n] = s;
    }
  return y;
}

std::vector<float> small_ints(size_t n, unsigned seed) {
  std::vector<float> v(n);
  unsigned s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = float(int((s >> 16) % 7) - 3);
  }
  return v;
}

// Every (M, N, K) of the lists, strided, both modes, each level and thread count: the result
// must equal the double reference exactly on small integers (every partial sum is exact).
bool gemv_matches(int64_t M, int64_t N, int64_t K, unsigned seed) {
  const int64_t ldx = K + 3, ldw = K + 1, ldy = N + 2;
  const auto x = small_ints(M * ldx, seed), w = small_ints(N * ldw, seed + 1), y0 = small_ints(M * ldy, seed + 2);
  for (bool accumulate : {false, true}) {
    const auto want = gemv_ref(x, ldx, w, ldw, y0, ldy, M, N, K, accumulate);
    for (auto level : kLevels)
      for (int threads : {1, 2}) {
        pg::force_simd_level(level);
        pg::set_num_threads(threads);
        std::vector<float> y = y0;
        pg::gemv(y.data(), ldy, x.data(), ldx, w.data(), ldw, M, N, K, accumulate);
        for (int64_t i = 0; i < M * ldy; ++i)
          if (double(y[i]) != want[i]) {
            std::fprintf(stderr, "gemv M=%lld N=%lld K=%lld accumulate=%d simd=%s threads=%d: y[%lld] = %g, expected %g\n",
                         (long long)M, (long long)N, (long long)K, int(accumulate), pg::simd_level_name(level), threads,
                         (long long)i, y[i], want[i]);
            pg::force_simd_level(pg::SimdLevel::AVX512);
            return false;
          }
      }
  }
  pg::force_simd_level(pg::SimdLevel::AVX512);
  return true;
}

}  // namespace

TEST(gemv_is_exact_on_small_integers_for_odd_shapes) {
  unsigned seed = 1;
  for (int64_t M : {1, 2, 3, 4, 5, 7, 13, 64})
    for (int64_t N : {1, 5, 15, 47, 48, 49, 97, 1031})
      for (int64_t K : {1, 3, 15, 17, 33, 771}) {
        if (M * N * K > 3000000) continue;
        CHECK(gemv_matches(M, N, K, seed++));
      }
}

TEST(gemv_rows_do_not_depend_on_each_other) {
  const int64_t M = 64, N = 301, K = 777;
  const auto x = pgtest::randn(M * K, 3), w = pgtest::randn(N * K, 4);
  for (auto level : kLevels) {
    pg::force_simd_level(level);
    std::vector<float> all(M * N), one(N);
    pg::gemv(all.data(), N, x.data(), K, w.data(), K, M, N, K, false);
    const auto want = gemv_ref(x, K, w, K, std::vector<float>(M * N), N, M, N, K, false);
    CHECK_CLOSE(all, want, M * N, 1e-3, 1e-4);
    for (int64_t m : {0, 1, 2, 3, 5, 63}) {
      pg::gemv(one.data(), N, x.data() + m * K, K, w.data(), K, 1, N, K, false);
      for (int64_t M2 : {2, 3, 4}) {  // the same row inside a block of the other tile shapes
        if (m + M2 > M) continue;
        std::vector<float> block(M2 * N);
        pg::gemv(block.data(), N, x.data() + m * K, K, w.data(), K, M2, N, K, false);
        CHECK(std::memcmp(block.data(), one.data(), N * sizeof(float)) == 0);
      }
      CHECK(std::memcmp(all.data() + m * N, one.data(), N * sizeof(float)) == 0);
    }
  }
  pg::force_simd_level(pg::SimdLevel::AVX512);
}

TEST(gemv_multi_equals_separate_products) {
  const int64_t M = 3, K = 130;
  const int64_t rows[3] = {100, 7, 61};
  const auto x = pgtest::randn(M * K, 5);
  std::vector<std::vector<float>> w, y, want;
  std::vector<pg::GemvTarget> targets;
  for (int i = 0; i < 3; ++i) {
    w.push_back(pgtest::randn(rows[i] * K, 10 + i));
    y.emplace_back(M * rows[i], 1.0f);
    want.emplace_back(M * rows[i], 1.0f);
  }
  for (int i = 0; i < 3; ++i) targets.push_back({w[i].data(), rows[i], K, y[i].data(), rows[i], i == 1});
  for (int threads : {1, 2}) {
    pg::set_num_threads(threads);
    for (int i = 0; i < 3; ++i) {
      std::fill(y[i].begin(), y[i].end(), 1.0f);
      std::fill(want[i].begin(), want[i].end(), 1.0f);
      pg::gemv(want[i].data(), rows[i], x.data(), K, w[i].data(), K, M, rows[i], K, i == 1);
    }
    pg::gemv_multi(targets.data(), 3, x.data(), K, M, K);
    for (int i = 0; i < 3; ++i) CHECK(std::memcmp(y[i].data(), want[i].data(), y[i].size() * sizeof(float)) == 0);
  }
}

namespace {

// A cache of nb blocks of bs tokens, Hkv heads of D; three sequences: one decode row (context 9),
// a 3-row chunk over a cached prefix (context 12), a fresh 2-row prompt (context 2).
struct PagedCase {
  static constexpr int64_t bs = 4, nb = 12, H = 6, Hkv = 2, D = 8, M = 6, nseq = 3, max_blocks = 3;
  std::vector<int32_t> tables{3, 7, 1, 0, 9, 4, 11, 2, 0}, cu{0, 1, 4, 6}, ctx{9, 12, 2};
  std::vector<int32_t> pos{8, 9, 10, 11, 0, 1}, seq{0, 1, 1, 1, 2, 2}, slots;
  PagedCase() {
    for (int64_t r = 0; r < M; ++r)
      slots.push_back(tables[seq[r] * max_blocks + pos[r] / bs] * int32_t(bs) + pos[r] % int32_t(bs));
  }
  pg::PagedAttention attention(float* out, float* part_out, float* part_stats, const float* q, const float* kc,
                               const float* vc, int64_t partition) const {
    const int64_t P = (12 + partition - 1) / partition;
    return {out, P > 1 ? part_out : nullptr, P > 1 ? part_stats : nullptr, q, kc, vc, tables.data(), cu.data(),
            ctx.data(), nseq, M, H, Hkv, D, bs, max_blocks, partition, P, 1.0f / std::sqrt(float(D))};
  }
  // Row r's causal attention over its sequence's cache positions [0, pos[r]], in double.
  std::vector<double> reference(const std::vector<float>& q, const std::vector<float>& kc,
                                const std::vector<float>& vc) const {
    std::vector<double> out(M * H * D);
    for (int64_t r = 0; r < M; ++r)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / Hkv), len = pos[r] + 1;
        std::vector<double> p(len);
        double mx = -INFINITY, z = 0;
        for (int64_t t = 0; t < len; ++t) {
          const int64_t slot = tables[seq[r] * max_blocks + t / bs] * bs + t % bs;
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += double(q[(r * H + h) * D + d]) * kc[(slot * Hkv + g) * D + d];
          p[t] = s / std::sqrt(double(D));
          mx = std::max(mx, p[t]);
        }
        for (auto& e : p) z += (e = std::exp(e - mx));
        for (int64_t t = 0; t < len; ++t) {
          const int64_t slot = tables[seq[r] * max_blocks + t / bs] * bs + t % bs;
          for (int64_t d = 0; d < D; ++d) out[(r * H + h) * D + d] += p[t] / z * vc[(slot * Hkv + g) * D + d];
        }
      }
    return out;
  }
};

}  // namespace

TEST(paged_attention_equals_attention_over_gathered_keys) {
  const PagedCase c;
  const auto q = pgtest::randn(c.M * c.H * c.D, 20), kc = pgtest::randn(c.nb * c.bs * c.Hkv * c.D, 21),
             vc = pgtest::randn(c.nb * c.bs * c.Hkv * c.D, 22);
  const auto want = c.reference(q, kc, vc);
  for (int64_t partition : {1, 4, 5, 512})
    for (int threads : {1, 2}) {
      pg::set_num_threads(threads);
      const int64_t P = (12 + partition - 1) / partition;
      std::vector<float> out(c.M * c.H * c.D, std::numeric_limits<float>::quiet_NaN());
      std::vector<float> part_out(c.M * c.H * P * c.D), part_stats(c.M * c.H * P * 2);
      pg::paged_attention_forward(c.attention(out.data(), part_out.data(), part_stats.data(), q.data(), kc.data(),
                                              vc.data(), partition));
      CHECK_CLOSE(out, want, out.size(), 1e-5, 1e-4);
    }
}

TEST(decode_layer_equals_its_pieces) {
  const PagedCase c;
  const int64_t M = c.M, H = c.H, Hkv = c.Hkv, D = c.D, C = 40, F = 72, HD = H * D, cache = c.nb * c.bs * Hkv * D;
  const auto x0 = pgtest::randn(M * C, 30), norm1 = pgtest::randn(C, 31, 0.3f), wq = pgtest::randn(HD * C, 32, 0.2f),
             wk = pgtest::randn(Hkv * D * C, 33, 0.2f), wv = pgtest::randn(Hkv * D * C, 34, 0.2f),
             wo = pgtest::randn(C * HD, 35, 0.2f), norm2 = pgtest::randn(C, 36, 0.3f), wg = pgtest::randn(F * C, 37, 0.2f),
             wu = pgtest::randn(F * C, 38, 0.2f), wd = pgtest::randn(C * F, 39, 0.2f), kc0 = pgtest::randn(cache, 40),
             vc0 = pgtest::randn(cache, 41);
  for (int64_t partition : {4, 512})
    for (int threads : {1, 2}) {
      pg::set_num_threads(threads);
      const int64_t P = (12 + partition - 1) / partition;
      struct Run {
        std::vector<float> x, kc, vc, q, k, v, h, o, g, u, part_out, part_stats;
      };
      auto fresh = [&] {
        return Run{x0, kc0, vc0, std::vector<float>(M * HD), std::vector<float>(M * Hkv * D), std::vector<float>(M * Hkv * D),
                   std::vector<float>(M * C), std::vector<float>(M * HD), std::vector<float>(M * F), std::vector<float>(M * F),
                   std::vector<float>(M * H * P * D), std::vector<float>(M * H * P * 2)};
      };
      auto qkv_args = [&](Run& r) {
        return pg::DecodeQkvArgs{r.q.data(), r.k.data(), r.v.data(), r.h.data(), r.kc.data(), r.vc.data(), r.x.data(),
                                 norm1.data(), 1e-5f, wq.data(), wk.data(), wv.data(), c.pos.data(), c.slots.data(),
                                 M, C, H, Hkv, D, 10000.0f, 1.0f};
      };
      auto mlp_args = [&](Run& r) {
        return pg::DecodeMlpArgs{r.h.data(), r.g.data(), r.u.data(), norm2.data(), 1e-5f, wg.data(), wu.data(), wd.data(), M, C, F};
      };
      Run fused = fresh(), pieces = fresh();
      pg::decode_layer(fused.x.data(), qkv_args(fused),
                       c.attention(fused.o.data(), fused.part_out.data(), fused.part_stats.data(), fused.q.data(),
                                   fused.kc.data(), fused.vc.data(), partition),
                       wo.data(), mlp_args(fused));
      pg::decode_qkv(qkv_args(pieces));
      pg::paged_attention_forward(c.attention(pieces.o.data(), pieces.part_out.data(), pieces.part_stats.data(),
                                              pieces.q.data(), pieces.kc.data(), pieces.vc.data(), partition));
      CHECK_CLOSE(pieces.o, c.reference(pieces.q, pieces.kc, pieces.vc), M * HD, 1e-5, 1e-4);
      pg::gemv(pieces.x.data(), C, pieces.o.data(), HD, wo.data(), HD, M, C, HD, true);
      pg::decode_swiglu_mlp(pieces.x.data(), mlp_args(pieces));
      CHECK(std::memcmp(fused.kc.data(), pieces.kc.data(), cache * sizeof(float)) == 0);
      CHECK(std::memcmp(fused.vc.data(), pieces.vc.data(), cache * sizeof(float)) == 0);
      CHECK_CLOSE(fused.o, pieces.o, M * HD, 1e-6, 1e-5);
      CHECK_CLOSE(fused.x, pieces.x, M * C, 1e-6, 1e-5);
    }
}

TEST(decode_logits_equals_rmsnorm_then_gemv) {
  const int64_t M = 3, C = 37, V = 1001;
  const auto x = pgtest::randn(M * C, 50), norm = pgtest::randn(C, 51, 0.5f), w = pgtest::randn(V * C, 52, 0.3f);
  std::vector<float> h(M * C), rstd(M), want(M * V);
  pg::rmsnorm_forward(h.data(), rstd.data(), x.data(), norm.data(), M, C, 1e-5f);
  pg::gemv(want.data(), V, h.data(), C, w.data(), C, M, V, C, false);
  for (int threads : {1, 2}) {
    pg::set_num_threads(threads);
    std::vector<float> logits(M * V, std::numeric_limits<float>::quiet_NaN()), scratch(M * C);
    pg::decode_logits(logits.data(), scratch.data(), x.data(), norm.data(), 1e-5f, w.data(), M, C, V);
    CHECK(std::memcmp(logits.data(), want.data(), want.size() * sizeof(float)) == 0);
  }
}
