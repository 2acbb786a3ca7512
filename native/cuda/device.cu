// CUDA device discovery and memory for the tensor layer. The runtime is linked statically and
// finds the driver at run time, so the same binary loads on machines without a GPU.
#include <cuda_runtime.h>

#include "patentgpt/runtime.h"

namespace pg {

bool cuda_compiled() { return true; }

std::string cuda_devices(std::vector<CudaDeviceInfo>& devices) {
  devices.clear();
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return std::string("no usable CUDA device: ") + cudaGetErrorString(status);
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    devices.push_back({i, prop.name, prop.major, prop.minor, static_cast<uint64_t>(prop.totalGlobalMem)});
  }
  if (devices.empty()) return "the CUDA driver reports no devices";
  return "";
}

namespace {

struct CudaBackend {
  void* raw_alloc(size_t bytes, std::string& err) {
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, bytes);
    if (status != cudaSuccess) {
      cudaGetLastError();  // an out-of-memory error is not sticky; clear it for the retry
      err = std::string("cudaMalloc: ") + cudaGetErrorString(status);
      return nullptr;
    }
    return ptr;
  }
  void raw_free(void* ptr) { cudaFree(ptr); }
};

CachingAllocator<CudaBackend>& allocator() {
  // Never destroyed: storages may be freed by finalizers at exit, after static destructors.
  static auto* a = new CachingAllocator<CudaBackend>();
  return *a;
}

}  // namespace

void* cuda_alloc(size_t bytes, std::string& err) { return allocator().allocate(bytes, err); }

void cuda_free(void* ptr) { allocator().deallocate(ptr); }

CachingAllocatorStats cuda_memory_stats() { return allocator().stats(); }

void cuda_release_cached() { allocator().release_cached(); }

bool cuda_memset(void* dst, int value, size_t bytes, std::string& err) {
  cudaError_t status = cudaMemset(dst, value, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    err = std::string("cudaMemset failed: ") + cudaGetErrorString(status);
    return false;
  }
  return true;
}

bool cuda_memcpy(void* dst, const void* src, size_t bytes, int kind, std::string& err) {
  static const cudaMemcpyKind kinds[] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                         cudaMemcpyDeviceToDevice};
  cudaError_t status = cudaMemcpy(dst, src, bytes, kinds[kind]);
  if (status != cudaSuccess) {
    cudaGetLastError();
    err = std::string("cudaMemcpy failed: ") + cudaGetErrorString(status);
    return false;
  }
  return true;
}

}  // namespace pg
