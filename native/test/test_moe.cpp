// The sparse-MoE kernels (native/cpu/moe.cpp) against plain loops in double precision.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

// Top-k by a stable sort on descending value: ties keep the lower index first.
std::vector<int> topk_ref(const float* l, int E, int k) {
  std::vector<int> idx(E);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
  idx.resize(k);
  return idx;
}

}  // namespace

TEST(moe_router_matches_softmax_topk_and_its_gradient) {
  const int N = 37, E = 8, k = 3;
  auto logits = pgtest::randn(N * E, 11, 2.0f);
  logits[0] = logits[1] = logits[2] = logits[3] = 5.0f;  // a tie across more than k experts
  for (bool normalize : {true, false}) {
    std::vector<int32_t> idx(N * k);
    std::vector<float> w(N * k), dl(N * E);
    pg::moe_router_forward(idx.data(), w.data(), logits.data(), N, E, k, normalize);
    auto dw = pgtest::randn(N * k, 12);
    pg::moe_router_backward(dl.data(), dw.data(), w.data(), idx.data(), logits.data(), N, E, k, normalize);
    std::vector<float> wref(N * k), dlref(N * E, 0.0f);
    for (int n = 0; n < N; ++n) {
      const float* l = logits.data() + n * E;
      auto sel = topk_ref(l, E, k);
      for (int j = 0; j < k; ++j) CHECK(idx[n * k + j] == sel[j]);
      double m = l[sel[0]], z = 0, zk = 0;
      for (int e = 0; e < E; ++e) z += std::exp(l[e] - m);
      for (int j = 0; j < k; ++j) zk += std::exp(l[sel[j]] - m);
      // L = sum_j dw_j * w_j, differentiated by hand per logit through a central difference.
      auto loss = [&](int e_probe, double h) {
        std::vector<double> lp(l, l + E);
        lp[e_probe] += h;
        double mm = lp[sel[0]], zz = 0, acc = 0;
        if (normalize) for (int j = 0; j < k; ++j) zz += std::exp(lp[sel[j]] - mm);
        else for (int e = 0; e < E; ++e) zz += std::exp(lp[e] - mm);
        for (int j = 0; j < k; ++j) acc += dw[n * k + j] * std::exp(lp[sel[j]] - mm) / zz;
        return acc;
      };
      for (int j = 0; j < k; ++j) wref[n * k + j] = static_cast<float>(std::exp(l[sel[j]] - m) / (normalize ? zk : z));
      for (int e = 0; e < E; ++e) dlref[n * E + e] = static_cast<float>((loss(e, 1e-5) - loss(e, -1e-5)) / 2e-5);
    }
    CHECK(idx[0] == 0 && idx[1] == 1 && idx[2] == 2);
    CHECK_CLOSE(w, wref, N * k, 1e-6, 1e-5);
    CHECK_CLOSE(dl, dlref, N * E, 1e-5, 1e-4);
  }
}

TEST(moe_dispatch_is_a_stable_counting_sort_with_empty_experts) {
  const int64_t M = 1000, E = 7;
  std::vector<int32_t> ind(M), order(M), pos(M), off(E + 1);
  for (int64_t s = 0; s < M; ++s) ind[s] = static_cast<int32_t>((s * 31 + s / 3) % 5);  // experts 5, 6 empty
  pg::moe_dispatch(order.data(), pos.data(), off.data(), ind.data(), M, E);
  std::vector<int32_t> ref(M);
  std::iota(ref.begin(), ref.end(), 0);
  std::stable_sort(ref.begin(), ref.end(), [&](int a, int b) { return ind[a] < ind[b]; });
  for (int64_t p = 0; p < M; ++p) CHECK(order[p] == ref[p] && pos[order[p]] == p);
  for (int64_t e = 0; e < E; ++e)
    CHECK(off[e + 1] - off[e] == std::count(ind.begin(), ind.end(), static_cast<int32_t>(e)));
  CHECK(off[0] == 0 && off[E] == M && off[5] == off[7]);
  // All slots to one expert: the others' groups are empty.
  std::fill(ind.begin(), ind.end(), 3);
  pg::moe_dispatch(order.data(), pos.data(), off.data(), ind.data(), M, E);
  CHECK(off[3] == 0 && off[4] == M && off[7] == M);
  for (int64_t p = 0; p < M; ++p) CHECK(order[p] == p);
}

TEST(moe_layer_pieces_match_plain_loops_forward_and_backward) {
  // Sizes past one GEMM block on several threads; expert 2 gets no rows.
  const int64_t N = 150, k = 2, E = 4, C = 40, O = 33, M = N * k;
  std::vector<int32_t> ind(M), order(M), pos(M), off(E + 1);
  for (int64_t n = 0; n < N; ++n) {
    ind[n * k] = static_cast<int32_t>(n % 7 == 0 ? 1 : 0);
    ind[n * k + 1] = 3;
  }
  pg::moe_dispatch(order.data(), pos.data(), off.data(), ind.data(), M, E);
  auto x = pgtest::randn(N * C, 1), w = pgtest::randn(E * O * C, 2, 0.2f), wt = pgtest::randn(M, 3);
  std::vector<float> xs(M * C), y(M * O), out(N * O);
  pg::moe_permute_forward(xs.data(), x.data(), order.data(), M, C, k);
  pg::moe_grouped_gemm_forward(y.data(), xs.data(), w.data(), off.data(), E, O, C);
  pg::moe_combine_forward(out.data(), y.data(), wt.data(), pos.data(), N, O, k);
  // Plain loops: each token through each of its experts, weighted.
  std::vector<double> yref(M * O), outref(N * O, 0.0);
  for (int64_t s = 0; s < M; ++s) {
    const int64_t n = s / k, e = ind[s];
    for (int64_t o = 0; o < O; ++o) {
      double acc = 0;
      for (int64_t c = 0; c < C; ++c) acc += static_cast<double>(x[n * C + c]) * w[(e * O + o) * C + c];
      yref[s * O + o] = acc;
      outref[n * O + o] += wt[s] * acc;
    }
  }
  CHECK_CLOSE(out, outref, N * O, 1e-4, 1e-4);
  // Backward: dout -> dy, dweights -> dxs, dw -> dx.
  auto dout = pgtest::randn(N * O, 4);
  std::vector<float> dy(M * O), dwt(M), dxs(M * C), dx(N * C), dw(E * O * C, 1.0f);
  pg::moe_combine_backward(dy.data(), dwt.data(), dout.data(), y.data(), wt.data(), pos.data(), N, O, k);
  pg::moe_grouped_gemm_backward(dxs.data(), dw.data(), dy.data(), xs.data(), w.data(), off.data(), E, O, C);
  pg::moe_permute_backward(dx.data(), dxs.data(), pos.data(), N, C, k);
  std::vector<double> dwtref(M, 0.0), dxref(N * C, 0.0), dwref(E * O * C, 1.0);  // dw accumulates onto 1
  for (int64_t s = 0; s < M; ++s) {
    const int64_t n = s / k, e = ind[s];
    for (int64_t o = 0; o < O; ++o) {
      const double g = dout[n * O + o];
      dwtref[s] += g * yref[s * O + o];
      for (int64_t c = 0; c < C; ++c) {
        dxref[n * C + c] += wt[s] * g * w[(e * O + o) * C + c];
        dwref[(e * O + o) * C + c] += wt[s] * g * x[n * C + c];
      }
    }
  }
  CHECK_CLOSE(dwt, dwtref, M, 1e-4, 1e-4);
  CHECK_CLOSE(dx, dxref, N * C, 1e-4, 1e-4);
  CHECK_CLOSE(dw, dwref, E * O * C, 1e-4, 1e-4);
  for (int64_t i = 2 * O * C; i < 3 * O * C; ++i) CHECK(dw[i] == 1.0f);  // the empty expert's untouched
}
