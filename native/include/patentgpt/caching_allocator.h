// A caching allocator for device memory, in the manner of PyTorch's CUDA allocator (simplified):
// freed blocks wait in free lists by size class for the next request of that class, so a
// training step or a decode step does not call cudaMalloc/cudaFree (each a device-wide
// synchronisation) after the first. When the device is out of memory, every cached block is
// given back and the allocation retried once.
//
// The bookkeeping is plain host code over a Backend (raw_alloc/raw_free), so it is tested on any
// machine with a host backend (native/test/test_caching_allocator.cpp); native/cuda/device.cu
// instantiates it over cudaMalloc/cudaFree.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace pg {

struct CachingAllocatorStats {
  uint64_t allocated_bytes = 0;  // handed out and not yet freed (rounded sizes)
  uint64_t cached_bytes = 0;     // freed, waiting for reuse
  uint64_t reserved_bytes = 0;   // allocated + cached: what the backend holds for us
  uint64_t peak_reserved_bytes = 0;
  uint64_t backend_allocs = 0;   // raw_alloc calls that succeeded
  uint64_t backend_frees = 0;
  uint64_t cache_hits = 0;
  uint64_t oom_retries = 0;      // times the cache was emptied to retry a failed raw_alloc
};

// Backend: `void* raw_alloc(size_t bytes, std::string& err)` (nullptr + err on failure) and
// `void raw_free(void* p)`.
template <class Backend>
class CachingAllocator {
 public:
  static constexpr size_t kMinBlock = 512;          // device allocations are 256-byte aligned; a class floor
  static constexpr size_t kMaxCached = size_t(1) << 40;  // no cap by default: the GPU is ours

  explicit CachingAllocator(Backend backend = Backend()) : backend_(std::move(backend)) {}
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  ~CachingAllocator() { release_cached(); }

  // The size class of a request: a multiple of 512 bytes below 1 MiB, above that rounded up to
  // an eighth of its power of two (at most 12.5% more), so nearby sizes share blocks.
  static size_t rounded(size_t bytes) {
    size_t alloc = bytes == 0 ? kMinBlock : (bytes + kMinBlock - 1) / kMinBlock * kMinBlock;
    if (alloc < (size_t(1) << 20)) return alloc;
    size_t step = (size_t(1) << (63 - __builtin_clzll(alloc))) / 8;
    return (alloc + step - 1) / step * step;
  }

  // A block of at least `bytes`, or nullptr with err set (the message names the size and what
  // the allocator holds, so an out-of-memory error says how much was cached and in use).
  void* allocate(size_t bytes, std::string& err) {
    const size_t alloc = rounded(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(alloc);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      stats_.cached_bytes -= alloc;
      stats_.allocated_bytes += alloc;
      stats_.cache_hits++;
      live_[p] = alloc;
      return p;
    }
    std::string first_err;
    void* p = backend_.raw_alloc(alloc, first_err);
    if (!p && stats_.cached_bytes > 0) {
      stats_.oom_retries++;
      release_cached_locked();
      p = backend_.raw_alloc(alloc, err);
    } else if (!p) {
      err = first_err;
    }
    if (!p) {
      err = "could not allocate " + std::to_string(bytes) + " bytes of device memory (" + err + "; " +
            std::to_string(stats_.allocated_bytes) + " bytes in use)";
      return nullptr;
    }
    stats_.backend_allocs++;
    stats_.allocated_bytes += alloc;
    stats_.reserved_bytes += alloc;
    if (stats_.reserved_bytes > stats_.peak_reserved_bytes) stats_.peak_reserved_bytes = stats_.reserved_bytes;
    live_[p] = alloc;
    return p;
  }

  // Returns p to its size class's free list; false when p is not a live block of this allocator.
  bool deallocate(void* p) {
    if (!p) return true;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return false;
    const size_t alloc = it->second;
    live_.erase(it);
    stats_.allocated_bytes -= alloc;
    if (stats_.cached_bytes + alloc > max_cached_) {
      backend_.raw_free(p);
      stats_.backend_frees++;
      stats_.reserved_bytes -= alloc;
      return true;
    }
    free_[alloc].push_back(p);
    stats_.cached_bytes += alloc;
    return true;
  }

  // Gives every cached block back to the backend (memory other processes or libraries may want).
  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked();
  }

  void set_max_cached(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    max_cached_ = bytes;
  }

  CachingAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_reserved_bytes = stats_.reserved_bytes;
  }

  Backend& backend() { return backend_; }

 private:
  void release_cached_locked() {
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) {
        backend_.raw_free(p);
        stats_.backend_frees++;
        stats_.reserved_bytes -= size;
      }
    }
    free_.clear();
    stats_.cached_bytes = 0;
  }

  Backend backend_;
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> live_;
  CachingAllocatorStats stats_;
  size_t max_cached_ = kMaxCached;
};

}  // namespace pg
