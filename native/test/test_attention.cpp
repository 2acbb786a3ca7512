// Fused attention forward/backward against plain double-precision loops (softmax attention
// with causal and sequence masks), at every SIMD level, 1 and 2 threads, and both backward
// schedules (one task per (sequence, kv head), or the key-side and query-side passes).
#include <cstdint>
#include <limits>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

struct Case {
  std::vector<int32_t> cu;
  int64_t H, Hkv, D;
  bool causal;
};

struct Result {
  std::vector<float> out, lse, dq, dk, dv;
};

Result reference(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
                 const std::vector<float>& v, const std::vector<float>& dout, float scale) {
  const int64_t T = c.cu.back(), H = c.H, Hkv = c.Hkv, D = c.D, G = H / Hkv;
  Result r;
  r.out.assign(T * H * D, 0), r.lse.assign(H * T, 0), r.dq.assign(T * H * D, 0);
  r.dk.assign(T * Hkv * D, 0), r.dv.assign(T * Hkv * D, 0);
  for (size_t s = 0; s + 1 < c.cu.size(); ++s) {
    const int64_t s0 = c.cu[s], len = c.cu[s + 1] - s0;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / G;
      for (int64_t i = 0; i < len; ++i) {
        const int64_t nk = c.causal ? i + 1 : len;
        std::vector<double> p(nk), dp(nk);
        double mx = -1e300;
        for (int64_t j = 0; j < nk; ++j) {
          double acc = 0;
          for (int64_t d = 0; d < D; ++d) acc += double(q[((s0 + i) * H + h) * D + d]) * k[((s0 + j) * Hkv + g) * D + d];
          p[j] = acc * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (auto& x : p) sum += (x = std::exp(x - mx));
        for (auto& x : p) x /= sum;
        r.lse[h * T + s0 + i] = float(mx + std::log(sum));
        const float* go = &dout[((s0 + i) * H + h) * D];
        double delta = 0;
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t j = 0; j < nk; ++j) o += p[j] * v[((s0 + j) * Hkv + g) * D + d];
          r.out[((s0 + i) * H + h) * D + d] = float(o);
          delta += o * go[d];
        }
        for (int64_t j = 0; j < nk; ++j) {
          double acc = 0;
          for (int64_t d = 0; d < D; ++d) acc += double(go[d]) * v[((s0 + j) * Hkv + g) * D + d];
          dp[j] = p[j] * (acc - delta) * scale;  // dS
          for (int64_t d = 0; d < D; ++d) {
            r.dv[((s0 + j) * Hkv + g) * D + d] += float(p[j] * go[d]);
            r.dk[((s0 + j) * Hkv + g) * D + d] += float(dp[j] * q[((s0 + i) * H + h) * D + d]);
            r.dq[((s0 + i) * H + h) * D + d] += float(dp[j] * k[((s0 + j) * Hkv + g) * D + d]);
          }
        }
      }
    }
  }
  return r;
}

bool run_case(const Case& c, unsigned seed) {
  const int64_t T = c.cu.back(), nseq = int64_t(c.cu.size()) - 1;
  const float scale = 1.0f / std::sqrt(float(c.D));
  auto q = pgtest::randn(T * c.H * c.D, seed), k = pgtest::randn(T * c.Hkv * c.D, seed + 1);
  auto v = pgtest::randn(T * c.Hkv * c.D, seed + 2), dout = pgtest::randn(T * c.H * c.D, seed + 3);
  Result ref = reference(c, q, k, v, dout, scale);
  int before = pgtest::failures();
  for (auto level : {pg::SimdLevel::AVX512, pg::SimdLevel::AVX2, pg::SimdLevel::Scalar})
    for (int threads : {1, 2}) {
      pg::force_simd_level(level);
      pg::set_num_threads(threads);
      // NaN-filled outputs: every element must be written.
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::vector<float> out(T * c.H * c.D, nan), lse(c.H * T, nan), delta(c.H * T, nan);
      std::vector<float> dq(q.size(), nan), dk(k.size(), nan), dv(v.size(), nan);
      pg::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), c.cu.data(), nseq, T, c.H,
                            c.Hkv, c.D, scale, c.causal);
      pg::attention_backward(dq.data(), dk.data(), dv.data(), delta.data(), dout.data(), out.data(), lse.data(),
                             q.data(), k.data(), v.data(), c.cu.data(), nseq, T, c.H, c.Hkv, c.D, scale, c.causal);
      auto check = [&](const char* what, const std::vector<float>& got, const std::vector<float>& want) {
        for (size_t i = 0; i < want.size(); ++i)
          if (!(std::fabs(got[i] - want[i]) <= 2e-4 + 2e-4 * std::fabs(want[i]))) {
            std::fprintf(stderr, "T=%lld H=%lld Hkv=%lld D=%lld causal=%d simd=%s threads=%d: %s[%zu] = %.7g, expected %.7g\n",
                         (long long)T, (long long)c.H, (long long)c.Hkv, (long long)c.D, int(c.causal),
                         pg::simd_level_name(level), threads, what, i, got[i], want[i]);
            ++pgtest::failures();
            return;
          }
      };
      check("out", out, ref.out);
      check("lse", lse, ref.lse);
      check("dq", dq, ref.dq);
      check("dk", dk, ref.dk);
      check("dv", dv, ref.dv);
      if (pgtest::failures() != before) break;
    }
  pg::force_simd_level(pg::SimdLevel::AVX512);
  return pgtest::failures() == before;
}

}  // namespace

TEST(single_sequence_causal_and_full) {
  for (bool causal : {true, false}) {
    CHECK(run_case({{0, 200}, 4, 2, 64, causal}, 1));   // fused backward on 2 threads
    CHECK(run_case({{0, 130}, 2, 1, 128, causal}, 2));  // two-pass backward
  }
}

TEST(odd_head_dims_and_gqa_ratios) {
  CHECK(run_case({{0, 77}, 8, 1, 5, true}, 3));
  CHECK(run_case({{0, 65}, 4, 4, 24, true}, 4));
  CHECK(run_case({{0, 33}, 8, 2, 17, false}, 5));
  CHECK(run_case({{0, 1}, 1, 1, 3, true}, 6));
  // The largest head dim the workspace reserves tile scratch for (pg::kMaxHeadDim), both
  // backward schedules.
  CHECK(run_case({{0, 70}, 2, 1, 256, true}, 13));
  CHECK(run_case({{0, 300}, 2, 2, 256, false}, 14));
}

TEST(packed_sequences_of_uneven_length) {
  CHECK(run_case({{0, 1, 70, 71, 200, 203}, 2, 1, 40, true}, 7));
  CHECK(run_case({{0, 64, 65, 193}, 4, 2, 32, false}, 8));
  CHECK(run_case({{0, 5, 5, 12}, 2, 2, 8, true}, 9));  // an empty sequence in the middle
}

TEST(several_key_blocks_per_sequence) {
  // Longer than one backward key block (4 tiles of 64 keys), for both backward schedules.
  CHECK(run_case({{0, 600}, 2, 1, 24, true}, 10));
  CHECK(run_case({{0, 300, 833}, 4, 2, 16, true}, 11));
  CHECK(run_case({{0, 520}, 2, 2, 8, false}, 12));
}

TEST(large_logits_stay_finite) {
  // Scores of a few hundred: the online softmax must rescale, not overflow.
  const int64_t T = 150, H = 1, D = 16;
  std::vector<int32_t> cu = {0, int32_t(T)};
  auto q = pgtest::randn(T * D, 11, 30.0f), k = pgtest::randn(T * D, 12, 30.0f), v = pgtest::randn(T * D, 13);
  std::vector<float> out(T * D), lse(T);
  pg::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), cu.data(), 1, T, H, H, D, 0.25f, true);
  for (float x : out) CHECK(std::isfinite(x));
  for (float x : lse) CHECK(std::isfinite(x));
}
