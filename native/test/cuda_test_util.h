// Shared helpers of the CUDA kernel tests (test_cuda_*.cpp): skip without a GPU, device copies of
// host vectors freed with the test's pool, copies back, and CHECK_CLOSE against device values.
// Include after check.h and patentgpt/cuda_ops.h, inside PG_WITH_CUDA.
#pragma once
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "patentgpt/cuda_ops.h"
#include "patentgpt/runtime.h"

namespace pgtest {

// Whether a CUDA device is present; says why not once per process.
inline bool gpu() {
  static int state = -1;
  if (state < 0) {
    std::vector<pg::CudaDeviceInfo> devices;
    const std::string why = pg::cuda_devices(devices);
    state = devices.empty() ? 0 : 1;
    if (!state) std::printf("skip: no CUDA device (%s)\n", why.c_str());
  }
  return state == 1;
}

// Device copies of host vectors, freed when the test's pool goes (early CHECK returns included).
struct Pool {
  std::vector<void*> live;
  Pool() = default;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() {
    for (void* p : live) pg::cuda_free(p);
  }
  template <typename T>
  T* up(const std::vector<T>& h) {
    std::string err;
    // 16 spare bytes: kernels with vector reads may touch just past the end of a tail.
    void* d = pg::cuda_alloc(h.size() * sizeof(T) + 16, err);
    if (!d) throw std::runtime_error(err);
    live.push_back(d);
    if (!h.empty() && !pg::cuda_memcpy(d, h.data(), h.size() * sizeof(T), 0, err)) throw std::runtime_error(err);
    return static_cast<T*>(d);
  }
  template <typename T>
  T* zeros(size_t n) {
    return up(std::vector<T>(n));
  }
};

// One fused-attention case of the CUDA attention tests: heads, kv heads, head dim, the packed
// sequences' cumulative lengths, causal or not.
struct AttnCase {
  int64_t H, Hkv, D;
  std::vector<int32_t> cu;
  bool causal;
};

// n device values copied back to the host.
template <typename T>
std::vector<T> down(const T* d, size_t n) {
  std::vector<T> h(n);
  std::string err;
  if (n && !pg::cuda_memcpy(h.data(), d, n * sizeof(T), 1, err)) throw std::runtime_error(err);
  return h;
}

}  // namespace pgtest

#define NEED_GPU() \
  if (!pgtest::gpu()) return

// CHECK_CLOSE of n device values (copied back once) against the host's.
#define CHECK_DEVICE(dptr, n, want, atol, rtol)     \
  do {                                              \
    const auto got_ = pgtest::down(dptr, n);        \
    CHECK_CLOSE(got_, want, n, atol, rtol);         \
  } while (0)
