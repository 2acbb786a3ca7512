// Storage: allocation, release and host<->device copies of one buffer.
#include "storage.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "args.h"
#include "patentgpt/runtime.h"

namespace pgnode {

namespace {

constexpr size_t kAlignment = 64;  // a cache line; also the widest SIMD load

struct AddonData {
  Napi::FunctionReference storage_ctor;
  // External memory announced to this isolate's V8: the high-water mark of the host bytes of
  // live storages, lowered only by what the GC frees. A training step allocates and frees
  // hundreds of MB of activations explicitly (scopes, dispose); announcing each change made V8
  // start a full collection nearly every step, for memory no collection could free (about 70
  // mark-compacts in a 4-rollout PPO run, ~5% of its time). Tensors left to the GC still raise
  // the mark once live bytes pass it, so forgotten tensors are still collected, at worst once
  // the process holds as much as it ever did.
  int64_t live = 0;
  int64_t announced = 0;
};

// Counts `bytes` of host storage made (> 0) or freed (< 0) in env, `collected` when the GC freed
// it, and tells V8 when the announced amount moves (see AddonData).
void CountExternal(Napi::Env env, int64_t bytes, bool collected) {
  auto* data = env.GetInstanceData<AddonData>();
  if (data == nullptr) return;  // the environment is being torn down
  data->live += bytes;
  int64_t next = data->announced;
  if (data->live > next) next = data->live;
  else if (collected) next += bytes;
  if (next == data->announced) return;
  Napi::MemoryManagement::AdjustExternalMemory(env, next - data->announced);
  data->announced = next;
}

int DeviceIndex(Device d) { return static_cast<int>(d); }

// Host memory for a storage. Blocks of 2 MiB and more start on a 2 MiB boundary and are asked
// to be backed by transparent huge pages (where the kernel leaves that to madvise), all but
// their last partial 2 MiB: streaming a model's weights then walks 512x fewer pages. A plain
// read of 340 MB went from ~35 to ~50-70 GB/s on a Zen 4 VM (4 KiB pages stop the hardware
// prefetcher at every page boundary, and each TLB miss is a nested page walk there).
void* HostAlloc(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  if (bytes < kHuge) return std::aligned_alloc(kAlignment, bytes);
  void* p = nullptr;
  if (posix_memalign(&p, kHuge, bytes) != 0) return nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, bytes / kHuge * kHuge, MADV_HUGEPAGE);  // advice only: without it, plain pages
#endif
  return p;
}

// Freed host blocks of at least kMinCached bytes wait here, by size class, for the next request
// of the same class. A training step asks for the same sizes every step; without this, glibc
// serves big blocks with fresh mmaps (or trims the freed heap), so every step page-faulted and
// the kernel zeroed its activations anew. Sizes round up to an eighth of their power of two
// (at most 12.5% more), so nearby sizes share blocks. At most kMaxCached bytes wait; beyond
// that a freed block goes back to the system.
class HostBlockCache {
 public:
  static constexpr size_t kMinCached = size_t(1) << 16;
  static constexpr size_t kMaxCached = size_t(2) << 30;

  // The size actually allocated for `bytes`: a multiple of kAlignment, rounded to its class.
  static size_t rounded(size_t bytes) {
    size_t alloc = bytes == 0 ? kAlignment : (bytes + kAlignment - 1) / kAlignment * kAlignment;
    if (alloc < kMinCached) return alloc;
    size_t step = size_t(1) << (63 - __builtin_clzll(alloc));  // power of two <= alloc
    step /= 8;
    return (alloc + step - 1) / step * step;
  }

  void* take(size_t alloc) {
    if (alloc < kMinCached) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(alloc);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= alloc;
    return p;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  // Returns every cached block to the system (an allocation failed, or the user asked).
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    cached_ = 0;
  }

  // Keeps p for reuse, or frees it when it is small or the cache is full.
  void give(void* p, size_t alloc) {
    if (alloc >= kMinCached) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + alloc <= kMaxCached) {
        free_[alloc].push_back(p);
        cached_ += alloc;
        return;
      }
    }
    std::free(p);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

HostBlockCache& host_cache() {
  static HostBlockCache* cache = new HostBlockCache();  // never destroyed: frees may come at exit
  return *cache;
}

}  // namespace

size_t host_cache_bytes() { return host_cache().cached(); }
void release_host_cache() { host_cache().clear(); }

MemoryCounters& memory_counters() {
  static MemoryCounters counters;
  return counters;
}

// The class's declarations (signature.h). Its bodies check their own arguments (they predate
// Args and throw TypeError/RangeError with E_NATIVE_ARG); the fuzz test holds them to these.
const Decl kStorageDecls[] = {
    {DeclKind::Constructor, "Storage", "Storage", "bytes: number, device?: 'cpu' | 'cuda', zero?: boolean",
     "NativeStorage"},
    {DeclKind::Method, "Storage.free", "Storage.free", "", "void"},
    {DeclKind::Method, "Storage.read", "Storage.read", "into: ArrayBufferView, byteOffset: number", "void"},
    {DeclKind::Method, "Storage.write", "Storage.write", "from: ArrayBufferView, byteOffset: number", "void"},
    {DeclKind::Method, "Storage.copyFrom", "Storage.copyFrom",
     "src: Storage, dstByteOffset: number, srcByteOffset: number, bytes: number", "void"},
    {DeclKind::Getter, "Storage.bytes", "Storage.bytes", "", "number"},
    {DeclKind::Getter, "Storage.device", "Storage.device", "", "'cpu' | 'cuda'"},
    {DeclKind::Getter, "Storage.disposed", "Storage.disposed", "", "boolean"},
};

Napi::Function Storage::Define(Napi::Env env) {
  for (const Decl& d : kStorageDecls) Declare(d);
  Napi::Function ctor = DefineClass(env, "Storage",
      {InstanceMethod("free", &Storage::Free),
       InstanceMethod("read", &Storage::Read),
       InstanceMethod("write", &Storage::Write),
       InstanceMethod("copyFrom", &Storage::CopyFrom),
       InstanceAccessor("bytes", &Storage::Bytes, nullptr),
       InstanceAccessor("device", &Storage::DeviceName, nullptr),
       InstanceAccessor("disposed", &Storage::Disposed, nullptr)});
  auto* data = new AddonData();
  data->storage_ctor = Napi::Persistent(ctor);
  env.SetInstanceData(data);
  return ctor;
}

bool Storage::Is(const Napi::Value& value) {
  if (!value.IsObject()) return false;
  auto* data = value.Env().GetInstanceData<AddonData>();
  return data && value.As<Napi::Object>().InstanceOf(data->storage_ctor.Value());
}

// new Storage(bytes, device = 'cpu', zero = true)
Storage::Storage(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Storage>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw CodedError<Napi::TypeError>(env, kErrArg, "Storage: byte size must be a number");
  double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 0) || requested > 1.0e15 || requested != static_cast<double>(static_cast<size_t>(requested)))
    throw CodedError<Napi::RangeError>(env, kErrArg, "Storage: invalid byte size " + std::to_string(requested));
  std::string device = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "cpu";
  bool zero = info.Length() > 2 ? info[2].ToBoolean().Value() : true;
  bytes_ = static_cast<size_t>(requested);
  size_t alloc = bytes_ == 0 ? kAlignment : (bytes_ + kAlignment - 1) / kAlignment * kAlignment;
  if (device == "cpu") {
    device_ = Device::CPU;
    alloc = HostBlockCache::rounded(bytes_);
    data_ = host_cache().take(alloc);
    if (!data_) data_ = HostAlloc(alloc);
    if (!data_) {
      host_cache().clear();
      data_ = HostAlloc(alloc);
    }
    if (!data_) throw CodedError(env, kErrOom, "Storage: out of host memory allocating " + std::to_string(bytes_) + " bytes");
    if (zero) std::memset(data_, 0, alloc);
  } else if (device == "cuda") {
    device_ = Device::CUDA;
    std::string err;
    data_ = pg::cuda_alloc(alloc, err);
    if (!data_) throw CodedError(env, DeviceErrorCode(err), "Storage: " + err);
    if (zero && !pg::cuda_memset(data_, 0, alloc, err)) {
      pg::cuda_free(data_);
      data_ = nullptr;
      throw CodedError(env, kErrDevice, "Storage: zeroing " + std::to_string(alloc) + " bytes of device memory: " + err);
    }
  } else {
    throw CodedError<Napi::TypeError>(env, kErrArg, "Storage: unknown device '" + device + "' (expected cpu or cuda)");
  }
  auto& c = memory_counters();
  int d = DeviceIndex(device_);
  int64_t live = c.live_bytes[d].fetch_add(static_cast<int64_t>(bytes_)) + static_cast<int64_t>(bytes_);
  c.live_count[d].fetch_add(1);
  int64_t peak = c.peak_bytes[d].load();
  while (live > peak && !c.peak_bytes[d].compare_exchange_weak(peak, live)) {}
  if (device_ == Device::CPU) {
    reported_ = static_cast<int64_t>(bytes_);
    CountExternal(env, reported_, false);
  }
}

Storage::~Storage() { Release(true); }

void Storage::Release(bool collected) {
  if (!data_) return;
  if (device_ == Device::CPU) host_cache().give(data_, HostBlockCache::rounded(bytes_));
  else pg::cuda_free(data_);
  data_ = nullptr;
  auto& c = memory_counters();
  c.live_bytes[DeviceIndex(device_)].fetch_sub(static_cast<int64_t>(bytes_));
  c.live_count[DeviceIndex(device_)].fetch_sub(1);
  if (reported_ != 0) {
    // Called from free() with an env, or from the GC finalizer, where the env is still valid.
    CountExternal(Env(), -reported_, collected);
    reported_ = 0;
  }
}

Napi::Value Storage::Free(const Napi::CallbackInfo& info) {
  Release(false);
  return info.Env().Undefined();
}

Napi::Value Storage::Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
}

Napi::Value Storage::DeviceName(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), device_ == Device::CPU ? "cpu" : "cuda");
}

Napi::Value Storage::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), freed());
}

namespace {

// Checks [byte_offset, byte_offset + length) against a storage and a typed array.
void CheckRange(Napi::Env env, const char* op, const Storage* s, double byte_offset, size_t length) {
  if (s->freed()) throw CodedError(env, kErrDisposed, std::string(op) + ": storage was already disposed");
  if (!(byte_offset >= 0) || byte_offset != static_cast<double>(static_cast<size_t>(byte_offset)) ||
      static_cast<size_t>(byte_offset) > s->bytes() || length > s->bytes() - static_cast<size_t>(byte_offset))
    throw CodedError<Napi::RangeError>(env, kErrArg, std::string(op) + ": range of " + std::to_string(length) + " bytes at offset " +
                                         std::to_string(byte_offset) + " is outside the storage of " +
                                         std::to_string(s->bytes()) + " bytes");
}

Napi::TypedArray TypedArg(const Napi::CallbackInfo& info, const char* op) {
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber())
    throw CodedError<Napi::TypeError>(info.Env(), kErrArg, std::string(op) + "(typedArray, byteOffset) expected");
  return info[0].As<Napi::TypedArray>();
}

void Transfer(Napi::Env env, const char* op, Storage* s, size_t offset, void* host, size_t length, bool to_host) {
  if (length == 0) return;
  char* dev = static_cast<char*>(s->data()) + offset;
  if (s->device() == Device::CPU) {
    if (to_host) std::memcpy(host, dev, length);
    else std::memcpy(dev, host, length);
    return;
  }
  std::string err;
  bool ok = to_host ? pg::cuda_memcpy(host, dev, length, 1, err) : pg::cuda_memcpy(dev, host, length, 0, err);
  if (!ok) throw CodedError(env, DeviceErrorCode(err), std::string(op) + ": " + err);
}

}  // namespace

// storage.read(typedArray, byteOffset): copies typedArray.byteLength bytes out of the storage.
Napi::Value Storage::Read(const Napi::CallbackInfo& info) {
  Napi::TypedArray arr = TypedArg(info, "Storage.read");
  double offset = info[1].As<Napi::Number>().DoubleValue();
  size_t length = arr.ByteLength();
  CheckRange(info.Env(), "Storage.read", this, offset, length);
  char* host = static_cast<char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  Transfer(info.Env(), "Storage.read", this, static_cast<size_t>(offset), host, length, true);
  return info.Env().Undefined();
}

// storage.write(typedArray, byteOffset): copies the typed array's bytes into the storage.
Napi::Value Storage::Write(const Napi::CallbackInfo& info) {
  Napi::TypedArray arr = TypedArg(info, "Storage.write");
  double offset = info[1].As<Napi::Number>().DoubleValue();
  size_t length = arr.ByteLength();
  CheckRange(info.Env(), "Storage.write", this, offset, length);
  char* host = static_cast<char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  Transfer(info.Env(), "Storage.write", this, static_cast<size_t>(offset), host, length, false);
  return info.Env().Undefined();
}

// dst.copyFrom(src, dstByteOffset, srcByteOffset, bytes): any device to any device.
Napi::Value Storage::CopyFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 4 || !Storage::Is(info[0]) || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber())
    throw CodedError<Napi::TypeError>(env, kErrArg, "Storage.copyFrom(src, dstByteOffset, srcByteOffset, bytes) expected");
  Storage* src = Storage::Unwrap(info[0].As<Napi::Object>());
  double dst_off = info[1].As<Napi::Number>().DoubleValue();
  double src_off = info[2].As<Napi::Number>().DoubleValue();
  double bytes = info[3].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0) || bytes != static_cast<double>(static_cast<size_t>(bytes)))
    throw CodedError<Napi::RangeError>(env, kErrArg, "Storage.copyFrom: invalid byte count");
  size_t n = static_cast<size_t>(bytes);
  CheckRange(env, "Storage.copyFrom (destination)", this, dst_off, n);
  CheckRange(env, "Storage.copyFrom (source)", src, src_off, n);
  if (n == 0) return env.Undefined();
  char* d = static_cast<char*>(data_) + static_cast<size_t>(dst_off);
  const char* s = static_cast<const char*>(src->data()) + static_cast<size_t>(src_off);
  if (device_ == Device::CPU && src->device() == Device::CPU) {
    std::memmove(d, s, n);
    return env.Undefined();
  }
  int kind = device_ == Device::CUDA ? (src->device() == Device::CUDA ? 2 : 0) : 1;
  std::string err;
  if (!pg::cuda_memcpy(d, s, n, kind, err)) throw CodedError(env, DeviceErrorCode(err), "Storage.copyFrom: " + err);
  return env.Undefined();
}

}  // namespace pgnode
