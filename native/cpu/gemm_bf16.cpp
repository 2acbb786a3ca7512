// bf16-compute GEMM (gemm_bf16.h): choosing the kernel at run time (AMX, AVX-512 BF16, or the f32
// GEMM) and running it in the blocked driver of gemm_kernels.h. The kernels themselves are in
// gemm_bf16_avx512.cpp.
//
// Products run in gemm.cpp's driver (run_batch) with this file's kernel tables; those have no
// few-rows streaming path (it would sum in f32 without rounding), so every product is packed.
#include "patentgpt/gemm_bf16.h"

#include <algorithm>
#include <atomic>

#include "gemm_kernels.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "patentgpt/workspace.h"

#if PG_X86_KERNELS
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace pg {

namespace {

#if PG_X86_KERNELS
// Linux grants the AMX tile state (8 KB per thread) only on request, once per process.
bool request_amx_state() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
#endif

Bf16Kernel detect() {
#if PG_X86_KERNELS
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return Bf16Kernel::F32;  // no OSXSAVE
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Bf16Kernel::F32;
  const bool amx = (d & (1u << 22)) && (d & (1u << 24));  // AMX-BF16, AMX-TILE
  unsigned a1, b1, c1, d1;
  const bool avx512bf16 = __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) && (a1 & (1u << 5));
  const uint64_t xcr = xcr0();
  const bool zmm_state = (xcr & 0xe6) == 0xe6;  // SSE, AVX, opmask, ZMM state enabled by the OS
  if (!zmm_state || !(b & (1u << 16))) return Bf16Kernel::F32;  // AVX-512F
  if (amx && (xcr & (3u << 17)) == (3u << 17) && request_amx_state()) return Bf16Kernel::Amx;
  if (avx512bf16) return Bf16Kernel::Avx512Bf16;
#endif
  return Bf16Kernel::F32;
}

std::atomic<int> kernel_cap{static_cast<int>(Bf16Kernel::Amx)};

}  // namespace

Bf16Kernel bf16_kernel_detected() {
  static const Bf16Kernel detected = detect();
  return detected;
}

Bf16Kernel bf16_kernel() {
  if (simd_level() != SimdLevel::AVX512) return Bf16Kernel::F32;
  return static_cast<Bf16Kernel>(std::min(static_cast<int>(bf16_kernel_detected()), kernel_cap.load()));
}

const char* bf16_kernel_name(Bf16Kernel k) {
  switch (k) {
    case Bf16Kernel::Amx: return "amx";
    case Bf16Kernel::Avx512Bf16: return "avx512bf16";
    default: return "f32";
  }
}

void force_bf16_kernel(Bf16Kernel cap) { kernel_cap.store(static_cast<int>(cap)); }

namespace gemm_detail {
namespace {

// The kernel table for a product: AMX needs a depth of at least 32 (its panels pad the depth to
// a multiple of 32 inside space sized for depth blocks of 16 or more).
const Isa* pick(int64_t K) {
#if PG_X86_KERNELS
  switch (bf16_kernel()) {
    case Bf16Kernel::Amx: return K >= 32 ? &kIsaAmx : &kIsaAvx512Bf16;
    case Bf16Kernel::Avx512Bf16: return &kIsaAvx512Bf16;
    default: break;
  }
#endif
  (void)K;
  return nullptr;
}

}  // namespace
}  // namespace gemm_detail

void gemm_bf16_compute(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                       int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                       float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  const gemm_detail::Isa* isa = gemm_detail::pick(K);
  // The f32 GEMM covers the fallback and the degenerate shapes (M, N, K or alpha zero).
  if (isa == nullptr || M <= 0 || N <= 0 || K <= 0 || batch <= 0 || alpha == 0.0f)
    return gemm(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch);
  gemm_detail::run_batch(trans_a, trans_b, false, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                         stride_c, batch, *isa);
}

void gemm_bf16_compute(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb,
                       int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  const gemm_detail::Isa* isa = gemm_detail::pick(K);
  if (isa == nullptr || M <= 0 || N <= 0 || K <= 0 || batch <= 0 || alpha == 0.0f)
    return gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c,
                     batch);
  gemm_detail::run_batch(trans_a, trans_b, true, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                         stride_c, batch, *isa);
}

}  // namespace pg
