// Private helpers for CPU kernels: per-function SIMD clones picked at load time.
//
// Simple loops (elementwise ops, reductions) are written once in plain C++ and compiled three
// times by GCC/Clang (AVX-512, AVX2+FMA, baseline x86-64); the loader picks the best clone for
// the CPU. Hot kernels with hand-written intrinsics (GEMM, attention) live in *_avx512.cpp /
// *_avx2.cpp files instead and dispatch through pg::simd_level().
#pragma once
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(PG_NO_CLONES)
#define PG_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PG_CLONES
#endif

namespace pg {
// Items per parallel chunk for memory-bound loops: below this, threads cost more than they save.
constexpr int64_t kElementwiseGrain = 1 << 15;
}  // namespace pg
