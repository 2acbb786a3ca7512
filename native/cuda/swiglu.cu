// CUDA twin of native/cpu/swiglu.cpp: out = silu(gate) * up; backward writes (=) dgate and dup.
#include "common.cuh"

namespace pg::cuda {

namespace {

#define PG_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void __launch_bounds__(kElementwiseThreads) swiglu_forward_kernel(float* out, const float* gate,
                                                                             const float* up, int64_t n) {
  PG_GRID_STRIDE(i, n) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];  // F.silu computes x / (1 + exp(-x))
  }
}

// silu'(g) = s + g s (1 - s), s = sigmoid(g).
__global__ void __launch_bounds__(kElementwiseThreads) swiglu_backward_kernel(float* dgate, float* dup,
                                                                              const float* dout, const float* gate,
                                                                              const float* up, int64_t n) {
  PG_GRID_STRIDE(i, n) {
    const float g = gate[i], u = up[i], d = dout[i];
    const float s = 1.0f / (1.0f + expf(-g));
    dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    dup[i] = d * g * s;
  }
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  swiglu_forward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(out, gate, up, n);
  check_launch(describe("swiglu_forward", {{"n", n}}));
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  swiglu_backward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(dgate, dup, dout, gate, up, n);
  check_launch(describe("swiglu_backward", {{"n", n}}));
}

}  // namespace pg::cuda
