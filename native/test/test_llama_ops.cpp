// The LLaMA layer kernels (embedding, rmsnorm, rope, swiglu, cross-entropy / log-prob, AdamW)
// against plain double-precision loops, plus the properties the callers rely on: in-place
// aliasing, gradient accumulation, and results independent of the thread count.
#include <cmath>
#include <cstring>

#include "../cpu/fast_exp.h"
#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

std::vector<int32_t> ids_mod(int64_t n, int32_t V, int32_t mul) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * mul + 3) % V);
  return ids;
}

double lse_ref(const float* row, int64_t V) {
  double m = -INFINITY, s = 0;
  for (int64_t v = 0; v < V; ++v) m = std::max(m, static_cast<double>(row[v]));
  for (int64_t v = 0; v < V; ++v) s += std::exp(row[v] - m);
  return m + std::log(s);
}

}  // namespace

TEST(fast_exp_is_within_a_few_ulp) {
  double worst = 0;
  for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
    const double e = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(pg::fast_exp(x) - e) / e);
  }
  CHECK(worst < 3e-7);
  CHECK(pg::fast_exp(-100.0f) == 0.0f);
  CHECK(std::isfinite(pg::fast_exp(1000.0f)));
  CHECK(std::isnan(pg::fast_exp(NAN)));
}

TEST(embedding_gathers_and_scatter_adds_deterministically) {
  const int64_t N = 3001, V = 37, C = 83;
  auto table = pgtest::randn(V * C, 1);
  auto dout = pgtest::randn(N * C, 2);
  auto ids = ids_mod(N, V, 7);
  std::vector<float> out(N * C);
  pg::embedding_forward(out.data(), ids.data(), table.data(), N, C);
  for (int64_t n = 0; n < N; ++n) CHECK(std::memcmp(&out[n * C], &table[ids[n] * C], C * sizeof(float)) == 0);

  std::vector<double> ref(V * C, 0.5);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) ref[ids[n] * C + c] += dout[n * C + c];
  std::vector<float> d1(V * C, 0.5f), d2(V * C, 0.5f);
  pg::set_num_threads(1);
  pg::embedding_backward(d1.data(), dout.data(), ids.data(), N, C);
  pg::set_num_threads(2);
  pg::embedding_backward(d2.data(), dout.data(), ids.data(), N, C);
  CHECK_CLOSE(d1, ref, V * C, 1e-3, 1e-4);  // += onto the 0.5 already there
  CHECK(std::memcmp(d1.data(), d2.data(), d1.size() * sizeof(float)) == 0);
}

TEST(rmsnorm_matches_loops_and_accumulates_dw) {
  const int64_t N = 67, C = 1027;
  const float eps = 1e-5f;
  auto x = pgtest::randn(N * C, 3, 2.0f), w = pgtest::randn(C, 4), dout = pgtest::randn(N * C, 5);
  std::vector<float> out(N * C), rstd(N), dx(N * C), dw(C, 1.0f);
  pg::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
  pg::rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
  std::vector<double> out_ref(N * C), dx_ref(N * C), dw_ref(C, 1.0), rstd_ref(N);
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = &x[n * C];
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(xr[c]) * xr[c];
    const double r = 1 / std::sqrt(ss / C + eps);
    rstd_ref[n] = r;
    double k = 0;
    for (int64_t c = 0; c < C; ++c) {
      out_ref[n * C + c] = xr[c] * r * w[c];
      dw_ref[c] += dout[n * C + c] * xr[c] * r;
      k += w[c] * dout[n * C + c] * xr[c] * r;
    }
    k /= C;
    for (int64_t c = 0; c < C; ++c) dx_ref[n * C + c] = r * (w[c] * dout[n * C + c] - xr[c] * r * k);
  }
  CHECK_CLOSE(rstd, rstd_ref, N, 0, 1e-6);
  CHECK_CLOSE(out, out_ref, N * C, 1e-5, 1e-5);
  CHECK_CLOSE(dx, dx_ref, N * C, 1e-5, 1e-4);
  CHECK_CLOSE(dw, dw_ref, C, 1e-4, 1e-4);
  std::vector<float> dw1(C, 0.0f), dw2(C, 0.0f);
  pg::set_num_threads(1);
  pg::rmsnorm_backward(dx.data(), dw1.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
  pg::set_num_threads(2);
  pg::rmsnorm_backward(dx.data(), dw2.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
  CHECK(std::memcmp(dw1.data(), dw2.data(), C * sizeof(float)) == 0);
}

TEST(rope_matches_hf_f32_angles_in_place_and_inverts) {
  const int64_t T = 33, H = 3, D = 1030;  // more than one 256-pair block, odd pair count
  const float theta = 500000.0f, pos_scale = 4.0f;
  auto x = pgtest::randn(T * H * D, 6);
  std::vector<int32_t> pos(T);
  for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t * 511);  // up to ~16K
  std::vector<float> out(T * H * D);
  pg::rope_forward(out.data(), x.data(), pos.data(), T, H, D, theta, pos_scale);
  const int64_t half = D / 2;
  std::vector<double> ref(T * H * D);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float inv = 1.0f / static_cast<float>(std::pow(static_cast<double>(theta), static_cast<double>(
                                   static_cast<float>(2 * i) / static_cast<float>(D))));
      const float angle = inv * (static_cast<float>(pos[t]) / pos_scale);
      const double c = std::cos(static_cast<double>(angle)), s = std::sin(static_cast<double>(angle));
      for (int64_t h = 0; h < H; ++h) {
        const int64_t b = (t * H + h) * D;
        ref[b + i] = x[b + i] * c - x[b + i + half] * s;
        ref[b + i + half] = x[b + i + half] * c + x[b + i] * s;
      }
    }
  CHECK_CLOSE(out, ref, T * H * D, 1e-5, 1e-5);
  std::vector<float> inplace = x;
  pg::rope_forward(inplace.data(), inplace.data(), pos.data(), T, H, D, theta, pos_scale);
  CHECK(std::memcmp(inplace.data(), out.data(), out.size() * sizeof(float)) == 0);
  pg::rope_backward(inplace.data(), inplace.data(), pos.data(), T, H, D, theta, pos_scale);  // R^T R = I
  CHECK_CLOSE(inplace, x, T * H * D, 1e-5, 1e-5);
}

TEST(swiglu_matches_silu_times_up) {
  const int64_t n = 100003;
  auto g = pgtest::randn(n, 7, 5.0f), u = pgtest::randn(n, 8), d = pgtest::randn(n, 9);
  g[0] = -120.0f, g[1] = 120.0f, g[2] = 0.0f;
  std::vector<float> out(n), dg(n), du(n);
  pg::swiglu_forward(out.data(), g.data(), u.data(), n);
  pg::swiglu_backward(dg.data(), du.data(), d.data(), g.data(), u.data(), n);
  std::vector<double> out_ref(n), dg_ref(n), du_ref(n);
  for (int64_t i = 0; i < n; ++i) {
    const double s = 1 / (1 + std::exp(-static_cast<double>(g[i])));
    out_ref[i] = g[i] * s * u[i];
    du_ref[i] = d[i] * g[i] * s;
    dg_ref[i] = d[i] * u[i] * (s + g[i] * s * (1 - s));
  }
  CHECK_CLOSE(out, out_ref, n, 1e-6, 1e-5);
  CHECK_CLOSE(du, du_ref, n, 1e-6, 1e-5);
  CHECK_CLOSE(dg, dg_ref, n, 1e-6, 1e-5);
}

TEST(cross_entropy_and_logprob_match_loops_in_place) {
  const int64_t N = 5, V = 55296;  // the PatentGPT vocabulary
  auto logits = pgtest::randn(N * V, 10, 3.0f);
  logits[2 * V + 11] = 90.0f;  // exp would overflow without the max subtraction
  auto targets = ids_mod(N, static_cast<int32_t>(V), 9973);
  targets[3] = -100;
  std::vector<float> dloss = {0.5f, -1.0f, 2.0f, 3.0f, 1.0f};
  std::vector<float> loss(N), lse(N), lp(N), lse2(N);
  pg::cross_entropy_forward(loss.data(), lse.data(), logits.data(), targets.data(), N, V, -100);
  std::vector<double> loss_ref(N), lse_r(N);
  for (int64_t n = 0; n < N; ++n) {
    lse_r[n] = lse_ref(&logits[n * V], V);
    loss_ref[n] = targets[n] == -100 ? 0 : lse_r[n] - logits[n * V + targets[n]];
  }
  CHECK_CLOSE(loss, loss_ref, N, 1e-5, 1e-5);

  std::vector<float> dl(N * V), inplace = logits;
  pg::cross_entropy_backward(dl.data(), dloss.data(), logits.data(), lse.data(), targets.data(), N, V, -100);
  pg::cross_entropy_backward(inplace.data(), dloss.data(), inplace.data(), lse.data(), targets.data(), N, V, -100);
  CHECK(std::memcmp(inplace.data(), dl.data(), dl.size() * sizeof(float)) == 0);
  std::vector<double> dl_ref(N * V, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] == -100) continue;
    for (int64_t v = 0; v < V; ++v)
      dl_ref[n * V + v] = dloss[n] * (std::exp(logits[n * V + v] - lse_r[n]) - (v == targets[n] ? 1 : 0));
  }
  CHECK_CLOSE(dl, dl_ref, N * V, 1e-9, 1e-5);

  targets[3] = 17;
  pg::logprob_forward(lp.data(), lse2.data(), logits.data(), targets.data(), N, V);
  for (int64_t n = 0; n < N; ++n) loss_ref[n] = logits[n * V + targets[n]] - lse_ref(&logits[n * V], V);
  CHECK_CLOSE(lp, loss_ref, N, 1e-5, 1e-5);
  inplace = logits;
  pg::logprob_backward(inplace.data(), dloss.data(), inplace.data(), lse2.data(), targets.data(), N, V);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t v = 0; v < V; ++v)
      dl_ref[n * V + v] = dloss[n] * ((v == targets[n] ? 1 : 0) - std::exp(logits[n * V + v] - lse2[n]));
  CHECK_CLOSE(inplace, dl_ref, N * V, 1e-9, 1e-5);
}

TEST(adamw_matches_torch_arithmetic_over_steps) {
  const int64_t n = 70001;
  const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, scale = 0.25f;
  auto p = pgtest::randn(n, 11);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  std::vector<double> pr(p.begin(), p.end()), mr(n, 0.0), vr(n, 0.0);
  for (int64_t step = 1; step <= 5; ++step) {
    auto g = pgtest::randn(n, 20 + static_cast<unsigned>(step));
    pg::adamw_step(p.data(), m.data(), v.data(), g.data(), n, lr, b1, b2, eps, wd, step, scale);
    const double bc1 = 1 - std::pow(static_cast<double>(b1), step), bc2 = 1 - std::pow(static_cast<double>(b2), step);
    for (int64_t i = 0; i < n; ++i) {
      const double gi = static_cast<double>(g[i]) * scale;
      pr[i] *= 1 - static_cast<double>(lr) * wd;
      mr[i] = b1 * mr[i] + (1 - static_cast<double>(b1)) * gi;
      vr[i] = b2 * vr[i] + (1 - static_cast<double>(b2)) * gi * gi;
      pr[i] -= lr / bc1 * mr[i] / (std::sqrt(vr[i]) / std::sqrt(bc2) + eps);
    }
  }
  CHECK_CLOSE(p, pr, n, 1e-6, 1e-5);
  CHECK_CLOSE(m, mr, n, 1e-8, 1e-5);
  CHECK_CLOSE(v, vr, n, 1e-10, 1e-5);
}
