// Shared by the CUDA op families (native/cuda/<family>.cu): the process stream, launch checks
// that throw cuda::Error naming the op and its sizes, scratch from the caching allocator, the
// device-side index check, and block reductions. Launch shapes come from cuda_host.h (plain C++,
// tested on CPU); every kernel states its block size in __launch_bounds__, which
// scripts/ptxas-check.mjs holds the ptxas resource report against.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "patentgpt/cuda_ops.h"
#include "patentgpt/cuda_host.h"
#include "patentgpt/runtime.h"

namespace pg::cuda {

using cuda_host::kElementwiseThreads;
using cuda_host::kRowThreads;

inline cudaStream_t st() { return static_cast<cudaStream_t>(stream()); }

// "op (N=4, C=8)": how errors name a launch.
inline std::string describe(const char* op, std::initializer_list<std::pair<const char*, int64_t>> sizes) {
  std::string s = op;
  s += " (";
  bool first = true;
  for (const auto& kv : sizes) {
    s += (first ? "" : ", ") + std::string(kv.first) + "=" + std::to_string(kv.second);
    first = false;
  }
  return s + ")";
}

// Throws Error when the last launch (or an earlier asynchronous failure) left an error.
inline void check_launch(const std::string& what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(what + ": " + cudaGetErrorString(e));
}

// Grid-stride blocks for n items: a few waves of the device at most (cuda_host::grid_1d).
int64_t max_blocks();
inline unsigned blocks_for(int64_t n, int threads = kElementwiseThreads) {
  return static_cast<unsigned>(cuda_host::grid_1d(n, threads, max_blocks()));
}

// Device scratch from the caching allocator, freed (to its cache) when it goes out of scope;
// throws Error (with "out of memory" in it when that is why) naming `what`.
class Scratch {
 public:
  Scratch(size_t bytes, const std::string& what) {
    if (bytes == 0) return;
    std::string err;
    ptr_ = cuda_alloc(bytes, err);
    if (!ptr_) throw Error(what + ": scratch of " + std::to_string(bytes) + " bytes: " + err);
  }
  ~Scratch() {
    if (ptr_) cuda_free(ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

// Copies `bytes` from the device to the host after the stream's work, throwing Error on failure.
void read_back(void* host, const void* device, size_t bytes, const std::string& what);

// The first position of an index out of range, found by the kernel: kernels atomicMin the
// position into flag(); first_bad() reads it back (a sync) and returns -1 when all were in range.
class IndexCheck {
 public:
  explicit IndexCheck(const std::string& what);
  unsigned long long* flag() const { return scratch_.as<unsigned long long>(); }
  int64_t first_bad();
  // Reads index[pos] back for the message.
  int32_t value_at(const int32_t* index, int64_t pos);

 private:
  std::string what_;
  Scratch scratch_;
};

__device__ inline void report_bad(unsigned long long* flag, int64_t pos) {
  atomicMin(flag, static_cast<unsigned long long>(pos));
}

// ---- reductions over a block of kRowThreads (or any multiple of 32 up to 1024) ----
template <typename T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// The sum over the block, returned to every thread. `shared` holds 32 values.
template <typename T>
__device__ inline T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // shared may still be read by a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : T(0);
  return warp_sum(v);
}
// The maximum over the block (NaN-free inputs; fmaxf drops NaN), returned to every thread.
__device__ inline float block_max(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace pg::cuda
