// Private to the GEMM family (gemm.cpp, gemm_avx512.cpp, gemm_avx2.cpp): the blocked driver
// that every ISA variant instantiates with its own register-blocked microkernel.
//
// The algorithm is BLIS's loops around a microkernel, written for row-major C with the vector
// lanes along N and the elements of A broadcast:
//
//   for each iteration = (block of up to mc rows, block of up to kc of the depth):
//     pack A[rows, depth] into MR-row panels          (shared by all threads, L2/L3)
//     for each column block of C (up to nc wide):
//       pack B[depth, columns] into NR-column panels  (this thread's, L2)
//       for each MR-row panel of A                    (MR x kc, stays in L1)
//         for each NR-column panel of B               (streamed from L2)
//           microkernel: an MR x NR tile of C += A panel @ B panel, in registers
//
// Threads share the work dynamically, without barriers: every unit of work (packing a few A
// panels, or computing one column block of C against the packed A, optionally restricted to a
// group of rows when N is narrow) is a ticket taken from one atomic counter, in order. A unit
// waits only for what it reads or overwrites, all of it behind earlier tickets: computing needs
// this iteration's A packed and the same C block's previous iteration done (so each C element
// sums its depth blocks in the same order whatever the thread count: results are bit-identical
// on 1 or N threads); packing into one of the two A buffers needs the iteration that last used
// it computed. A thread that the OS puts to sleep delays only the unit it holds, and work is
// spread evenly however many threads actually turn up.
//
// Everything in the anonymous namespace below is compiled separately in each ISA's file, with
// that file's target flags: nothing here may be a non-inline symbol shared across those files.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace pg {
namespace gemm_detail {

// Shared progress counters of one product. Iteration i uses slot i % 4 (at most three
// iterations are ever in flight), and each slot's counts accumulate over its iterations.
struct Progress {
  std::atomic<int64_t> next{0};      // the next ticket
  std::atomic<int64_t> packed[4]{};  // A pack units finished
  std::atomic<int64_t> computed[4]{};  // compute units finished
  std::atomic<int64_t>* unit_done = nullptr;  // per compute unit: the last iteration it finished
};

// One matrix product C = alpha * op(A) @ op(B) + beta * C for one batch item, and how its work is
// cut into units. A and B are float or uint16_t (bf16) as `bf16` says.
struct Plan {
  bool trans_a, trans_b, bf16;
  int64_t M, N, K;
  float alpha, beta;
  const void* A;
  int64_t lda;
  const void* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  // Blocking (in elements), shrunk from the ISA's caps to split M, K and N evenly.
  int64_t mc, kc;
  int64_t nb;            // width of a column block (a multiple of NR, at most the ISA's nc)
  int64_t ncb, nrg;      // column blocks, row groups per iteration: ncb * nrg compute units
  int64_t panels_per_pack;  // A panels per pack unit
  float* apack[2];       // the two shared packed-A buffers, mc * kc floats each, 64-byte aligned
  // C is written once and never read (beta 0, one depth block) and is too big for the caches to
  // keep (run_batch, kStreamCBytes): a kernel may store it with non-temporal stores, and then runs
  // SFENCE at the end of its thread body.
  bool stream_c = false;
  Progress* progress;
};

// Defined in gemm.cpp (compiled for the baseline ISA).
// Spins (then yields) until counter >= target.
void wait_for(const std::atomic<int64_t>& counter, int64_t target);
// This thread's packed-B block (64-byte aligned) from its kernel workspace (workspace.h): kc x nc
// floats of the largest ISA blocking; looked up once per call of a thread body.
float* thread_b_buffer();

// Runs units of the plan until none are left; any number of threads may call it at once.
using ThreadFn = void (*)(const Plan& plan);
// Products with at most kSmallM rows: columns [j0, j1) from op(A) packed as M rows of K floats.
constexpr int kSmallM = 4;
using SmallFn = void (*)(const Plan& plan, const float* a, int64_t j0, int64_t j1);

// What each ISA's file provides: its register block, cache blocking and thread bodies.
struct Isa {
  const char* name;
  int mr, nr;          // register block of the microkernel
  int64_t mc, kc, nc;  // cache blocking caps: packed A block mc x kc, packed B block kc x nc
  ThreadFn run_f32, run_bf16;
  SmallFn small_f32, small_bf16;
  double (*fma_loop)(int64_t iters);  // FLOPs done by a throughput-bound FMA loop (peak estimate)
  // Packed bf16 pairs (gemm_bf16_avx512.cpp): depth blocks rounded to kc_align, per_slot values
  // per float of the buffers (PanelLayout below).
  int kc_align = 1, per_slot = 1;
  // With several threads, N is cut into at least this many column blocks per thread (plan_units
  // in gemm.cpp), rows into groups where N is narrower.
  int col_blocks_per_thread = 4;
  // Whether the kernel reads whole panels of bf16 op(A), not transposed, in place at every depth
  // block a multiple of kc_align (HasDirectA below; the plan then takes M in one row block).
  bool reads_a_in_place = false;
};
extern const Isa kIsaAvx512;  // gemm_avx512.cpp
extern const Isa kIsaAvx2;    // gemm_avx2.cpp
extern const Isa kIsaScalar;  // gemm.cpp
#if PG_X86_KERNELS
extern const Isa kIsaAvx512Bf16, kIsaAmx;  // gemm_bf16_avx512.cpp: the bf16-compute GEMM's kernels
#endif

// Defined in gemm.cpp: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for every item (pg::gemm's
// semantics; A and B float or bf16 as `bf16` says) with the given ISA's kernels, for M, N, K,
// batch > 0 and alpha != 0. Products of at most kSmallM rows stream B when the ISA has a
// few-rows path (small_f32), else they are packed like the rest.
void run_batch(bool trans_a, bool trans_b, bool bf16, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
               int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, float beta, float* C,
               int64_t ldc, int64_t stride_c, int64_t batch, const Isa& isa);

namespace {

// Calls f(std::integral_constant<int, rows>) for 1 <= rows <= R (rows < 1 counts as 1): each
// row count gets its own microkernel instance, so all its accumulators stay in registers.
template <int R, class F>
inline void with_rows(int rows, F&& f) {
  if constexpr (R > 1) {
    if (rows < R) return with_rows<R - 1>(rows, f);
  }
  f(std::integral_constant<int, R>{});
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Packs rows [i0, i0 + rows) x depth [k0, k0 + kc) of op(A) into one panel laid out
// [kc][MR] (rows past `rows` are left as they are: the microkernel for `rows` rows never
// reads them).
template <int MR, typename T>
inline void pack_a_panel(float* __restrict dst, const T* __restrict A, int64_t lda, bool trans,
                         int64_t i0, int rows, int64_t k0, int64_t kc) {
  if (trans) {  // op(A)(i, k) = A[k][i]: each k is a contiguous run of `rows` values
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = A + (k0 + k) * lda + i0;
      float* d = dst + k * MR;
      for (int r = 0; r < rows; ++r) d[r] = to_f32(src[r]);
    }
  } else {  // op(A)(i, k) = A[i][k]: rows are contiguous in k; transpose in chunks that stay in L1
    constexpr int64_t kChunk = 64;
    for (int64_t kk = 0; kk < kc; kk += kChunk) {
      const int64_t kn = min64(kChunk, kc - kk);
      for (int r = 0; r < rows; ++r) {
        const T* src = A + (i0 + r) * lda + k0 + kk;
        float* d = dst + kk * MR + r;
        for (int64_t k = 0; k < kn; ++k) d[k * MR] = to_f32(src[k]);
      }
    }
  }
}

// Packs depth [k0, k0 + kc) x columns [j0, j0 + cols) of op(B) into one panel laid out
// [kc][NR], zero-filling columns past `cols` (the microkernel reads whole vectors).
template <int NR, typename T>
inline void pack_b_panel(float* __restrict dst, const T* __restrict B, int64_t ldb, bool trans,
                         int64_t k0, int64_t kc, int64_t j0, int cols) {
  if (!trans) {  // op(B)(k, j) = B[k][j]: each k is a contiguous run
    if (cols == NR) {
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = B + (k0 + k) * ldb + j0;
        float* d = dst + k * NR;
        for (int j = 0; j < NR; ++j) d[j] = to_f32(src[j]);
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = B + (k0 + k) * ldb + j0;
        float* d = dst + k * NR;
        for (int j = 0; j < cols; ++j) d[j] = to_f32(src[j]);
        for (int j = cols; j < NR; ++j) d[j] = 0.0f;
      }
    }
  } else {  // op(B)(k, j) = B[j][k]: transpose in chunks of k that stay in L1
    constexpr int64_t kChunk = 64;
    for (int64_t kk = 0; kk < kc; kk += kChunk) {
      const int64_t kn = min64(kChunk, kc - kk);
      for (int j = 0; j < cols; ++j) {
        const T* src = B + (j0 + j) * ldb + k0 + kk;
        float* d = dst + kk * NR + j;
        for (int64_t k = 0; k < kn; ++k) d[k * NR] = to_f32(src[k]);
      }
      for (int j = cols; j < NR; ++j)
        for (int64_t k = 0; k < kn; ++k) dst[(kk + k) * NR + j] = 0.0f;
    }
  }
}

// The plain packers, for kernels without faster ones of their own.
struct GenericPacking {
  template <int MR, typename T>
  static void pack_a(float* dst, const T* A, int64_t lda, bool trans, int64_t i0, int rows, int64_t k0, int64_t kc) {
    pack_a_panel<MR>(dst, A, lda, trans, i0, rows, k0, kc);
  }
  template <int NR, typename T>
  static void pack_b(float* dst, const T* B, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0, int cols) {
    pack_b_panel<NR>(dst, B, ldb, trans, k0, kc, j0, cols);
  }
};

// ---- few rows (M <= kSmallM: decoding a token, a short batch) ----
// Packing would copy all of B to use it a few times; instead B is streamed once, straight from
// its storage. `a` holds op(A) packed as M rows of K floats; this computes columns [j0, j1).
// Written with GCC vector types, which each ISA's file lowers to its own registers (zmm, ymm
// pairs, xmm quads); the accumulators are whole vectors so they stay in registers.
// (Vectors pass only between inline functions of one file here, so GCC's note that 64-byte
// vectors change the ABI without AVX-512 is moot; it is silenced for the GEMM files.)
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float f32x16 __attribute__((vector_size(64)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));

inline f32x16 load_x16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline f32x16 load_x16(const uint16_t* p) {
  u16x16 h;
  std::memcpy(&h, p, sizeof h);
  return reinterpret_cast<f32x16>(__builtin_convertvector(h, u32x16) << 16);
}
inline float lane_sum(f32x16 v) {  // a tree, not a 16-deep chain of dependent adds
  float t[16];
  std::memcpy(t, &v, sizeof t);
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) t[l] += t[l + w];
  return t[0];
}

template <int M, typename T>
void small_m_columns_fixed(const Plan& p, const float* __restrict a, int64_t j0, int64_t j1) {
  const T* B = static_cast<const T*>(p.B);
  const int64_t K = p.K;
  auto finish = [&](int i, int64_t j, float acc) {
    float* c = p.C + i * p.ldc + j;
    *c = p.beta == 0.0f ? p.alpha * acc : p.alpha * acc + p.beta * *c;
  };
  if (p.trans_b) {  // B is (N, K): one dot product per (row, column), each row of B read once
    // S chains per row, so that at least four FMA chains are in flight to cover their latency.
    constexpr int S = M == 1 ? 4 : M == 2 ? 2 : 1;
    const int64_t ks = K / (16 * S) * (16 * S), kv = K / 16 * 16;
    for (int64_t j = j0; j < j1; ++j) {
      const T* b = B + j * p.ldb;
      f32x16 acc[M][S] = {};
      for (int64_t k = 0; k < ks; k += 16 * S) {
#pragma GCC unroll 4
        for (int c = 0; c < S; ++c) {
          const f32x16 bv = load_x16(b + k + 16 * c);
#pragma GCC unroll 4
          for (int i = 0; i < M; ++i) acc[i][c] += load_x16(a + i * K + k + 16 * c) * bv;
        }
      }
      for (int64_t k = ks; k < kv; k += 16) {
        const f32x16 bv = load_x16(b + k);
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) acc[i][0] += load_x16(a + i * K + k) * bv;
      }
      for (int i = 0; i < M; ++i) {
        for (int c = 1; c < S; ++c) acc[i][0] += acc[i][c];
        float sum = lane_sum(acc[i][0]);
        for (int64_t k = kv; k < K; ++k) sum += a[i * K + k] * to_f32(b[k]);
        finish(i, j, sum);
      }
    }
  } else {  // B is (K, N): blocks of 64 columns accumulate over k in registers
    int64_t j = j0;
    for (; j + 64 <= j1; j += 64) {
      f32x16 acc[M][4] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T* b = B + k * p.ldb + j;
        const f32x16 b0 = load_x16(b), b1 = load_x16(b + 16), b2 = load_x16(b + 32), b3 = load_x16(b + 48);
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) {
          const float av = a[i * K + k];
          acc[i][0] += av * b0;
          acc[i][1] += av * b1;
          acc[i][2] += av * b2;
          acc[i][3] += av * b3;
        }
      }
      for (int i = 0; i < M; ++i)
        for (int v = 0; v < 4; ++v)
          for (int l = 0; l < 16; ++l) finish(i, j + 16 * v + l, acc[i][v][l]);
    }
    for (; j < j1; ++j)
      for (int i = 0; i < M; ++i) {
        float sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += a[i * K + k] * to_f32(B[k * p.ldb + j]);
        finish(i, j, sum);
      }
  }
}

template <typename T>
void small_m_columns(const Plan& p, const float* a, int64_t j0, int64_t j1) {
  static_assert(kSmallM == 4, "one instance per row count");
  switch (p.M) {
    case 1: return small_m_columns_fixed<1, T>(p, a, j0, j1);
    case 2: return small_m_columns_fixed<2, T>(p, a, j0, j1);
    case 3: return small_m_columns_fixed<3, T>(p, a, j0, j1);
    default: return small_m_columns_fixed<4, T>(p, a, j0, j1);
  }
}

// How packed panels fill the driver's float buffers: kernels that pack bf16 pairs say so with
//   static constexpr int kPerSlot = 2, kDepthPad = ...;  (values per float slot, depth padding)
// and their panels then take MR (or NR) * round_up(kc, kDepthPad) / kPerSlot floats; the others
// pack one float per value, unpadded.
template <class K, class = void>
struct PanelLayout {
  static constexpr int per_slot = 1, depth_pad = 1;
};
template <class K>
struct PanelLayout<K, std::void_t<decltype(K::kPerSlot)>> {
  static constexpr int per_slot = K::kPerSlot, depth_pad = K::kDepthPad;
};

// Kernels may also take a row of tiles at once (one A panel against consecutive B panels, b_stride
// floats apart), to overlap one tile's end with the next one's start (stream_c: Plan::stream_c):
//   static void row(int rows, int64_t cols, int64_t kc, const float* a, const float* b,
//                   int64_t b_stride, float* c, int64_t ldc, float alpha, float beta, bool stream_c);
template <class K, class = void>
struct HasRow : std::false_type {};
template <class K>
struct HasRow<K, std::void_t<decltype(&K::row)>> : std::true_type {};

// Kernels may also read op(A) in place when it is bf16 and not transposed (its rows are then
// contiguous in the depth, as a packed panel's are), for whole MR-row panels and the depth blocks
// and leading dimensions they accept; such panels are then never packed (the others still are):
//   static bool reads_in_place(int64_t lda, int64_t kc);
//   static void row_direct(int64_t cols, int64_t kc, const uint16_t* a, int64_t lda, const float* b,
//                          int64_t b_stride, float* c, int64_t ldc, float alpha, float beta,
//                          bool stream_c);
template <class K, class = void>
struct HasDirectA : std::false_type {};
template <class K>
struct HasDirectA<K, std::void_t<decltype(&K::row_direct)>> : std::true_type {};

// The body each thread runs. Kern provides MR, NR, pack_a and pack_b (as GenericPacking) and
//   static void tile(int rows, int cols, int64_t kc, const float* a, const float* b,
//                    float* c, int64_t ldc, float alpha, float beta);
// which computes C[0:rows, 0:cols] = alpha * (a panel @ b panel) + beta * C (beta == 0: C is
// not read).
template <class Kern, typename T>
void run_units(const Plan& p) {
  constexpr int MR = Kern::MR, NR = Kern::NR;
  const T* A = static_cast<const T*>(p.A);
  const T* B = static_cast<const T*>(p.B);
  Progress& pr = *p.progress;
  const int64_t nkb = ceil_div(p.K, p.kc);
  const int64_t iterations = ceil_div(p.M, p.mc) * nkb;
  const int64_t units = p.ncb * p.nrg;
  // Pack units of iteration i (the last row block may be shorter).
  auto apanels = [&](int64_t i) { return ceil_div(min64(p.mc, p.M - (i / nkb) * p.mc), MR); };
  auto pack_units = [&](int64_t i) { return ceil_div(apanels(i), p.panels_per_pack); };
  // Pack units finished in slot i % 4 once iteration i is packed.
  auto packed_target = [&](int64_t i) {
    int64_t total = 0;
    for (int64_t j = i % 4; j <= i; j += 4) total += pack_units(j);
    return total;
  };
  // Whether iteration depth blocks of kb read whole A panels in place (HasDirectA).
  constexpr bool kDirect = HasDirectA<Kern>::value && std::is_same_v<T, uint16_t>;
  auto direct = [&](int64_t kb) {
    if constexpr (kDirect) return !p.trans_a && Kern::reads_in_place(p.lda, kb);
    (void)kb;
    return false;
  };
  // Where op(A) is read in place, the one packed panel of a row block (its ragged last) is in the
  // buffer's first slot (the plan may then take more rows than the buffer holds); else panel pi.
  auto packed_slot = [](int64_t pi, bool in_place) { return in_place ? 0 : pi; };
  float* bpack = thread_b_buffer();  // holds p.kc x p.nb: nb is at most nc rounded to NR
  int64_t b_iter = -1, b_cb = -1;  // which B block bpack holds

  int64_t it = 0, it_start = 0;  // the iteration of the current ticket, and its first ticket
  for (;;) {
    const int64_t ticket = pr.next.fetch_add(1, std::memory_order_relaxed);
    while (it < iterations && ticket >= it_start + pack_units(it) + units) {
      it_start += pack_units(it) + units;
      ++it;
    }
    if (it >= iterations) return;
    const int64_t m0 = (it / nkb) * p.mc, mb = min64(p.mc, p.M - m0);
    const int64_t k0 = (it % nkb) * p.kc, kb = min64(p.kc, p.K - k0);
    float* apack = p.apack[it & 1];
    // Floats per row of an A panel, or per column of a B panel, for this depth block.
    const int64_t ks = round_up(kb, PanelLayout<Kern>::depth_pad) / PanelLayout<Kern>::per_slot;
    const int64_t local = ticket - it_start;
    if (local < pack_units(it)) {
      // Pack some A panels; their buffer was last read by iteration it - 2.
      if (it >= 2) wait_for(pr.computed[(it - 2) % 4], units * ((it - 2) / 4 + 1));
      const int64_t pend = min64(apanels(it), (local + 1) * p.panels_per_pack);
      const bool in_place = direct(kb);
      for (int64_t pi = local * p.panels_per_pack; pi < pend; ++pi) {
        const int64_t i = pi * MR;
        if (in_place && mb - i >= MR) continue;  // read in place by the compute units
        Kern::template pack_a<MR>(apack + packed_slot(pi, in_place) * MR * ks, A, p.lda, p.trans_a, m0 + i,
                                  static_cast<int>(min64(MR, mb - i)), k0, kb);
      }
      pr.packed[it % 4].fetch_add(1, std::memory_order_release);
      continue;
    }
    // Compute one column block (for one group of rows) of this iteration.
    const int64_t u = local - pack_units(it);
    const int64_t cb = u / p.nrg, rg = u % p.nrg;
    wait_for(pr.packed[it % 4], packed_target(it));
    if (it > 0) wait_for(pr.unit_done[u], it - 1);
    const int64_t ap = apanels(it);
    const int64_t pa0 = ap * rg / p.nrg, pa1 = ap * (rg + 1) / p.nrg;
    const int64_t j0 = cb * p.nb, nbl = min64(p.nb, p.N - j0);
    if (pa0 < pa1 && nbl > 0) {
      if (b_iter != it || b_cb != cb) {
        for (int64_t j = 0; j < nbl; j += NR)
          Kern::template pack_b<NR>(bpack + j * ks, B, p.ldb, p.trans_b, k0, kb, j0 + j,
                                    static_cast<int>(min64(NR, nbl - j)));
        b_iter = it;
        b_cb = cb;
      }
      const float beta = k0 == 0 ? p.beta : 1.0f;
      for (int64_t pi = pa0; pi < pa1; ++pi) {
        const int64_t i = m0 + pi * MR;
        const int rows = static_cast<int>(min64(MR, p.M - i));
        const float* a = apack + packed_slot(pi, direct(kb)) * MR * ks;
        float* crow = p.C + i * p.ldc + j0;
        if constexpr (kDirect) {
          if (rows == MR && direct(kb)) {
            Kern::row_direct(nbl, kb, A + i * p.lda + k0, p.lda, bpack, NR * ks, crow, p.ldc, p.alpha, beta,
                             p.stream_c);
            continue;
          }
        }
        if constexpr (HasRow<Kern>::value) {
          Kern::row(rows, nbl, kb, a, bpack, NR * ks, crow, p.ldc, p.alpha, beta, p.stream_c);
        } else {
          for (int64_t j = 0; j < nbl; j += NR)
            Kern::tile(rows, static_cast<int>(min64(NR, nbl - j)), kb, a, bpack + j * ks, crow + j, p.ldc,
                       p.alpha, beta);
        }
      }
    }
    pr.computed[it % 4].fetch_add(1, std::memory_order_release);
    pr.unit_done[u].store(it, std::memory_order_release);
  }
}

}  // namespace
}  // namespace gemm_detail
}  // namespace pg
