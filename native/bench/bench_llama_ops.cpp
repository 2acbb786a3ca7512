// Memory throughput of the LLaMA layer kernels at model sizes (PatentGPT-0.5-like: C = 2048,
// vocabulary 55,296). Prints GB/s of compulsory traffic per kernel; these ops are memory-bound,
// so the figure to compare is the machine's stream bandwidth.
#include <chrono>
#include <cstdio>
#include <vector>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

template <typename Fn>
double best_seconds(Fn fn, int reps = 5) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    best = dt.count() < best ? dt.count() : best;
  }
  return best;
}

void report(const char* name, double bytes, double seconds) {
  std::printf("%-28s %8.3f ms  %7.1f GB/s\n", name, seconds * 1e3, bytes / seconds / 1e9);
}

}  // namespace

int main() {
  std::printf("threads %d, simd %s\n", pg::num_threads(), pg::simd_level_name(pg::simd_level()));
  const int64_t N = 2048, C = 2048, V = 55296, rows = 64, F = 5504;
  std::vector<float> x(N * C, 0.5f), out(N * C), w(C, 1.0f), rstd(N), dx(N * C), dw(C);
  report("rmsnorm_forward", 8.0 * N * C, best_seconds([&] { pg::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f); }));
  report("rmsnorm_backward", 16.0 * N * C, best_seconds([&] { pg::rmsnorm_backward(dx.data(), dw.data(), out.data(), x.data(), w.data(), rstd.data(), N, C); }));

  std::vector<int32_t> pos(N);
  for (int64_t t = 0; t < N; ++t) pos[t] = static_cast<int32_t>(t);
  report("rope_forward (T,16,128)", 8.0 * N * C, best_seconds([&] { pg::rope_forward(out.data(), x.data(), pos.data(), N, 16, 128, 10000.0f, 1.0f); }));

  std::vector<float> g(N * F / 4, 0.3f), u(N * F / 4, 0.7f), o(N * F / 4), dg(N * F / 4), du(N * F / 4);
  const int64_t n = N * F / 4;
  report("swiglu_forward", 12.0 * n, best_seconds([&] { pg::swiglu_forward(o.data(), g.data(), u.data(), n); }));
  report("swiglu_backward", 20.0 * n, best_seconds([&] { pg::swiglu_backward(dg.data(), du.data(), o.data(), g.data(), u.data(), n); }));

  std::vector<float> logits(rows * V, 0.1f), loss(rows), lse(rows), dloss(rows, 1.0f / rows);
  std::vector<int32_t> targets(rows, 7);
  report("cross_entropy_forward", 4.0 * rows * V, best_seconds([&] { pg::cross_entropy_forward(loss.data(), lse.data(), logits.data(), targets.data(), rows, V, -100); }));
  report("cross_entropy_backward(inpl)", 8.0 * rows * V, best_seconds([&] { pg::cross_entropy_backward(logits.data(), dloss.data(), logits.data(), lse.data(), targets.data(), rows, V, -100); }));

  const int64_t P = 1 << 24;
  std::vector<float> p(P, 0.1f), m(P), v(P), grad(P, 0.01f);
  int64_t step = 0;
  report("adamw_step", 28.0 * P, best_seconds([&] { pg::adamw_step(p.data(), m.data(), v.data(), grad.data(), P, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, ++step, 1.0f); }));

  std::vector<int32_t> ids(N);
  for (int64_t i = 0; i < N; ++i) ids[i] = static_cast<int32_t>((i * 7919) % 4096);
  std::vector<float> table(4096 * C, 0.2f), dtable(4096 * C);
  report("embedding_forward", 8.0 * N * C, best_seconds([&] { pg::embedding_forward(out.data(), ids.data(), table.data(), N, C); }));
  report("embedding_backward", 12.0 * N * C, best_seconds([&] { pg::embedding_backward(dtable.data(), x.data(), ids.data(), N, C); }));
  return 0;
}
