// Storage: one natively owned buffer (aligned host memory or CUDA device memory) behind a JS
// object. TypeScript tensors hold Storages; every op binding reaches memory only through one.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>

namespace pgnode {

enum class Device : int { CPU = 0, CUDA = 1 };

struct MemoryCounters {
  std::atomic<int64_t> live_bytes[2]{};
  std::atomic<int64_t> live_count[2]{};
  std::atomic<int64_t> peak_bytes[2]{};
};
MemoryCounters& memory_counters();
// Freed host blocks kept for reuse (see HostBlockCache): their bytes, and giving them back.
size_t host_cache_bytes();
void release_host_cache();

class Storage : public Napi::ObjectWrap<Storage> {
 public:
  static Napi::Function Define(Napi::Env env);
  static bool Is(const Napi::Value& value);

  explicit Storage(const Napi::CallbackInfo& info);
  ~Storage() override;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  bool freed() const { return data_ == nullptr && bytes_ != 0; }

 private:
  void Release(bool collected);  // collected: by the GC's finalizer, not free()
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value DeviceName(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);

  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::CPU;
  int64_t reported_ = 0;  // host bytes counted toward the external memory announced to V8 (storage.cpp)
};

}  // namespace pgnode
