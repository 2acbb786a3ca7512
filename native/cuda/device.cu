// CUDA device discovery, memory and copies for the tensor layer, and the process stream every
// launch goes on. The runtime is linked statically and finds the driver at run time, so the same
// binary loads on machines without a GPU.
//
// One stream for the process, unless a thread made another current (set_current_stream: an
// engine's or a trainer's own stream): kernels and copies are ordered on it, and a switch makes
// the new stream wait for the old, so a block the caching allocator hands out again is only
// touched after the work that used it. Host-to-device copies go through pinned staging buffers and return without
// waiting (the host memory is free to change at once); device-to-host copies wait for the stream.
#include <cuda_runtime.h>

#include <cstring>
#include <mutex>

#include "common.cuh"
#include "patentgpt/cuda_index_check.h"
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

// Two pinned buffers used in turn: while one chunk is copied to the device the next is staged.
struct Staging {
  static constexpr size_t kChunk = size_t{4} << 20;
  static constexpr int kSlots = 2;
  std::mutex mutex;
  void* buf[kSlots] = {nullptr, nullptr};
  cudaEvent_t done[kSlots] = {nullptr, nullptr};
  bool ready = false, tried = false;

  // Pinned memory on first use; false (copies go unstaged) when the host cannot pin it.
  bool init() {
    if (tried) return ready;
    tried = true;
    for (int i = 0; i < kSlots; ++i) {
      if (cudaHostAlloc(&buf[i], kChunk, cudaHostAllocDefault) != cudaSuccess ||
          cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming) != cudaSuccess) {
        cudaGetLastError();
        return false;
      }
    }
    ready = true;
    return true;
  }
};

Staging& staging() {
  static auto* s = new Staging();
  return *s;
}

std::string copy_error(const char* what, size_t bytes, cudaError_t status) {
  cudaGetLastError();
  return std::string(what) + " of " + std::to_string(bytes) + " bytes failed: " + cudaGetErrorString(status);
}

bool copy_h2d(void* dst, const void* src, size_t bytes, std::string& err) {
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mutex);
  cudaStream_t stream = cuda::st();
  if (!s.init()) {  // unstaged: the runtime copies from pageable memory before returning
    cudaError_t status = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream);
    if (status == cudaSuccess) status = cudaStreamSynchronize(stream);
    if (status != cudaSuccess) err = copy_error("copy host to device", bytes, status);
    return status == cudaSuccess;
  }
  size_t off = 0;
  for (int slot = 0; off < bytes; slot = (slot + 1) % Staging::kSlots) {
    const size_t len = bytes - off < Staging::kChunk ? bytes - off : Staging::kChunk;
    cudaError_t status = cudaEventSynchronize(s.done[slot]);  // the slot's previous copy is done
    if (status == cudaSuccess) {
      std::memcpy(s.buf[slot], static_cast<const char*>(src) + off, len);
      status = cudaMemcpyAsync(static_cast<char*>(dst) + off, s.buf[slot], len, cudaMemcpyHostToDevice, stream);
    }
    if (status == cudaSuccess) status = cudaEventRecord(s.done[slot], stream);
    if (status != cudaSuccess) {
      err = copy_error("copy host to device", bytes, status);
      return false;
    }
    off += len;
  }
  return true;
}

// A sync point: once the stream is drained, a failed device index check (cuda_index_check.h) of
// an earlier call is reported (and cleared) instead of the copy's success.
bool index_violation(std::string& err) {
  err = cuda::take_index_violation();
  return !err.empty();
}

bool copy_d2h(void* dst, const void* src, size_t bytes, std::string& err) {
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mutex);
  cudaStream_t stream = cuda::st();
  if (!s.init()) {
    cudaError_t status = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream);
    if (status == cudaSuccess) status = cudaStreamSynchronize(stream);
    if (status != cudaSuccess) err = copy_error("copy device to host", bytes, status);
    return status == cudaSuccess && !index_violation(err);
  }
  for (size_t off = 0; off < bytes; off += Staging::kChunk) {
    const size_t len = bytes - off < Staging::kChunk ? bytes - off : Staging::kChunk;
    cudaError_t status =
        cudaMemcpyAsync(s.buf[0], static_cast<const char*>(src) + off, len, cudaMemcpyDeviceToHost, stream);
    if (status == cudaSuccess) status = cudaStreamSynchronize(stream);
    if (status != cudaSuccess) {
      err = copy_error("copy device to host", bytes, status);
      return false;
    }
    std::memcpy(static_cast<char*>(dst) + off, s.buf[0], len);
  }
  return !index_violation(err);
}

}  // namespace

void* cuda_alloc(size_t bytes, std::string& err) { return allocator().allocate(bytes, err); }

void cuda_free(void* ptr) { allocator().deallocate(ptr); }

CachingAllocatorStats cuda_memory_stats() { return allocator().stats(); }

void cuda_release_cached() { allocator().release_cached(); }

bool cuda_memset(void* dst, int value, size_t bytes, std::string& err) {
  cudaError_t status = cudaMemsetAsync(dst, value, bytes, cuda::st());
  if (status != cudaSuccess) {
    err = copy_error("cudaMemsetAsync", bytes, status);
    return false;
  }
  return true;
}

bool cuda_memcpy(void* dst, const void* src, size_t bytes, int kind, std::string& err) {
  if (bytes == 0) return true;
  if (kind == 0) return copy_h2d(dst, src, bytes, err);
  if (kind == 1) return copy_d2h(dst, src, bytes, err);
  cudaError_t status = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::st());
  if (status != cudaSuccess) {
    err = copy_error("copy device to device", bytes, status);
    return false;
  }
  return true;
}

namespace cuda {

void* process_stream() {
  static cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    // Non-blocking: no implicit ordering with the legacy default stream, which nothing here uses.
    if (cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking) != cudaSuccess) {
      cudaGetLastError();
      created = nullptr;  // the legacy default stream: still correct, only serialised
    }
    return created;
  }();
  return s;
}

namespace {
// This thread's current stream (null: the process stream). Thread-local: each JS thread (main or
// worker_thread) that loads the addon runs its own kernels.
thread_local void* g_current = nullptr;
}  // namespace

void* stream() { return g_current ? g_current : process_stream(); }

void set_current_stream(void* s) {
  void* next = s ? s : process_stream();
  void* prev = stream();
  // The caching allocator is not stream-aware: a block freed after work on the old stream may be
  // handed out for work on the new one, so the new stream first waits for the old one's work.
  if (next != prev) stream_wait(next, prev, "set the current CUDA stream");
  g_current = s;
}

void* create_stream() {
  cudaStream_t s = nullptr;
  const cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  if (e != cudaSuccess) throw Error(std::string("create a CUDA stream: ") + cudaGetErrorString(e));
  return s;
}

void destroy_stream(void* s) {
  if (!s) return;
  if (g_current == s) set_current_stream(nullptr);
  // The process stream waits for its work; CUDA frees the stream once that completed.
  stream_wait(process_stream(), s, "release a CUDA stream");
  cudaStreamDestroy(static_cast<cudaStream_t>(s));
}

void* comm_stream() {
  static cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    if (cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking) != cudaSuccess) {
      cudaGetLastError();
      created = nullptr;
    }
    return created;
  }();
  return s;
}

void stream_wait(void* waiter, void* signaller, const char* what) {
  // An event per call: recorded after the signaller's work so far, waited on by the waiter (on the
  // device; the host goes on). Destroying it at once is allowed: CUDA frees it once it completed.
  cudaEvent_t ev = nullptr;
  cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaEventRecord(ev, static_cast<cudaStream_t>(signaller));
  if (e == cudaSuccess) e = cudaStreamWaitEvent(static_cast<cudaStream_t>(waiter), ev, 0);
  if (ev) cudaEventDestroy(ev);
  if (e != cudaSuccess) throw Error(std::string(what) + ": " + cudaGetErrorString(e));
}

void synchronize(const char* what) {
  const cudaError_t e = cudaStreamSynchronize(st());
  if (e != cudaSuccess) throw Error(std::string(what) + ": " + cudaGetErrorString(e));
  const std::string bad = take_index_violation();
  if (!bad.empty()) throw Error(bad, /*bad_argument=*/true);
}

int64_t max_blocks() {
  static int64_t blocks = [] {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      sms = 80;
    }
    return static_cast<int64_t>(sms) * 16;  // 16 blocks of 256 threads per SM: a full wave, a few times over
  }();
  return blocks;
}

void read_back(void* host, const void* device, size_t bytes, const std::string& what) {
  std::string err;
  if (!copy_d2h(host, device, bytes, err)) throw Error(what + ": " + err);
}

IndexCheck::IndexCheck(const std::string& what) : what_(what), scratch_(sizeof(unsigned long long), what) {
  const cudaError_t e = cudaMemsetAsync(flag(), 0xff, sizeof(unsigned long long), st());
  if (e != cudaSuccess) throw Error(what + ": " + cudaGetErrorString(e));
}

int64_t IndexCheck::first_bad() {
  unsigned long long pos = 0;
  read_back(&pos, flag(), sizeof pos, what_);
  return pos == ~0ull ? -1 : static_cast<int64_t>(pos);
}

int32_t IndexCheck::value_at(const int32_t* index, int64_t pos) {
  int32_t v = 0;
  read_back(&v, index + pos, sizeof v, what_);
  return v;
}

}  // namespace cuda

}  // namespace pg
