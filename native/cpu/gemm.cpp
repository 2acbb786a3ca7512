// GEMM: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] in f32 (and with bf16 inputs), the
// matmul under every linear layer. This file holds the portable parts: run-time dispatch on
// pg::simd_level() to the AVX-512 or AVX2 microkernel (gemm_avx512.cpp, gemm_avx2.cpp) or the
// scalar one below, how a product is cut into units of work, and the packing workspace. The blocked
// algorithm itself is in gemm_kernels.h.
//
// Workspace: the packed panels (A blocks, shared by the threads of a product, and each thread's B
// block) and the calling thread's per-unit progress flags live in the thread's kernel workspace
// (workspace.h), reserved by the runtime outside the GEMM and sized here by the blocking over
// every ISA, never by the problem: the few-rows path takes K in chunks of kSmallMaxK, and a
// product wider than kMaxColumnBlocks column blocks is done in slices of columns. The GEMM
// itself allocates nothing.
//
// Semantics beyond BLAS's: beta == 0 never reads C (NaN in C is overwritten); alpha == 0 or
// K == 0 gives beta * C without reading A or B; a batch stride of 0 broadcasts A or B, and for
// C (stride_c == 0) the items are applied in order, each seeing the previous one's result.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "gemm_kernels.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "patentgpt/workspace.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PG_GEMM_X86 1
#endif

namespace pg {
namespace gemm_detail {

// ---- waiting and workspace ----

void wait_for(const std::atomic<int64_t>& counter, int64_t target) {
  for (int spins = 0; counter.load(std::memory_order_acquire) < target; ++spins) {
#if defined(PG_GEMM_X86)
    _mm_pause();
#endif
    if (spins > 2048) std::this_thread::yield();  // the unit we wait on is held by a sleeping thread
  }
}

namespace {

// Bounds that keep the workspace independent of the problem's size. Up to kSmallMaxK (every K of
// the presets: dim and ffnDim up to 28672, the 55,296 vocabulary) the few-rows path sums each
// dot product in one pass; beyond it, in chunks accumulated into C (another rounding order).
constexpr int64_t kSmallMaxK = 65536;
// Products wider than this many column blocks of nc run as slices of columns (each C element's
// sum is unchanged); with the planning thread count capped at kPlanThreads, ncb * nrg stays
// below 6 * kPlanThreads as well (plan_units).
constexpr int64_t kMaxColumnBlocks = 2048;
constexpr int64_t kPlanThreads = 1024;
constexpr int64_t kMaxUnits = std::max(kMaxColumnBlocks, 6 * kPlanThreads) + 64;

// Every kernel table the workspace serves, the bf16-compute GEMM's included.
const Isa* const kAllIsas[] = {&kIsaScalar, &kIsaAvx2, &kIsaAvx512,
#if PG_X86_KERNELS
                               &kIsaAvx512Bf16, &kIsaAmx
#endif
};

// Resets the first `need` progress flags of this thread's workspace.
std::atomic<int64_t>* unit_flags(Workspace& ws, size_t need) {
  for (size_t i = 0; i < need; ++i) ws.gemm_units[i].store(-1, std::memory_order_relaxed);
  return ws.gemm_units;
}

}  // namespace

float* thread_b_buffer() { return thread_workspace().gemm_b; }

// ---- the scalar microkernel: plain loops, 4 x 16 ----

namespace {

struct ScalarKern : GenericPacking {
  static constexpr int MR = 4, NR = 16;
  template <int R>
  static void tile_rows(int cols, int64_t kc, const float* __restrict a, const float* __restrict b,
                        float* __restrict c, int64_t ldc, float alpha, float beta) {
    float acc[R][NR] = {};
    for (int64_t k = 0; k < kc; ++k) {
      for (int r = 0; r < R; ++r) {
        const float av = a[r];
        for (int j = 0; j < NR; ++j) acc[r][j] += av * b[j];
      }
      a += MR;
      b += NR;
    }
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc;
      if (beta == 0.0f)
        for (int j = 0; j < cols; ++j) cr[j] = alpha * acc[r][j];
      else
        for (int j = 0; j < cols; ++j) cr[j] = alpha * acc[r][j] + beta * cr[j];
    }
  }
  static void tile(int rows, int cols, int64_t kc, const float* a, const float* b, float* c,
                   int64_t ldc, float alpha, float beta) {
    with_rows<MR>(rows, [&](auto r) { tile_rows<decltype(r)::value>(cols, kc, a, b, c, ldc, alpha, beta); });
  }
};

void scalar_f32(const Plan& p) { run_units<ScalarKern, float>(p); }
void scalar_bf16(const Plan& p) { run_units<ScalarKern, uint16_t>(p); }
void scalar_small_f32(const Plan& p, const float* a, int64_t j0, int64_t j1) { small_m_columns<float>(p, a, j0, j1); }
void scalar_small_bf16(const Plan& p, const float* a, int64_t j0, int64_t j1) {
  small_m_columns<uint16_t>(p, a, j0, j1);
}

double scalar_fma_loop(int64_t iters) {
  float acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = static_cast<float>(i) * 1e-3f;
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 8; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  volatile float sink = acc[0] + acc[7];
  (void)sink;
  return static_cast<double>(iters) * 8 * 2;
}

}  // namespace

const Isa kIsaScalar = {"scalar", ScalarKern::MR, ScalarKern::NR, 512, 256, 256, scalar_f32, scalar_bf16,
                        scalar_small_f32, scalar_small_bf16, scalar_fma_loop};

namespace {

const Isa& pick_isa() {
  switch (simd_level()) {
#if PG_X86_KERNELS  // the AVX kernels are compiled on x86-64 only (native/CMakeLists.txt)
    case SimdLevel::AVX512: return kIsaAvx512;
    case SimdLevel::AVX2: return kIsaAvx2;
#endif
    default: return kIsaScalar;
  }
}

// Below this many FLOPs (a 144^3 product) a product runs on one thread: waking the pool and
// sharing the first packed block costs more than a second core saves.
constexpr double kParallelFlops = 6e6;
// Batched products smaller than this run one item per thread instead of splitting each item.
constexpr double kItemParallelFlops = 2.0 * 256 * 256 * 256;
// An item's C of at least this many bytes, written once without being read (beta 0, one depth
// block), is not kept by the caches for the op that reads it next, so kernels that can may store
// it past them (Plan::stream_c): it is then written to memory once, instead of being read from
// memory first (each line stored to) and written back when evicted. Measured here (one core, a
// buffer written then summed): streamed was faster in total from 48 MB (write 2.3 + read 3.5 ms
// against 4.2 + 2.5), slower at 32 MB (1.6 + 2.1 against 1.8 + 1.3) and below.
constexpr double kStreamCBytes = 40.0 * (1 << 20);

// Cuts the product into units for nt threads: M and K split evenly into blocks within the
// ISA's caps, N into column blocks within nc and (with several threads) into at least about
// four per thread (the ISA's col_blocks_per_thread), so that a late thread finds work; when N is
// too narrow for that, each column block's rows are split into groups as well.
void plan_units(Plan& p, const Isa& isa, int nt) {
  nt = static_cast<int>(std::min<int64_t>(nt, kPlanThreads));  // bounds ncb * nrg (kMaxUnits)
  p.mc = round_up(ceil_div(p.M, ceil_div(p.M, isa.mc)), isa.mr);
  // Panels of bf16 op(A) read in place are never packed: one row block then takes all of M (its
  // last, ragged panel packs into the buffer's first slot), so each B block is packed once, not
  // once per mc rows (4096 x 4096 x 1024: 3-5% faster, one or two threads).
  if (isa.reads_a_in_place && p.bf16 && !p.trans_a && p.K % isa.kc_align == 0) p.mc = round_up(p.M, isa.mr);
  p.kc = round_up(ceil_div(p.K, ceil_div(p.K, isa.kc)), isa.kc_align);  // isa.kc is a multiple of it
  const int64_t npanels = ceil_div(p.N, isa.nr);
  int64_t ncb = ceil_div(p.N, isa.nc);
  if (nt > 1) ncb = std::max(ncb, std::min<int64_t>(npanels, isa.col_blocks_per_thread * nt));
  p.nb = round_up(ceil_div(p.N, ncb), isa.nr);
  p.ncb = ceil_div(p.N, p.nb);
  const int64_t apanels = p.mc / isa.mr;
  p.nrg = nt > 1 && p.ncb < 2 * nt ? std::min<int64_t>(apanels, ceil_div(4 * nt, p.ncb)) : 1;
  // Pack units of about 4 panels: enough to share, few enough to keep the counter cool.
  p.panels_per_pack = std::max<int64_t>(1, std::min<int64_t>(4, ceil_div(apanels, 4 * nt)));
}

// A product of at most kSmallM rows: op(A) packed into rows of K floats, then B streamed once,
// its columns split over the threads. K beyond kSmallMaxK goes in chunks, each added to C.
template <typename T>
void run_small(const Plan& whole, const Isa& isa, int nt, Workspace& ws) {
  const T* A = static_cast<const T*>(whole.A);
  const T* B = static_cast<const T*>(whole.B);
  float* a = ws.gemm_a;
  const SmallFn fn = whole.bf16 ? isa.small_bf16 : isa.small_f32;
  for (int64_t k0 = 0; k0 < whole.K; k0 += kSmallMaxK) {
    Plan p = whole;
    p.K = std::min(kSmallMaxK, whole.K - k0);
    p.B = B + (whole.trans_b ? k0 : k0 * whole.ldb);
    if (k0 > 0) p.beta = 1.0f;
    for (int64_t i = 0; i < p.M; ++i)
      for (int64_t k = 0; k < p.K; ++k)
        a[i * p.K + k] = to_f32(p.trans_a ? A[(k0 + k) * p.lda + i] : A[i * p.lda + k0 + k]);
    if (nt <= 1) {
      fn(p, a, 0, p.N);
      continue;
    }
    // Chunks of 64 columns (whole vector blocks), about four per thread.
    const int64_t chunks = ceil_div(p.N, 64);
    parallel_for(chunks, std::max<int64_t>(1, chunks / (4 * nt)), [&](int64_t c0, int64_t c1) {
      fn(p, a, c0 * 64, std::min(p.N, c1 * 64));
    });
  }
}

// One batch item on nt threads (nt == 1: on the calling thread).
void run_item(Plan p, const Isa& isa, int nt) {
  Workspace& ws = thread_workspace();
  if (p.M <= kSmallM && isa.small_f32 != nullptr) {
    if (p.bf16)
      run_small<uint16_t>(p, isa, nt, ws);
    else
      run_small<float>(p, isa, nt, ws);
    return;
  }
  const int64_t slice = kMaxColumnBlocks * isa.nc;  // a multiple of nr: slices keep whole panels
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
  const ThreadFn run = p.bf16 ? isa.run_bf16 : isa.run_f32;
  plan_units(p, isa, nt);
  // mc x kc values (padded as the ISA's panels are), rounded to keep both 64-byte aligned
  const size_t block = static_cast<size_t>(round_up(p.mc * round_up(p.kc, isa.kc_align) / isa.per_slot, 16));
  p.apack[0] = ws.gemm_a;
  p.apack[1] = ws.gemm_a + block;
  Progress progress;
  progress.unit_done = unit_flags(ws, static_cast<size_t>(p.ncb * p.nrg));
  p.progress = &progress;
  if (nt <= 1) {
    run(p);
    return;
  }
  // Each participant takes units until none are left, however the pool splits the range.
  parallel_for(nt, 1, [&](int64_t, int64_t) { run(p); });
}

// C = beta * C over the batch (alpha == 0 or K == 0).
void scale_c(float beta, float* C, int64_t M, int64_t N, int64_t ldc, int64_t stride_c, int64_t batch) {
  const int64_t items = stride_c == 0 ? 1 : batch;
  if (stride_c == 0 && beta != 0.0f) {
    // Applied `batch` times in order: beta^batch, computed as repeated products.
    float f = 1.0f;
    for (int64_t b = 0; b < batch; ++b) f *= beta;
    beta = f;
  }
  for (int64_t b = 0; b < items; ++b)
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + b * stride_c + i * ldc;
      if (beta == 0.0f)
        std::fill(c, c + N, 0.0f);
      else if (beta != 1.0f)
        for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
}

template <typename T>
void gemm_any(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const T* A,
              int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, float beta,
              float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(beta, C, M, N, ldc, stride_c, batch);
    return;
  }
  run_batch(trans_a, trans_b, sizeof(T) == 2, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
            stride_c, batch, pick_isa());
}

}  // namespace

void run_batch(bool trans_a, bool trans_b, bool bf16, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
               int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, float beta, float* C,
               int64_t ldc, int64_t stride_c, int64_t batch, const Isa& isa) {
  Plan base{};
  base.trans_a = trans_a;
  base.trans_b = trans_b;
  base.bf16 = bf16;
  base.M = M;
  base.N = N;
  base.K = K;
  base.alpha = alpha;
  base.lda = lda;
  base.ldb = ldb;
  base.ldc = ldc;
  const int64_t elem = bf16 ? 2 : 4;
  auto item = [&](int64_t b, float beta_b) {
    Plan p = base;
    p.beta = beta_b;
    p.stream_c = beta_b == 0.0f && K <= isa.kc && 4.0 * M * N >= kStreamCBytes;
    p.A = static_cast<const char*>(A) + elem * b * stride_a;
    p.B = static_cast<const char*>(B) + elem * b * stride_b;
    p.C = C + b * stride_c;
    return p;
  };
  const double flops = 2.0 * M * N * K;
  const int nt = num_threads();
  if (stride_c == 0) {  // items accumulate into one C, in order
    for (int64_t b = 0; b < batch; ++b)
      run_item(item(b, b == 0 ? beta : 1.0f), isa, flops < kParallelFlops ? 1 : nt);
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

}  // namespace gemm_detail

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
          float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  gemm_detail::gemm_any(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                        ldc, stride_c, batch);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const uint16_t* A, int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb,
               int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  gemm_detail::gemm_any(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                        ldc, stride_c, batch);
}

WorkspaceSizes gemm_workspace_sizes() {
  using namespace gemm_detail;
  WorkspaceSizes s{};
  s.gemm_a = static_cast<size_t>(kSmallM * kSmallMaxK);
  for (const Isa* isa : kAllIsas) {
    const int64_t mc = round_up(isa->mc, isa->mr), nb = round_up(isa->nc, isa->nr);
    const int64_t kc = round_up(isa->kc, isa->kc_align);  // panels hold per_slot values per float
    s.gemm_a = std::max(s.gemm_a, static_cast<size_t>(2 * round_up(mc * kc / isa->per_slot, 16)));
    s.gemm_b = std::max(s.gemm_b, static_cast<size_t>(kc * nb / isa->per_slot));
  }
  s.gemm_units = static_cast<size_t>(kMaxUnits);
  return s;
}

// Not yet in ops.h (declared where used): the ISA name and blocking {mr, nr, mc, kc, nc} the
// GEMM uses at the current SIMD level, and the machine's FP32 peak in GFLOP/s measured on
// `threads` threads with that ISA's FMA loop (about `seconds` long).
const char* gemm_config(int64_t blocking[5]) {
  const gemm_detail::Isa& isa = gemm_detail::pick_isa();
  blocking[0] = isa.mr;
  blocking[1] = isa.nr;
  blocking[2] = isa.mc;
  blocking[3] = isa.kc;
  blocking[4] = isa.nc;
  return isa.name;
}

double gemm_peak_gflops(int threads, double seconds) {
  const gemm_detail::Isa& isa = gemm_detail::pick_isa();
  if (threads <= 0) threads = num_threads();
  threads = std::min(threads, num_threads());
  // Calibrate the iteration count on one thread, then run all threads at once, best of three.
  int64_t iters = 1 << 16;
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    isa.fma_loop(iters);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 6 || iters > (int64_t(1) << 40)) break;
    iters *= 2;
  }
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<int64_t> flops{0};
    auto t0 = std::chrono::steady_clock::now();
    parallel_for(threads, 1, [&](int64_t begin, int64_t end) {
      double f = 0;
      for (int64_t t = begin; t < end; ++t) f += isa.fma_loop(iters);
      flops.fetch_add(static_cast<int64_t>(f));
    });
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(flops.load()) / dt / 1e9);
  }
  return best;
}

}  // namespace pg
