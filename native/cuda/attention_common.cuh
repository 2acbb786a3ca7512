// Helpers of the attention, paged-attention and MoE kernels (attention.cu, paged_attention.cu,
// moe.cu) beyond the shared ones in common.cuh (stream, launch checks, reductions, scratch).
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "common.cuh"

namespace pg::cuda {

// Lets `kernel` take `bytes` of dynamic shared memory (above the default 48 KB it must opt in);
// throws Error naming `what` when the device cannot give that much.
template <typename K>
void allow_smem(K kernel, size_t bytes, const std::string& what) {
  if (bytes <= 48 * 1024) return;
  const cudaError_t status =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (status == cudaSuccess) return;
  cudaGetLastError();
  throw Error(what + ": " + std::to_string(bytes) + " bytes of shared memory per block: " + cudaGetErrorString(status));
}

// The current device's multiprocessors, read once (0 when it cannot be read: plans then assume one).
inline int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return v;
  }();
  return n;
}

}  // namespace pg::cuda
