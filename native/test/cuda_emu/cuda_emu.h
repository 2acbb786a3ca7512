// A small CUDA emulator for checking kernels on a machine without a GPU (scripts/cuda-emulate.sh):
// blocks run one after another; a block's threads run as fibers (ucontext) on one OS thread, each
// until it reaches a barrier. __syncthreads releases when every live thread of the block waits
// there, __syncwarp when every live lane of the warp does (a thread that returned no longer
// counts, as on the device); a block where neither can happen aborts as a deadlock. Warp
// shuffles and ballots exchange through per-warp slots between two warp barriers. Dynamic shared
// memory starts as 0xff bytes (NaN floats), so a read before a write shows. Only what the
// attention, paged-attention, MoE, AdamW, loss-scale and index-check kernels use is here (bf16 / fp16
// conversions included); the memory model is sequential.
#pragma once
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#include <tuple>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0, cudaErrorUnknown = 1 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
template <typename K>
cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int) { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = 132; return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return cudaSuccess; }
// The index checks' record and flag (index_check.cu): mapped host memory is host memory.
enum { cudaHostAllocDefault = 0, cudaHostAllocMapped = 2 };
inline cudaError_t cudaHostAlloc(void** p, size_t n, unsigned) { *p = std::calloc(n ? n : 1, 1); return cudaSuccess; }
inline cudaError_t cudaHostGetDevicePointer(void** d, void* h, unsigned) { *d = h; return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, size_t n) { *p = std::calloc(n ? n : 1, 1); return cudaSuccess; }
inline cudaError_t cudaMemset(void* p, int v, size_t n) { std::memset(p, v, n); return cudaSuccess; }
inline void __threadfence_system() {}
// Atomics: blocks and fibers run one at a time, so plain read-modify-writes are atomic here.
inline unsigned atomicMin(unsigned* p, unsigned v) { const unsigned o = *p; if (v < o) *p = v; return o; }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  const unsigned long long o = *p;
  if (v < o) *p = v;
  return o;
}
inline int atomicCAS(int* p, int cmp, int v) { const int o = *p; if (o == cmp) *p = v; return o; }

namespace emu {
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  enum State { Run, BlockBar, WarpBar, Done } state = Run;
  dim3 tid;
};
struct Block {
  std::vector<Fiber> fibers;
  ucontext_t sched;
  int current = -1;
  std::vector<uint64_t> xch;   // per warp: 32 slots of 8 bytes
};
inline Block*& block() { static Block* b = nullptr; return b; }
inline dim3& grid_dim() { static dim3 d; return d; }
inline dim3& block_dim() { static dim3 d; return d; }
inline dim3& block_idx() { static dim3 d; return d; }
inline std::vector<char>& dyn_smem() { static std::vector<char> s; return s; }
inline void yield(Fiber::State s) {
  Block* b = block();
  Fiber& f = b->fibers[b->current];
  f.state = s;
  swapcontext(&f.ctx, &b->sched);
}
inline int lane() { return static_cast<int>(block()->fibers[block()->current].tid.x % 32); }
inline int warp() { return static_cast<int>(block()->fibers[block()->current].tid.x / 32); }
}  // namespace emu

#define threadIdx (::emu::block()->fibers[::emu::block()->current].tid)
#define blockIdx (::emu::block_idx())
#define blockDim (::emu::block_dim())
#define gridDim (::emu::grid_dim())

inline void __syncthreads() { emu::yield(emu::Fiber::BlockBar); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::yield(emu::Fiber::WarpBar); }
template <typename T>
T __shfl_sync(unsigned, T v, int src) {
  static_assert(sizeof(T) <= 8, "8-byte slots");
  uint64_t* x = &emu::block()->xch[emu::warp() * 32];
  uint64_t slot = 0;
  std::memcpy(&slot, &v, sizeof(T));
  x[emu::lane()] = slot;
  __syncwarp();
  T r;
  const uint64_t got = x[src & 31];
  std::memcpy(&r, &got, sizeof(T));
  __syncwarp();
  return r;
}
template <typename T>
T __shfl_xor_sync(unsigned m, T v, int o) { return __shfl_sync(m, v, emu::lane() ^ o); }
inline unsigned __ballot_sync(unsigned, bool p) {
  uint64_t* x = &emu::block()->xch[emu::warp() * 32];
  x[emu::lane()] = p;
  __syncwarp();
  unsigned m = 0;
  for (int i = 0; i < 32; ++i) m |= (x[i] ? 1u : 0u) << i;
  __syncwarp();
  return m;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
template <typename T>
inline T min(T a, T b) { return b < a ? b : a; }
template <typename T>
inline T max(T a, T b) { return a < b ? b : a; }
using std::isnan;
using std::isfinite;
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
struct __half { unsigned short x; };
struct __nv_bfloat16 { unsigned short x; };
inline __half __ushort_as_half(unsigned short u) { return {u}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline float __half2float(__half h) { _Float16 f; std::memcpy(&f, &h.x, 2); return static_cast<float>(f); }
inline __half __float2half_rn(float x) { _Float16 f = static_cast<_Float16>(x); __half h; std::memcpy(&h.x, &f, 2); return h; }
inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  unsigned u; std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return {static_cast<unsigned short>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<unsigned short>(u >> 16)};
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float(static_cast<unsigned>(b.x) << 16); }

namespace emu {
template <typename... A>
struct Call {
  void (*k)(A...);
  std::tuple<A...> args;
};
template <typename C>
void trampoline(unsigned lo, unsigned hi) {
  C* c = reinterpret_cast<C*>((static_cast<uintptr_t>(hi) << 32) | lo);
  std::apply(c->k, c->args);
  yield(Fiber::Done);
}
struct Launch {
  dim3 g, b;
  size_t smem;
  Launch(dim3 grid, dim3 blk, size_t sm = 0, cudaStream_t = nullptr) : g(grid), b(blk), smem(sm) {}
  template <typename... P, typename... A>
  void run(void (*k)(P...), A&&... a) {
    using C = Call<P...>;
    C call{k, std::tuple<P...>(static_cast<P>(a)...)};
    grid_dim() = g;
    block_dim() = b;
    const unsigned n = b.x * b.y * b.z;
    for (unsigned z = 0; z < g.z; ++z)
      for (unsigned y = 0; y < g.y; ++y)
        for (unsigned x = 0; x < g.x; ++x) {
          block_idx() = dim3(x, y, z);
          dyn_smem().assign(smem + 16, static_cast<char>(0xff));  // uninitialised: NaN floats
          Block blk;
          blk.fibers.resize(n);
          blk.xch.assign((n + 31) / 32 * 32, 0);
          block() = &blk;
          for (unsigned t = 0; t < n; ++t) {
            Fiber& f = blk.fibers[t];
            f.tid = dim3(t, 0, 0);
            f.stack.resize(256 * 1024);
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack.data();
            f.ctx.uc_stack.ss_size = f.stack.size();
            f.ctx.uc_link = nullptr;
            const uintptr_t p = reinterpret_cast<uintptr_t>(&call);
            makecontext(&f.ctx, reinterpret_cast<void (*)()>(&trampoline<C>), 2, static_cast<unsigned>(p),
                        static_cast<unsigned>(p >> 32));
          }
          for (;;) {
            bool progressed = false;
            for (unsigned t = 0; t < n; ++t) {
              if (blk.fibers[t].state != Fiber::Run) continue;
              blk.current = static_cast<int>(t);
              swapcontext(&blk.sched, &blk.fibers[t].ctx);
              progressed = true;
            }
            // warp barriers: every live lane of the warp waiting
            bool released = false;
            for (unsigned w = 0; w * 32 < n; ++w) {
              bool all = true, any = false;
              for (unsigned t = w * 32; t < n && t < w * 32 + 32; ++t) {
                const auto s = blk.fibers[t].state;
                if (s == Fiber::Done) continue;
                if (s != Fiber::WarpBar) all = false;
                else any = true;
              }
              if (all && any) {
                for (unsigned t = w * 32; t < n && t < w * 32 + 32; ++t)
                  if (blk.fibers[t].state == Fiber::WarpBar) blk.fibers[t].state = Fiber::Run;
                released = true;
              }
            }
            bool all = true, any = false, done = true;
            for (auto& f : blk.fibers) {
              if (f.state != Fiber::Done) done = false;
              if (f.state == Fiber::Done) continue;
              if (f.state != Fiber::BlockBar) all = false;
              else any = true;
            }
            if (done) break;
            if (all && any) {
              for (auto& f : blk.fibers)
                if (f.state == Fiber::BlockBar) f.state = Fiber::Run;
              released = true;
            }
            bool runnable = false;
            for (auto& f : blk.fibers) runnable |= f.state == Fiber::Run;
            if (!runnable && !released && !progressed) {
              std::fprintf(stderr, "emu: deadlock in block (%u,%u,%u)\n", x, y, z);
              std::abort();
            }
            if (!runnable && !released) {
              std::fprintf(stderr, "emu: deadlock (mixed barriers) in block (%u,%u,%u)\n", x, y, z);
              std::abort();
            }
          }
          block() = nullptr;
        }
  }
};
}  // namespace emu
