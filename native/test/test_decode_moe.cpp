// The fused MoE decode step (native/cpu/decode.cpp: decode_moe_ffn) and the grouped GEMM over
// the experts' own storages (native/cpu/moe.cpp: moe_experts_gemm_*) against plain loops in
// double precision, with the experts each in a separate buffer.
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "check.h"
#include "patentgpt/moe_experts.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

bool near(double a, double b, double tol) { return std::fabs(a - b) <= tol * (1.0 + std::fabs(b)); }

double silu(double g) { return g / (1.0 + std::exp(-g)); }

// y (C) = w2 (silu(w1 h) * (w3 h)), h (C), w1, w3 (F, C), w2 (C, F).
std::vector<double> expert_ref(const float* h, const float* w1, const float* w3, const float* w2, int C, int F) {
  std::vector<double> a(F), y(C, 0.0);
  for (int f = 0; f < F; ++f) {
    double g = 0, u = 0;
    for (int c = 0; c < C; ++c) g += double(w1[f * C + c]) * h[c], u += double(w3[f * C + c]) * h[c];
    a[f] = silu(g) * u;
  }
  for (int c = 0; c < C; ++c)
    for (int f = 0; f < F; ++f) y[c] += double(w2[c * F + f]) * a[f];
  return y;
}

struct Moe {
  int C, F, E, k, S;
  std::vector<std::vector<float>> mats;  // 3 * (E + S) separate buffers: w1, w3, w2 of each
  std::vector<const float*> ptrs;
  std::vector<float> norm_w, gate;
  Moe(int C_, int F_, int E_, int k_, int S_, unsigned seed) : C(C_), F(F_), E(E_), k(k_), S(S_) {
    for (int i = 0; i < 3 * (E + S); ++i) mats.push_back(pgtest::randn(size_t(F) * C, seed + i, 0.2f));
    for (auto& m : mats) ptrs.push_back(m.data());
    norm_w = pgtest::randn(C, seed + 100, 0.3f);
    for (auto& w : norm_w) w += 1.0f;
    gate = pgtest::randn(size_t(E) * C, seed + 101, 0.5f);
  }
  // x (M, C) += the layer, in double, routing by the float logits the kernel computes from h.
  void reference(std::vector<double>& out, const std::vector<float>& x, int M, float eps) const {
    out.assign(x.begin(), x.end());
    for (int m = 0; m < M; ++m) {
      const float* xr = x.data() + m * C;
      double ss = 0;
      for (int c = 0; c < C; ++c) ss += double(xr[c]) * xr[c];
      const double rstd = 1.0 / std::sqrt(ss / C + eps);
      std::vector<float> h(C);
      for (int c = 0; c < C; ++c) h[c] = float(xr[c] * rstd * norm_w[c]);
      std::vector<float> l(E);
      for (int e = 0; e < E; ++e) {
        double z = 0;
        for (int c = 0; c < C; ++c) z += double(gate[e * C + c]) * h[c];
        l[e] = float(z);
      }
      std::vector<int> idx(E);
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
      double zk = 0;
      for (int j = 0; j < k; ++j) zk += std::exp(double(l[idx[j]]) - l[idx[0]]);
      for (int j = 0; j < k + S; ++j) {
        const int q = j < k ? idx[j] : E + (j - k);
        const double w = j < k ? std::exp(double(l[idx[j]]) - l[idx[0]]) / zk : 1.0;
        auto y = expert_ref(h.data(), ptrs[3 * q], ptrs[3 * q + 1], ptrs[3 * q + 2], C, F);
        for (int c = 0; c < C; ++c) out[m * C + c] += w * y[c];
      }
    }
  }
};

}  // namespace

TEST(decode_moe_ffn_matches_plain_loops_reading_only_the_chosen_experts) {
  for (int threads : {1, 3}) {
    pg::set_num_threads(threads);
    for (int S : {0, 1}) {
      for (int M : {1, 2, 5, 8}) {
        const int C = 48, F = 80, E = 6, k = 2;
        Moe moe(C, F, E, k, S, 7 + M + 10 * S);
        auto x = pgtest::randn(size_t(M) * C, 3 + M);
        std::vector<double> ref;
        moe.reference(ref, x, M, 1e-5f);
        // Poison every expert no row chose (in the reference's routing): the step must not read them.
        std::vector<char> used(E, 0);
        {
          std::vector<float> idxw(size_t(M) * k);
          std::vector<int32_t> idx(size_t(M) * k);
          // the routing again, through the kernels' own row function
          for (int m = 0; m < M; ++m) {
            const float* xr = x.data() + m * C;
            double ss = 0;
            for (int c = 0; c < C; ++c) ss += double(xr[c]) * xr[c];
            const double rstd = 1.0 / std::sqrt(ss / C + 1e-5);
            std::vector<float> l(E);
            for (int e = 0; e < E; ++e) {
              double z = 0;
              for (int c = 0; c < C; ++c) z += double(moe.gate[e * C + c]) * float(xr[c] * rstd * moe.norm_w[c]);
              l[e] = float(z);
            }
            pg::moe_router_row(idx.data() + m * k, idxw.data() + m * k, l.data(), E, k, true);
            for (int j = 0; j < k; ++j) used[idx[m * k + j]] = 1;
          }
        }
        int poisoned = 0;
        for (int e = 0; e < E; ++e)
          if (!used[e]) {
            for (int i = 0; i < 3; ++i) std::fill(moe.mats[3 * e + i].begin(), moe.mats[3 * e + i].end(), std::nanf(""));
            ++poisoned;
          }
        if (M == 1) CHECK(poisoned >= E - k);
        std::vector<float> h(size_t(M) * C), scratch(pg::decode_moe_scratch_floats(M, C, F, E, k, S), std::nanf(""));
        std::vector<int32_t> index(pg::decode_moe_index_ints(M, E, k), -7);
        pg::DecodeMoeArgs a{};
        a.h = h.data(), a.scratch = scratch.data(), a.index = index.data(), a.norm_w = moe.norm_w.data(), a.eps = 1e-5f;
        a.gate = moe.gate.data(), a.experts = moe.ptrs.data();
        a.M = M, a.C = C, a.F = F, a.E = E, a.k = k, a.S = S;
        pg::decode_moe_ffn(x.data(), a);
        CHECK_CLOSE(x.data(), ref.data(), M * C, 2e-4, 2e-4);
      }
    }
  }
  pg::set_num_threads(0);
}

TEST(moe_experts_gemm_reads_and_writes_each_experts_own_storage) {
  const int E = 4, O = 24, I = 40;
  const int32_t offsets[E + 1] = {0, 5, 5, 75, 78};  // expert 1 empty; expert 2 above the GEMV's 64 rows
  const int M = offsets[E];
  std::vector<std::vector<float>> w, dw;
  std::vector<const float*> wp;
  std::vector<float*> dwp;
  for (int e = 0; e < E; ++e) {
    w.push_back(pgtest::randn(size_t(O) * I, 40 + e));
    dw.emplace_back(size_t(O) * I, std::nanf(""));  // written, never read: NaN must not survive
  }
  for (int e = 0; e < E; ++e) wp.push_back(w[e].data()), dwp.push_back(dw[e].data());
  auto xs = pgtest::randn(size_t(M) * I, 50), dy = pgtest::randn(size_t(M) * O, 51);
  std::vector<float> y(size_t(M) * O), dxs(size_t(M) * I, std::nanf(""));
  pg::moe_experts_gemm_forward(y.data(), xs.data(), wp.data(), offsets, E, O, I);
  pg::moe_experts_gemm_backward(dxs.data(), dwp.data(), dy.data(), xs.data(), wp.data(), offsets, E, O, I);
  for (int e = 0; e < E; ++e) {
    for (int r = offsets[e]; r < offsets[e + 1]; ++r) {
      for (int o = 0; o < O; ++o) {
        double s = 0;
        for (int i = 0; i < I; ++i) s += double(xs[r * I + i]) * w[e][o * I + i];
        CHECK(near(y[r * O + o], s, 1e-4));
      }
      for (int i = 0; i < I; ++i) {
        double s = 0;
        for (int o = 0; o < O; ++o) s += double(dy[r * O + o]) * w[e][o * I + i];
        CHECK(near(dxs[r * I + i], s, 1e-4));
      }
    }
    for (int o = 0; o < O; ++o)
      for (int i = 0; i < I; ++i) {
        double s = 0;
        for (int r = offsets[e]; r < offsets[e + 1]; ++r) s += double(dy[r * O + o]) * xs[r * I + i];
        CHECK(near(dw[e][o * I + i], s, 1e-3));  // the empty expert: exactly 0 (below)
      }
  }
  for (float v : dw[1]) CHECK(v == 0.0f);
}
