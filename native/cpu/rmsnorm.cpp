// RMSNorm as in Hugging Face LlamaRMSNorm: out = w * (x * rsqrt(mean(x^2) + eps)), in f32.
// dx is an activation gradient and is written (=); dw is a parameter gradient and accumulates (+=).
#include <cmath>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

// Sum of the f32 squares x[i] * x[i] in f64 (8 lanes): ggml's rms_norm sums them in f64 too, so
// the f32 mean is the same (the order moves only f64 bits far below it).
PG_CLONES double sumsq_f64(const float* a, int64_t n) {
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(a[i + l] * a[i + l]);
  double total = 0;
  for (int l = 0; l < 8; ++l) total += lanes[l];
  for (; i < n; ++i) total += static_cast<double>(a[i] * a[i]);
  return total;
}

// Sum of w * dout * (x * r): the row term of dx, in 16 independent f32 lanes (so the loop
// vectorises without -ffast-math), folded in f64.
PG_CLONES double weighted_dot(const float* w, const float* d, const float* x, float r, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += w[i + l] * d[i + l] * (x[i + l] * r);
  double total = 0;
  for (int l = 0; l < 16; ++l) total += lanes[l];
  for (; i < n; ++i) total += static_cast<double>(w[i]) * d[i] * (x[i] * r);
  return total;
}

// out (C) = (x * r) * w, the rounding order of LlamaRMSNorm.
PG_CLONES void normalize_row(float* out, const float* x, const float* w, float r, int64_t C) {
  for (int64_t c = 0; c < C; ++c) out[c] = (x[c] * r) * w[c];
}

// dx (C) = r * (w * dout - xhat * k) with xhat = x * r.
PG_CLONES void rmsnorm_dx_row(float* dx, const float* dout, const float* x, const float* w, float r, float k,
                             int64_t C) {
  for (int64_t c = 0; c < C; ++c) dx[c] = r * (w[c] * dout[c] - (x[c] * r) * k);
}

// acc (n) += dout * x * r
PG_CLONES void dw_row(float* acc, const float* dout, const float* x, float r, int64_t n) {
  for (int64_t c = 0; c < n; ++c) acc[c] += dout[c] * (x[c] * r);
}

constexpr int64_t kColBlock = 16;   // columns per work unit: one cache line of dw
constexpr int64_t kAccCols = 1024;  // columns summed at once in a stack accumulator (4 KB)

int64_t row_grain(int64_t C) { return C >= kElementwiseGrain ? 1 : kElementwiseGrain / (C > 0 ? C : 1); }

}  // namespace

// out (N, C), rstd (N), x (N, C), w (C)
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps) {
  parallel_for(N, row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float* xr = x + n * C;
      const float ms = static_cast<float>(sumsq_f64(xr, C) / static_cast<double>(C > 0 ? C : 1));
      const float r = 1.0f / std::sqrt(ms + eps);  // as ggml (and torch's f32 rsqrt): sqrtf, then a f32 division
      rstd[n] = r;
      normalize_row(out + n * C, xr, w, r, C);
    }
  });
}

// dx (N, C), dw (C), dout (N, C), x (N, C), w (C), rstd (N)
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                      const float* rstd, int64_t N, int64_t C) {
  if (N == 0 || C == 0) return;
  // dw first, split over column blocks (each thread sums all rows for its columns: no races,
  // the same order whatever the thread count); then dx by rows.
  const int64_t blocks = (C + kColBlock - 1) / kColBlock;
  const int64_t per_block = N * kColBlock;
  parallel_for(blocks, per_block >= kElementwiseGrain ? 1 : kElementwiseGrain / per_block,
               [&](int64_t b0, int64_t b1) {
    const int64_t c_end = b1 * kColBlock < C ? b1 * kColBlock : C;
    for (int64_t c0 = b0 * kColBlock; c0 < c_end; c0 += kAccCols) {
      const int64_t len = c_end - c0 < kAccCols ? c_end - c0 : kAccCols;
      float acc[kAccCols] = {};
      for (int64_t n = 0; n < N; ++n) dw_row(acc, dout + n * C + c0, x + n * C + c0, rstd[n], len);
      for (int64_t c = 0; c < len; ++c) dw[c0 + c] += acc[c];
    }
  });
  parallel_for(N, row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float r = rstd[n];
      const float* xr = x + n * C;
      const float* dr = dout + n * C;
      const float k = static_cast<float>(weighted_dot(w, dr, xr, r, C) / static_cast<double>(C));
      rmsnorm_dx_row(dx + n * C, dr, xr, w, r, k, C);
    }
  });
}

}  // namespace pg
