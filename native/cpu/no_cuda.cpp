// Built instead of native/cuda when no CUDA compiler was found: every CUDA entry says why.
#include "patentgpt/runtime.h"

namespace pg {

bool cuda_compiled() { return false; }

std::string cuda_devices(std::vector<CudaDeviceInfo>& devices) {
  devices.clear();
  return "this binary was built without CUDA (no nvcc at build time)";
}

void* cuda_alloc(size_t, std::string& err) {
  err = "this binary was built without CUDA";
  return nullptr;
}

void cuda_free(void*) {}

bool cuda_memcpy(void*, const void*, size_t, int, std::string& err) {
  err = "this binary was built without CUDA";
  return false;
}

bool cuda_memset(void*, int, size_t, std::string& err) {
  err = "this binary was built without CUDA";
  return false;
}

CachingAllocatorStats cuda_memory_stats() { return {}; }

void cuda_release_cached() {}

}  // namespace pg
