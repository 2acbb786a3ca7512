// SwiGLU gating of the LLaMA feed-forward: out = silu(gate) * up, elementwise.
// Both inputs are activations, so backward writes (=) dgate and dup.
#include "fast_exp.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

// out, gate, up (n)
PG_CLONES void swiglu_forward_range(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + fast_exp(-g)) * up[i];  // F.silu computes x / (1 + exp(-x))
  }
}

// silu'(g) = s + g s (1 - s) with s = sigmoid(g).
PG_CLONES void swiglu_backward_range(float* dgate, float* dup, const float* dout, const float* gate,
                                     const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], u = up[i], d = dout[i];
    const float s = 1.0f / (1.0f + fast_exp(-g));
    dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    dup[i] = d * g * s;
  }
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  parallel_for(n, kElementwiseGrain / 4, [&](int64_t s, int64_t e) {
    swiglu_forward_range(out + s, gate + s, up + s, e - s);
  });
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
  parallel_for(n, kElementwiseGrain / 4, [&](int64_t s, int64_t e) {
    swiglu_backward_range(dgate + s, dup + s, dout + s, gate + s, up + s, e - s);
  });
}

}  // namespace pg
