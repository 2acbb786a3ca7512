// Reductions over one dimension (sum/mean, max with indices), softmax and log-softmax over the
// last dimension, and gather / scatter-add along a dimension, forward and backward.
// A tensor is viewed as (outer, D, inner) around the dimension the op works on. Activation
// gradients are written (=); scatter_add accumulates (+=), being both an op and the adjoint of
// gather. Work is split so that no two threads write one element and the order of additions
// does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

// Columns of the inner dimension handled together: long enough for the loads to vectorise,
// short enough for the f64 accumulators to live on the stack.
constexpr int64_t kBlock = 64;

// Calls fn(o, j0, j1) for every (outer row, block of inner columns), split over the pool.
template <typename Fn>
void for_blocks(int64_t outer, int64_t D, int64_t inner, Fn fn) {
  const int64_t blocks = (inner + kBlock - 1) / kBlock;
  const int64_t work = std::max<int64_t>(1, D * std::min(inner, kBlock));
  parallel_for(outer * blocks, std::max<int64_t>(1, kElementwiseGrain / work), [&](int64_t s, int64_t e) {
    for (int64_t t = s; t < e; ++t) {
      const int64_t o = t / blocks, j0 = (t % blocks) * kBlock;
      fn(o, j0, std::min(inner, j0 + kBlock));
    }
  });
}

inline float row_max(const float* x, int64_t C) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t c = 0; c < C; ++c) m = std::max(m, x[c]);
  return m;
}

}  // namespace

void sum_dim_forward(float* out, const float* x, int64_t outer, int64_t D, int64_t inner, float scale) {
  if (outer == 0 || inner == 0) return;
  for_blocks(outer, D, inner, [&](int64_t o, int64_t j0, int64_t j1) {
    double acc[kBlock] = {};
    const int64_t w = j1 - j0;
    for (int64_t d = 0; d < D; ++d) {
      const float* row = x + (o * D + d) * inner + j0;
      for (int64_t j = 0; j < w; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < w; ++j) out[o * inner + j0 + j] = static_cast<float>(acc[j] * scale);
  });
}

void sum_dim_backward(float* dx, const float* dout, int64_t outer, int64_t D, int64_t inner, float scale) {
  const int64_t rows = outer * D;
  if (rows == 0 || inner == 0) return;
  parallel_for(rows, std::max<int64_t>(1, kElementwiseGrain / inner), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      const float* g = dout + (r / D) * inner;
      float* row = dx + r * inner;
      for (int64_t j = 0; j < inner; ++j) row[j] = scale * g[j];
    }
  });
}

void max_dim_forward(float* values, int32_t* indices, const float* x, int64_t outer, int64_t D, int64_t inner) {
  if (outer == 0 || inner == 0 || D == 0) return;
  for_blocks(outer, D, inner, [&](int64_t o, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const float* col = x + o * D * inner + j;
      float best = col[0];
      int32_t at = 0;
      for (int64_t d = 1; d < D && best == best; ++d) {  // a NaN is final
        const float v = col[d * inner];
        if (v > best || v != v) best = v, at = static_cast<int32_t>(d);
      }
      values[o * inner + j] = best;
      indices[o * inner + j] = at;
    }
  });
}

void gather_forward(float* out, const float* x, const int32_t* index, int64_t outer, int64_t D, int64_t K,
                    int64_t inner) {
  const int64_t rows = outer * K;
  if (rows == 0 || inner == 0) return;
  parallel_for(rows, std::max<int64_t>(1, kElementwiseGrain / inner), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      const int64_t o = r / K;
      const int32_t* idx = index + r * inner;
      float* dst = out + r * inner;
      const float* src = x + o * D * inner;
      for (int64_t j = 0; j < inner; ++j) dst[j] = src[idx[j] * inner + j];
    }
  });
}

void scatter_add(float* dst, const float* src, const int32_t* index, int64_t outer, int64_t D, int64_t K,
                 int64_t inner) {
  if (outer == 0 || inner == 0 || K == 0) return;
  // A thread owns dst[o, :, j0:j1) and adds src in k order.
  for_blocks(outer, K, inner, [&](int64_t o, int64_t j0, int64_t j1) {
    float* base = dst + o * D * inner;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = (o * K + k) * inner;
      for (int64_t j = j0; j < j1; ++j) base[index[r + j] * inner + j] += src[r + j];
    }
  });
}

void softmax_forward(float* out, const float* x, int64_t N, int64_t C) {
  if (C == 0) return;
  parallel_for(N, std::max<int64_t>(1, kElementwiseGrain / C), [&](int64_t s, int64_t e) {
    for (int64_t n = s; n < e; ++n) {
      const float* xr = x + n * C;
      float* yr = out + n * C;
      const float m = row_max(xr, C);
      double total = 0;
      for (int64_t c = 0; c < C; ++c) total += (yr[c] = std::exp(xr[c] - m));
      const float inv = static_cast<float>(1.0 / total);
      for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
    }
  });
}

void softmax_backward(float* dx, const float* dout, const float* out, int64_t N, int64_t C) {
  if (C == 0) return;
  parallel_for(N, std::max<int64_t>(1, kElementwiseGrain / C), [&](int64_t s, int64_t e) {
    for (int64_t n = s; n < e; ++n) {
      const float* g = dout + n * C;
      const float* y = out + n * C;
      double dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(g[c]) * y[c];
      const float d = static_cast<float>(dot);
      float* r = dx + n * C;
      for (int64_t c = 0; c < C; ++c) r[c] = y[c] * (g[c] - d);
    }
  });
}

void log_softmax_forward(float* out, const float* x, int64_t N, int64_t C) {
  if (C == 0) return;
  parallel_for(N, std::max<int64_t>(1, kElementwiseGrain / C), [&](int64_t s, int64_t e) {
    for (int64_t n = s; n < e; ++n) {
      const float* xr = x + n * C;
      float* yr = out + n * C;
      const float m = row_max(xr, C);
      double total = 0;
      for (int64_t c = 0; c < C; ++c) total += std::exp(xr[c] - m);
      const float lse = m + static_cast<float>(std::log(total));
      for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] - lse;
    }
  });
}

void log_softmax_backward(float* dx, const float* dout, const float* out, int64_t N, int64_t C) {
  if (C == 0) return;
  parallel_for(N, std::max<int64_t>(1, kElementwiseGrain / C), [&](int64_t s, int64_t e) {
    for (int64_t n = s; n < e; ++n) {
      const float* g = dout + n * C;
      const float* y = out + n * C;
      double total = 0;
      for (int64_t c = 0; c < C; ++c) total += g[c];
      const float t = static_cast<float>(total);
      float* r = dx + n * C;
      for (int64_t c = 0; c < C; ++c) r[c] = g[c] - std::exp(y[c]) * t;
    }
  });
}

}  // namespace pg
