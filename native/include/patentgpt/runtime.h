// Process-wide runtime: the persistent thread pool, SIMD detection and device discovery.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "patentgpt/caching_allocator.h"

namespace pg {

enum class SimdLevel { Scalar = 0, AVX2 = 1, AVX512 = 2 };
SimdLevel simd_level();              // best level this CPU supports and this build compiled
const char* simd_level_name(SimdLevel level);
void force_simd_level(SimdLevel level);  // for tests and benches: cap the dispatch level

int num_threads();
// n <= 0 means one per hardware thread. Reserves each new worker's kernel workspace
// (workspace.h) first; when that fails the pool keeps its previous size and the reason (out of
// memory) is returned, else an empty string.
std::string set_num_threads(int n);

// Runs fn(begin, end) over [0, n) split into contiguous chunks of at least `grain` items,
// on the pool's workers and the calling thread; returns when all are done. Nested calls run
// serially on the caller. fn must not throw.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Index of the calling pool thread in [0, num_threads()), 0 for the caller.
int thread_index();

// If the calling thread runs on `cpu`, moves it to another CPU it may run on and keeps its
// affinity as it was (what a pool worker woken beside the job's caller does); no-op elsewhere.
void leave_cpu(int cpu);
// How many times a parallel job's caller has yielded its CPU after posting the job to parked
// workers (one may have been woken onto the caller's CPU) or to one that waited on its CPU while
// another CPU was idle (it steps off); for tests.
int64_t caller_yields();

// CUDA, when compiled in (native/cuda); otherwise a stub that says why there is none.
struct CudaDeviceInfo {
  int index;
  std::string name;
  int sm_major, sm_minor;
  uint64_t total_memory;
};
bool cuda_compiled();
// Fills devices; returns an empty string or the reason no device is usable.
std::string cuda_devices(std::vector<CudaDeviceInfo>& devices);
// Device memory through the caching allocator (caching_allocator.h): freed blocks are kept for
// reuse, so steady-state steps make no cudaMalloc/cudaFree. cuda_alloc returns nullptr and sets
// err on failure. Copies and fills are synchronous; each returns false and sets err on failure.
void* cuda_alloc(size_t bytes, std::string& err);
void cuda_free(void* ptr);
bool cuda_memcpy(void* dst, const void* src, size_t bytes, int kind /*0 h2d, 1 d2h, 2 d2d*/, std::string& err);
bool cuda_memset(void* dst, int value, size_t bytes, std::string& err);
CachingAllocatorStats cuda_memory_stats();  // all zero without CUDA
void cuda_release_cached();                 // gives cached device blocks back to the driver

}  // namespace pg
