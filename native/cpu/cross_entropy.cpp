// Softmax cross-entropy and log-prob gather over rows of logits (the LM head's output).
// Both backward passes produce activation gradients and write (=) dlogits; dlogits may alias
// logits, so the fused chunked LM head can turn a (rows, 55K) logits buffer into its own gradient.
//
// Each row takes two passes: its max (so exp never overflows), then the sum of exp(x - max);
// lse = max + log(sum). A row of the largest vocabulary (220 KB) stays in L2 between passes.
#include <cmath>
#include <cstring>

#include "fast_exp.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

// Max of x (n >= 1) in 16 independent lanes, so it vectorises without -ffast-math. NaNs are
// skipped here; they reach lse through the sum of exponentials (fast_exp(NaN) is NaN).
PG_CLONES float row_max(const float* x, int64_t n) {
  float lanes[16];
  for (int l = 0; l < 16; ++l) lanes[l] = -INFINITY;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] = x[i + l] > lanes[l] ? x[i + l] : lanes[l];
  float m = -INFINITY;
  for (int l = 0; l < 16; ++l) m = lanes[l] > m ? lanes[l] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Sum of exp(x - m), in f32 lanes folded in f64.
PG_CLONES double row_sum_exp(const float* x, float m, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += fast_exp(x[i + l] - m);
  double total = 0;
  for (int l = 0; l < 16; ++l) total += lanes[l];
  for (; i < n; ++i) total += fast_exp(x[i] - m);
  return total;
}

// out (n) = scale * exp(x - lse); out may alias x. Blocks are staged on the stack so the loop
// vectorises in place too (the compiler's overlap check would otherwise fall back to scalar).
PG_CLONES void scaled_softmax(float* out, const float* x, float lse, float scale, int64_t n) {
  float buf[256];
  for (int64_t i0 = 0; i0 < n; i0 += 256) {
    const int64_t len = n - i0 < 256 ? n - i0 : 256;
    std::memcpy(buf, x + i0, static_cast<size_t>(len) * sizeof(float));
    for (int64_t i = 0; i < len; ++i) out[i0 + i] = scale * fast_exp(buf[i] - lse);
  }
}

PG_CLONES void zero_row(float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = 0.0f;
}

// log-sum-exp of a row of V >= 1 logits.
float row_lse(const float* x, int64_t V) {
  const float m = row_max(x, V);
  if (m == INFINITY) return m;
  if (m == -INFINITY) {  // every logit -inf or NaN: lse is NaN if any is NaN (rare path)
    for (int64_t i = 0; i < V; ++i)
      if (x[i] != x[i]) return NAN;
    return m;
  }
  return static_cast<float>(static_cast<double>(m) + std::log(row_sum_exp(x, m, V)));
}

int64_t row_grain(int64_t V) { return V >= kElementwiseGrain / 4 ? 1 : (kElementwiseGrain / 4) / (V > 0 ? V : 1); }

}  // namespace

// loss (N), lse (N) (0 on ignored rows, which are skipped), logits (N, V), targets (N)
void cross_entropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int64_t N,
                           int64_t V, int32_t ignore_index) {
  parallel_for(N, row_grain(V), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      if (targets[n] == ignore_index) {
        loss[n] = 0.0f;
        lse[n] = 0.0f;
        continue;
      }
      const float* row = logits + n * V;
      lse[n] = row_lse(row, V);
      loss[n] = lse[n] - row[targets[n]];
    }
  });
}

// dlogits (N, V), dloss (N), logits (N, V), lse (N), targets (N)
void cross_entropy_backward(float* dlogits, const float* dloss, const float* logits, const float* lse,
                            const int32_t* targets, int64_t N, int64_t V, int32_t ignore_index) {
  parallel_for(N, row_grain(V), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      float* out = dlogits + n * V;
      if (targets[n] == ignore_index) {
        zero_row(out, V);
        continue;
      }
      scaled_softmax(out, logits + n * V, lse[n], dloss[n], V);
      out[targets[n]] -= dloss[n];
    }
  });
}

// out (N), lse (N), logits (N, V), ids (N)
void logprob_forward(float* out, float* lse, const float* logits, const int32_t* ids, int64_t N, int64_t V) {
  parallel_for(N, row_grain(V), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float* row = logits + n * V;
      lse[n] = row_lse(row, V);
      out[n] = row[ids[n]] - lse[n];
    }
  });
}

// dlogits (N, V), dout (N), logits (N, V), lse (N), ids (N)
void logprob_backward(float* dlogits, const float* dout, const float* logits, const float* lse, const int32_t* ids,
                      int64_t N, int64_t V) {
  parallel_for(N, row_grain(V), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      float* out = dlogits + n * V;
      scaled_softmax(out, logits + n * V, lse[n], -dout[n], V);
      out[ids[n]] += dout[n];
    }
  });
}

}  // namespace pg
