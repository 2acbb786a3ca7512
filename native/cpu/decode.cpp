// A decoder layer's pieces for decoding (a few rows), fused around the GEMVs of gemv.cpp: one
// parallel region per piece, the threads meeting at spin barriers between its phases, so a
// layer wakes the pool three times instead of a dozen. The arithmetic is that of the separate
// ops (rmsnorm_forward, rope_forward, swiglu_forward are called on each thread's share), so the
// fused path gives the same results as the module path up to the GEMV's summation order.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "gemv_kernels.h"
#include "patentgpt/gemv.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pg {

namespace {

// All `parts` threads of a region wait until each has arrived.
class SpinBarrier {
 public:
  explicit SpinBarrier(int parts) : parts_(parts) {}
  void wait() {
    if (parts_ <= 1) return;
    const int phase = phase_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == parts_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      phase_.store(phase + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; phase_.load(std::memory_order_acquire) == phase; ++spins) {
#if defined(__x86_64__) || defined(__i386__)
      _mm_pause();
#endif
      if (spins > 2048) std::this_thread::yield();  // the other thread was descheduled
    }
  }

 private:
  const int parts_;
  std::atomic<int> count_{0};
  std::atomic<int> phase_{0};
};

// Runs body(part, parts, barrier) once on each of `parts` threads at once (parts = 1 when the
// work is small or this is already inside a parallel region).
template <class Body>
void region(bool parallel, Body&& body) {
  const int nt = parallel ? num_threads() : 1;
  if (nt <= 1) {
    SpinBarrier one(1);
    body(0, 1, one);
    return;
  }
  SpinBarrier barrier(nt);
  parallel_for(nt, 1, [&](int64_t b, int64_t e) {
    if (e - b == 1) {
      body(static_cast<int>(b), nt, barrier);
    } else {  // nested: the pool ran the whole range on this thread
      SpinBarrier one(1);
      body(0, 1, one);
    }
  });
}

inline int64_t share(int64_t n, int part, int parts) { return n * part / parts; }

// As gemv.cpp: below this much weight, the pool costs more than it saves.
bool worth_threads(int64_t M, int64_t weights) { return 4.0 * weights >= 256 * 1024 || 2.0 * M * weights >= 4e6; }

void norm_rows(float* h, const float* x, const float* w, float eps, int64_t M, int64_t C, int part, int parts) {
  const int64_t r0 = share(M, part, parts), r1 = share(M, part + 1, parts);
  float rstd[64];
  for (int64_t r = r0; r < r1; r += 64) {
    const int64_t n = std::min<int64_t>(64, r1 - r);
    rmsnorm_forward(h + r * C, rstd, x + r * C, w, n, C, eps);
  }
}

}  // namespace

void decode_qkv(float* q, float* k, float* v, float* h, float* k_cache, float* v_cache, const float* x,
                const float* norm_w, float eps, const float* wq, const float* wk, const float* wv, const int32_t* pos,
                const int32_t* slot_mapping, int64_t M, int64_t C, int64_t H, int64_t Hkv, int64_t D, float theta,
                float pos_scale) {
  if (M <= 0) return;
  const int64_t units = H + 2 * Hkv;  // heads of q, then k, then v: D rows of weights each
  region(worth_threads(M, units * D * C), [&](int part, int parts, SpinBarrier& barrier) {
    norm_rows(h, x, norm_w, eps, M, C, part, parts);
    barrier.wait();
    const int64_t u0 = share(units, part, parts), u1 = share(units, part + 1, parts);
    // This thread's heads of each projection: [a, b) of q, of k, of v.
    struct Part {
      const float* w;
      float* y;
      int64_t heads, first;
    } parts3[3] = {{wq, q, H, 0}, {wk, k, Hkv, H}, {wv, v, Hkv, H + Hkv}};
    for (int i = 0; i < 3; ++i) {
      const Part& p = parts3[i];
      const int64_t a = std::max(u0, p.first) - p.first, b = std::min(u1, p.first + p.heads) - p.first;
      if (a >= b) continue;
      const GemvTarget t{p.w, p.heads * D, C, p.y, p.heads * D, false};
      gemv_rows(t, h, C, M, C, a * D, b * D);
      for (int64_t m = 0; m < M; ++m) {
        float* row = p.y + m * p.heads * D + a * D;
        if (i < 2) rope_forward(row, row, pos + m, 1, b - a, D, theta, pos_scale);
        const int64_t s = slot_mapping[m];
        if (i > 0 && s >= 0)
          std::memcpy((i == 1 ? k_cache : v_cache) + (s * Hkv + a) * D, row, static_cast<size_t>((b - a) * D) * sizeof(float));
      }
    }
  });
}

void decode_swiglu_mlp(float* x, float* h, float* g, float* u, const float* norm_w, float eps, const float* wg,
                       const float* wu, const float* wd, int64_t M, int64_t C, int64_t F) {
  if (M <= 0) return;
  using gemv_detail::kTileRows;
  region(worth_threads(M, 3 * F * C), [&](int part, int parts, SpinBarrier& barrier) {
    norm_rows(h, x, norm_w, eps, M, C, part, parts);
    barrier.wait();
    // Gate and up over the same rows, then silu(gate) * up on them, into g.
    const int64_t tiles = (F + kTileRows - 1) / kTileRows;
    const int64_t j0 = std::min(F, share(tiles, part, parts) * kTileRows);
    const int64_t j1 = std::min(F, share(tiles, part + 1, parts) * kTileRows);
    if (j0 < j1) {
      gemv_rows(GemvTarget{wg, F, C, g, F, false}, h, C, M, C, j0, j1);
      gemv_rows(GemvTarget{wu, F, C, u, F, false}, h, C, M, C, j0, j1);
      for (int64_t m = 0; m < M; ++m) swiglu_forward(g + m * F + j0, g + m * F + j0, u + m * F + j0, j1 - j0);
    }
    barrier.wait();
    // x += g @ Wd^T over this thread's columns of x.
    const int64_t ct = (C + kTileRows - 1) / kTileRows;
    const int64_t c0 = std::min(C, share(ct, part, parts) * kTileRows);
    const int64_t c1 = std::min(C, share(ct, part + 1, parts) * kTileRows);
    gemv_rows(GemvTarget{wd, C, F, x, C, true}, g, F, M, F, c0, c1);
  });
}

}  // namespace pg
