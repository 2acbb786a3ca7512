// The emulated build's stand-in for native/cuda/common.cuh (scripts/cuda-emulate.sh): the same
// names, on the host (no stream, launch errors cannot happen, scratch from calloc).
#pragma once
#include <cuda_runtime.h>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include "patentgpt/cuda_host.h"
#include "patentgpt/cuda_ops.h"
#include "patentgpt/runtime.h"
namespace pg::cuda {
using cuda_host::kElementwiseThreads;
using cuda_host::kRowThreads;
inline cudaStream_t st() { return nullptr; }
inline std::string describe(const char* op, std::initializer_list<std::pair<const char*, int64_t>> sizes) {
  std::string s = op;
  s += " (";
  for (const auto& kv : sizes) s += std::string(kv.first) + "=" + std::to_string(kv.second) + " ";
  return s + ")";
}
inline void check_launch(const std::string&) {}
inline void read_back(void* host, const void* device, size_t bytes, const std::string&) {
  std::memcpy(host, device, bytes);
}
inline unsigned blocks_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : b > 64 ? 64 : b);  // few blocks: grid-stride loops do the rest
}
class Scratch {
 public:
  Scratch(size_t bytes, const std::string&) { ptr_ = bytes ? std::calloc(bytes, 1) : nullptr; }
  ~Scratch() { std::free(ptr_); }
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }
 private:
  void* ptr_ = nullptr;
};
template <typename T>
inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <typename T>
inline T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : T(0);
  return warp_sum(v);
}
}  // namespace pg::cuda
