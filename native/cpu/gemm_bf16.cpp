// bf16-compute GEMM (gemm_bf16.h): choosing the kernel at run time (AMX, AVX-512 BF16, or the f32
// GEMM) and running it in the blocked driver of gemm_kernels.h. The kernels themselves are in
// gemm_bf16_avx512.cpp.
//
// The driver steps below mirror gemm.cpp's run_item (units, packing buffers, column slices) for
// a kernel table of this file's own; the few-rows streaming path of the f32 GEMM is not used
// (it would sum in f32 without rounding), so every product goes through packed panels.
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
namespace gemm_detail {
#if PG_X86_KERNELS
extern const Isa kIsaAvx512Bf16;  // gemm_bf16_avx512.cpp
extern const Isa kIsaAmx;
#endif
}  // namespace gemm_detail

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

// As gemm.cpp: products wider than this many column blocks run in slices (bounds the units), the
// thread count used for planning is capped, and small products stay on one thread.
constexpr int64_t kMaxColumnBlocks = 2048;
constexpr int64_t kPlanThreads = 1024;
constexpr double kParallelFlops = 6e6;
constexpr double kItemParallelFlops = 2.0 * 256 * 256 * 256;

void plan_units(Plan& p, const Isa& isa, int nt) {
  nt = static_cast<int>(std::min<int64_t>(nt, kPlanThreads));
  p.mc = round_up(ceil_div(p.M, ceil_div(p.M, isa.mc)), isa.mr);
  // Depth blocks of a multiple of 32 (the AMX panels' padding) as far as K allows; isa.kc is one.
  p.kc = round_up(ceil_div(p.K, ceil_div(p.K, isa.kc)), 32);
  const int64_t npanels = ceil_div(p.N, isa.nr);
  int64_t ncb = ceil_div(p.N, isa.nc);
  if (nt > 1) ncb = std::max(ncb, std::min<int64_t>(npanels, 4 * nt));
  p.nb = round_up(ceil_div(p.N, ncb), isa.nr);
  p.ncb = ceil_div(p.N, p.nb);
  const int64_t apanels = p.mc / isa.mr;
  p.nrg = nt > 1 && p.ncb < 2 * nt ? std::min<int64_t>(apanels, ceil_div(4 * nt, p.ncb)) : 1;
  p.panels_per_pack = std::max<int64_t>(1, std::min<int64_t>(4, ceil_div(apanels, 4 * nt)));
}

void run_item(Plan p, const Isa& isa, int nt) {
  const int64_t slice = kMaxColumnBlocks * isa.nc;
  if (p.N > slice) {
    const size_t elem = p.bf16 ? 2 : 4;
    for (int64_t j0 = 0; j0 < p.N; j0 += slice) {
      Plan q = p;
      q.N = std::min(slice, p.N - j0);
      q.B = static_cast<const char*>(p.B) + elem * (p.trans_b ? j0 * p.ldb : j0);
      q.C = p.C + j0;
      run_item(q, isa, nt);
    }
    return;
  }
  Workspace& ws = thread_workspace();
  plan_units(p, isa, nt);
  // Each A buffer holds mc x kc bf16 padded to 32 (PanelLayout): within gemm.cpp's mc x kc floats.
  const size_t block = static_cast<size_t>(round_up(p.mc * round_up(p.kc, 32) / 2, 16));
  p.apack[0] = ws.gemm_a;
  p.apack[1] = ws.gemm_a + block;
  Progress progress;
  const size_t units = static_cast<size_t>(p.ncb * p.nrg);
  for (size_t i = 0; i < units; ++i) ws.gemm_units[i].store(-1, std::memory_order_relaxed);
  progress.unit_done = ws.gemm_units;
  p.progress = &progress;
  const ThreadFn run = p.bf16 ? isa.run_bf16 : isa.run_f32;
  if (nt <= 1) {
    run(p);
    return;
  }
  parallel_for(nt, 1, [&](int64_t, int64_t) { run(p); });
}

template <typename T>
void gemm_bf16_any(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const T* A,
                   int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                   int64_t ldc, int64_t stride_c, int64_t batch, const Isa& isa) {
  Plan base{};
  base.trans_a = trans_a;
  base.trans_b = trans_b;
  base.bf16 = sizeof(T) == 2;
  base.M = M;
  base.N = N;
  base.K = K;
  base.alpha = alpha;
  base.lda = lda;
  base.ldb = ldb;
  base.ldc = ldc;
  auto item = [&](int64_t b, float beta_b) {
    Plan p = base;
    p.beta = beta_b;
    p.A = A + b * stride_a;
    p.B = B + b * stride_b;
    p.C = C + b * stride_c;
    return p;
  };
  const double flops = 2.0 * M * N * K;
  const int nt = num_threads();
  if (stride_c == 0) {
    for (int64_t b = 0; b < batch; ++b) run_item(item(b, b == 0 ? beta : 1.0f), isa, flops < kParallelFlops ? 1 : nt);
    return;
  }
  if (nt > 1 && batch > 1 && flops < kItemParallelFlops && flops * batch >= kParallelFlops) {
    parallel_for(batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) run_item(item(b, beta), isa, 1);
    });
    return;
  }
  for (int64_t b = 0; b < batch; ++b) run_item(item(b, beta), isa, flops < kParallelFlops ? 1 : nt);
}

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
  gemm_detail::gemm_bf16_any(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                             stride_c, batch, *isa);
}

void gemm_bf16_compute(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb,
                       int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  const gemm_detail::Isa* isa = gemm_detail::pick(K);
  if (isa == nullptr || M <= 0 || N <= 0 || K <= 0 || batch <= 0 || alpha == 0.0f)
    return gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c,
                     batch);
  gemm_detail::gemm_bf16_any(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                             stride_c, batch, *isa);
}

}  // namespace pg
