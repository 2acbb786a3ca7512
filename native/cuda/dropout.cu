// CUDA twin of native/cpu/dropout.cpp: inverted dropout with the same counter-based mask (element
// i of a call is dropped when the top 24 bits of SplitMix64 output offset + i, seeded with `seed`,
// fall below ceil(p * 2^24)), so a mask drawn on the GPU equals the CPU's bit for bit.
#include "common.cuh"

namespace pg::cuda {

namespace {

__device__ inline uint64_t splitmix64_at(uint64_t seed, uint64_t k) {
  uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

__global__ void __launch_bounds__(kElementwiseThreads) dropout_kernel(float* out, const float* x, int64_t n,
                                                                      uint64_t seed, uint64_t offset,
                                                                      uint32_t threshold, float keep_scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint32_t bits = static_cast<uint32_t>(splitmix64_at(seed, offset + static_cast<uint64_t>(i)) >> 40);
    out[i] = bits < threshold ? 0.0f : x[i] * keep_scale;
  }
}

// ceil(p * 2^24), as the CPU kernel's drop_threshold.
uint32_t drop_threshold(double p) {
  const double t = p * 16777216.0;
  const uint32_t ti = static_cast<uint32_t>(t);
  return static_cast<double>(ti) < t ? ti + 1 : ti;
}

void dropout(const char* name, float* out, const float* x, int64_t n, double p, uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  dropout_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(out, x, n, seed, offset, drop_threshold(p),
                                                                  static_cast<float>(1.0 / (1.0 - p)));
  check_launch(describe(name, {{"n", n}}));
}

}  // namespace

void dropout_forward(float* out, const float* x, int64_t n, double p, uint64_t seed, uint64_t offset) {
  dropout("dropout_forward", out, x, n, p, seed, offset);
}

void dropout_backward(float* dx, const float* dout, int64_t n, double p, uint64_t seed, uint64_t offset) {
  dropout("dropout_backward", dx, dout, n, p, seed, offset);
}

}  // namespace pg::cuda
