// The device side of dynamic loss scaling (host logic: cuda_loss_scale.h): gradients unscaled by
// 1/scale into f32, and one device flag raised when any of them is inf or NaN. The flag is only
// ever raised, never cleared by a kernel, so every gradient tensor of a step goes into the same
// flag without a host sync; the trainer reads it back once per step (read_found_inf).
#include <cuda_runtime.h>

#include <cmath>

#include "common.cuh"
#include "half16.cuh"

namespace pg::cuda {

namespace {

// G: the gradient type (float, __nv_bfloat16, __half); out may be grad when G is float.
template <typename G>
__global__ void __launch_bounds__(kElementwiseThreads) unscale_check_kernel(float* out, const G* grad, int64_t n,
                                                                            float inv_scale, int32_t* found_inf) {
  bool bad = false;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = to_f32(grad[i]);
    bad |= !isfinite(g);
    out[i] = g * inv_scale;
  }
  if (bad) *found_inf = 1;  // every writer stores the same value: no atomic needed
}

template <typename G>
void launch(float* out, const G* grad, int64_t n, float inv_scale, int32_t* found_inf, const char* op) {
  if (n <= 0) return;
  unscale_check_kernel<G><<<blocks_for(n), kElementwiseThreads, 0, st()>>>(out, grad, n, inv_scale, found_inf);
  check_launch(describe(op, {{"n", n}}));
}

}  // namespace

void unscale_check(float* out, const float* grad, int64_t n, float inv_scale, int32_t* found_inf) {
  launch(out, grad, n, inv_scale, found_inf, "unscale_check");
}

void unscale_check_16(Half16 dtype, float* out, const uint16_t* grad, int64_t n, float inv_scale,
                      int32_t* found_inf) {
  if (dtype == Half16::BF16) launch(out, as<__nv_bfloat16>(grad), n, inv_scale, found_inf, "unscale_check (bf16)");
  else launch(out, as<__half>(grad), n, inv_scale, found_inf, "unscale_check (fp16)");
}

void clear_found_inf(int32_t* found_inf) {
  const cudaError_t e = cudaMemsetAsync(found_inf, 0, sizeof(int32_t), st());
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(std::string("clear_found_inf: ") + cudaGetErrorString(e));
  }
}

bool read_found_inf(const int32_t* found_inf) {
  int32_t v = 0;
  read_back(&v, found_inf, sizeof v, "read_found_inf");
  return v != 0;
}

}  // namespace pg::cuda
