// Runtime bindings: build and machine info, thread count, SIMD cap, memory counters.
#include <vector>

#include "args.h"
#include "patentgpt/runtime.h"
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_ops.h"
#endif
#include "patentgpt/workspace.h"

namespace pgnode {

namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("simd", pg::simd_level_name(pg::simd_level()));
  out.Set("threads", pg::num_threads());
  out.Set("cudaCompiled", pg::cuda_compiled());
  std::vector<pg::CudaDeviceInfo> devices;
  std::string why = pg::cuda_devices(devices);
  Napi::Array gpus = Napi::Array::New(env, devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    Napi::Object g = Napi::Object::New(env);
    g.Set("index", devices[i].index);
    g.Set("name", devices[i].name);
    g.Set("computeCapability", std::to_string(devices[i].sm_major) + "." + std::to_string(devices[i].sm_minor));
    g.Set("totalMemory", static_cast<double>(devices[i].total_memory));
    gpus.Set(static_cast<uint32_t>(i), g);
  }
  out.Set("gpus", gpus);
  out.Set("cudaStatus", why.empty() ? Napi::Value(env.Null()) : Napi::String::New(env, why));
#if defined(__VERSION__)
  out.Set("compiler", __VERSION__);
#endif
  return out;
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Args a(info, "setNumThreads", 1);
  int64_t n = a.Int(0, "n");
  if (n > 1024) a.Fail("n must be at most 1024");
  // Each new worker's kernel workspace is reserved first; without memory for it the pool keeps
  // its size and this throws.
  const std::string err = pg::set_num_threads(static_cast<int>(n));
  if (!err.empty()) a.Fail(kErrOom, err);
  return Napi::Number::New(info.Env(), pg::num_threads());
}

Napi::Value SetSimdLevel(const Napi::CallbackInfo& info) {
  Args a(info, "setSimdLevel", 1);
  if (!info[0].IsString()) a.Fail("level must be 'avx512', 'avx2' or 'scalar'");
  std::string level = info[0].As<Napi::String>().Utf8Value();
  if (level == "avx512") pg::force_simd_level(pg::SimdLevel::AVX512);
  else if (level == "avx2") pg::force_simd_level(pg::SimdLevel::AVX2);
  else if (level == "scalar") pg::force_simd_level(pg::SimdLevel::Scalar);
  else a.Fail("level must be 'avx512', 'avx2' or 'scalar', got '" + level + "'");
  return Napi::String::New(info.Env(), pg::simd_level_name(pg::simd_level()));
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& c = memory_counters();
  Napi::Object out = Napi::Object::New(env);
  const char* names[2] = {"cpu", "cuda"};
  const pg::CachingAllocatorStats cuda = pg::cuda_memory_stats();
  for (int d = 0; d < 2; ++d) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("liveBytes", static_cast<double>(c.live_bytes[d].load()));
    o.Set("liveCount", static_cast<double>(c.live_count[d].load()));
    o.Set("peakBytes", static_cast<double>(c.peak_bytes[d].load()));
    o.Set("cachedBytes", static_cast<double>(d == 0 ? host_cache_bytes() : cuda.cached_bytes));
    if (d == 1) {
      o.Set("reservedBytes", static_cast<double>(cuda.reserved_bytes));
      o.Set("peakReservedBytes", static_cast<double>(cuda.peak_reserved_bytes));
      o.Set("deviceAllocs", static_cast<double>(cuda.backend_allocs));
    }
    out.Set(names[d], o);
  }
  return out;
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  auto& c = memory_counters();
  for (int d = 0; d < 2; ++d) c.peak_bytes[d].store(c.live_bytes[d].load());
  return info.Env().Undefined();
}

Napi::Value ReleaseCachedMemory(const Napi::CallbackInfo& info) {
  release_host_cache();
  pg::cuda_release_cached();
  return info.Env().Undefined();
}

// CUDA streams of their own (an inference engine's, a trainer's): handles into a table per thread
// (0: the process stream), made current around their owner's work (cuda_ops.h set_current_stream).
std::vector<void*>& Streams() {
  thread_local std::vector<void*> streams;
  return streams;
}

void* StreamOf(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw CodedError(info.Env(), kErrArg, "stream must be a handle from cudaStreamCreate (or 0)");
  const int64_t h = info[i].As<Napi::Number>().Int64Value();
  if (h == 0) return nullptr;
  auto& streams = Streams();
  if (h < 0 || h > static_cast<int64_t>(streams.size()) || !streams[static_cast<size_t>(h - 1)])
    throw CodedError(info.Env(), kErrArg, "stream " + std::to_string(h) + " is not a live CUDA stream of this thread");
  return streams[static_cast<size_t>(h - 1)];
}

// cudaStreamCreate() -> handle (> 0), or 0 where the addon has no CUDA or no device is usable (the
// process stream then, which no kernel uses).
Napi::Value StreamCreate(const Napi::CallbackInfo& info) {
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  std::vector<pg::CudaDeviceInfo> devices;
  if (!pg::cuda_devices(devices).empty() || devices.empty()) return Napi::Number::New(info.Env(), 0);
  try {
    Streams().push_back(pg::cuda::create_stream());
  } catch (const pg::cuda::Error& e) {
    throw CodedError(info.Env(), kErrDevice, e.what());
  }
  return Napi::Number::New(info.Env(), static_cast<double>(Streams().size()));
#else
  return Napi::Number::New(info.Env(), 0);
#endif
}

// cudaStreamRelease(handle): after its work (the process stream waits for it); no longer current.
Napi::Value StreamRelease(const Napi::CallbackInfo& info) {
  void* s = StreamOf(info, 0);
  if (!s) return info.Env().Undefined();
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  try {
    pg::cuda::destroy_stream(s);
  } catch (const pg::cuda::Error& e) {
    throw CodedError(info.Env(), kErrDevice, e.what());
  }
#endif
  for (void*& x : Streams())
    if (x == s) x = nullptr;
  return info.Env().Undefined();
}

// setCurrentStream(handle) -> the handle that was current: kernels of this thread go on it from now.
Napi::Value SetCurrentStream(const Napi::CallbackInfo& info) {
  void* s = StreamOf(info, 0);
  double prev = 0;
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  const auto& streams = Streams();
  void* cur = pg::cuda::stream();
  for (size_t i = 0; i < streams.size(); ++i)
    if (streams[i] && streams[i] == cur) prev = static_cast<double>(i + 1);
  try {
    pg::cuda::set_current_stream(s);
  } catch (const pg::cuda::Error& e) {
    throw CodedError(info.Env(), kErrDevice, e.what());
  }
#else
  (void)s;
#endif
  return Napi::Number::New(info.Env(), prev);
}

// Declarations of the functions above (their bodies read Args under these names; signature.h).
const Decl kDecls[] = {
    {DeclKind::Function, "info", "info", "",
     "{ simd: 'avx512' | 'avx2' | 'scalar'; threads: number; cudaCompiled: boolean; gpus: { index: number; name: string; "
     "computeCapability: string; totalMemory: number }[]; cudaStatus: string | null; compiler?: string }",
     nullptr, nullptr, Info},
    {DeclKind::Function, "setNumThreads", "setNumThreads", "n: int", "number", nullptr, nullptr, SetNumThreads},
    {DeclKind::Function, "setSimdLevel", "setSimdLevel", "level: 'avx512' | 'avx2' | 'scalar'", "string", nullptr, nullptr,
     SetSimdLevel},
    {DeclKind::Function, "memoryStats", "memoryStats", "",
     "{ cpu: NativeDeviceMemory; cuda: NativeDeviceMemory & { reservedBytes: number; peakReservedBytes: number; "
     "deviceAllocs: number } }",
     nullptr, nullptr, MemoryStats},
    {DeclKind::Function, "resetPeakMemory", "resetPeakMemory", "", "void", nullptr, nullptr, ResetPeakMemory},
    {DeclKind::Function, "releaseCachedMemory", "releaseCachedMemory", "", "void", nullptr, nullptr, ReleaseCachedMemory},
    {DeclKind::Function, "cudaStreamCreate", "cudaStreamCreate", "", "number", nullptr, nullptr, StreamCreate},
    {DeclKind::Function, "cudaStreamRelease", "cudaStreamRelease", "stream: int", "void", nullptr, nullptr, StreamRelease},
    {DeclKind::Function, "setCurrentStream", "setCurrentStream", "stream: int", "number", nullptr, nullptr, SetCurrentStream},
};

}  // namespace

void RegisterRuntime(Napi::Env env, Napi::Object exports) {
  for (const Decl& d : kDecls) Declare(d);
  // Kernels never allocate scratch: this JS thread's workspace and the pool's are reserved here,
  // once per thread that loads the addon (main or worker_thread), before any kernel can run on it.
  const std::string err = pg::reserve_workspace();
  if (!err.empty()) throw CodedError(env, kErrOom, "patentgpt: " + err);
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("setSimdLevel", Napi::Function::New(env, SetSimdLevel, "setSimdLevel"));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, ResetPeakMemory, "resetPeakMemory"));
  exports.Set("releaseCachedMemory", Napi::Function::New(env, ReleaseCachedMemory, "releaseCachedMemory"));
  exports.Set("cudaStreamCreate", Napi::Function::New(env, StreamCreate, "cudaStreamCreate"));
  exports.Set("cudaStreamRelease", Napi::Function::New(env, StreamRelease, "cudaStreamRelease"));
  exports.Set("setCurrentStream", Napi::Function::New(env, SetCurrentStream, "setCurrentStream"));
}

}  // namespace pgnode
