// Private to the GEMM family (gemm.cpp, gemm_avx512.cpp, gemm_avx2.cpp): the blocked driver
// that every ISA variant instantiates with its own register-blocked microkernel.
//
// The algorithm is BLIS's five loops around a microkernel, written for row-major C with the
// vector lanes along N and the elements of A broadcast:
//
//   for mb  (rows of M, up to MC)                          all threads together
//     for kb (depth, up to KC)
//       pack A[mb, kb] into MR-row panels   (shared, L3)   split over all threads, then a barrier
//       for nb (this thread's columns, up to NC)
//         pack B[kb, nb] into NR-col panels (private, L2)
//         for each MR-row panel of A        (the panel, MR x KC, stays in L1)
//           for each NR-col panel of B      (streamed from L2)
//             microkernel: an MR x NR tile of C += A panel @ B panel, in registers
//
// Threads split C into a grid: columns (each thread its own run of NR panels and its own packed
// B in its own L2) and, when N is too narrow to feed every thread, rows within each packed A
// block. Packed A is double buffered so one barrier per (mb, kb) block suffices: a thread can
// only reach the barrier of block i+1 after finishing its tiles of block i, so the buffer of
// block i is free to be packed again as block i+2.
//
// Everything in the anonymous namespace below is compiled separately in each ISA's file, with
// that file's target flags: nothing here may be a non-inline symbol shared across those files.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pg {
namespace gemm_detail {

// One matrix product C = alpha * op(A) @ op(B) + beta * C for one batch item, and how the
// threads share it. A and B are float or uint16_t (bf16) as `bf16` says.
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
  // Blocking (in elements), from the ISA's table, shrunk to fit this problem evenly.
  int64_t mc, kc, nc;
  // Thread grid: nthreads = tm * tn; thread t works on row part t / tn and column part t % tn.
  int nthreads, tm, tn;
  // Shared packed-A buffers (two, each mc * kc floats, aligned to 64 bytes).
  float* apack[2];
  struct Barrier* barrier;
};

// A spinning barrier for the threads of one parallel_for (they all run at once).
struct Barrier {
  std::atomic<int> arrived{0};
  std::atomic<int> generation{0};
  int count = 1;
};
// Defined in gemm.cpp (compiled for the baseline ISA).
void barrier_wait(Barrier& b);
// This thread's private buffer of at least `floats` floats (64-byte aligned), allocated once and
// grown when needed: the one allocation the GEMM kernels make, kept across calls.
float* thread_b_buffer(size_t floats);

using ThreadFn = void (*)(const Plan& plan, int tid);

// What each ISA's file provides: its register block, cache blocking and thread bodies.
struct Isa {
  const char* name;
  int mr, nr;          // register block of the microkernel
  int64_t mc, kc, nc;  // cache blocking caps: packed A block mc x kc, packed B block kc x nc
  ThreadFn run_f32, run_bf16;
  double (*fma_loop)(int64_t iters);  // FLOPs done by a throughput-bound FMA loop (peak estimate)
};
extern const Isa kIsaAvx512;  // gemm_avx512.cpp
extern const Isa kIsaAvx2;    // gemm_avx2.cpp
extern const Isa kIsaScalar;  // gemm.cpp

namespace {

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

// The body each thread runs. Kern provides MR, NR and
//   static void tile(int rows, int cols, int64_t kc, const float* a, const float* b,
//                    float* c, int64_t ldc, float alpha, float beta);
// which computes C[0:rows, 0:cols] = alpha * (a panel @ b panel) + beta * C (beta == 0: C is
// not read).
template <class Kern, typename T>
void run_thread(const Plan& p, int tid) {
  constexpr int MR = Kern::MR, NR = Kern::NR;
  const T* A = static_cast<const T*>(p.A);
  const T* B = static_cast<const T*>(p.B);
  const int ti = tid / p.tn, tj = tid % p.tn;

  // This thread's columns: a contiguous run of NR panels.
  const int64_t npanels = ceil_div(p.N, NR);
  const int64_t n0 = min64(p.N, npanels * tj / p.tn * NR);
  const int64_t n1 = min64(p.N, npanels * (tj + 1) / p.tn * NR);
  // Its column blocks: the run split evenly into blocks of at most nc.
  const int64_t nn = n1 - n0;
  const int64_t nb = nn > 0 ? round_up(ceil_div(nn, ceil_div(nn, p.nc)), NR) : NR;
  float* bpack = thread_b_buffer(static_cast<size_t>(p.kc * nb));

  int iter = 0;
  for (int64_t m0 = 0; m0 < p.M; m0 += p.mc) {
    const int64_t mb = min64(p.mc, p.M - m0);
    const int64_t apanels = ceil_div(mb, MR);
    for (int64_t k0 = 0; k0 < p.K; k0 += p.kc) {
      const int64_t kb = min64(p.kc, p.K - k0);
      float* apack = p.apack[iter & 1];
      ++iter;
      // Pack this thread's share of the A block's panels.
      for (int64_t pi = apanels * tid / p.nthreads; pi < apanels * (tid + 1) / p.nthreads; ++pi) {
        const int64_t i = pi * MR;
        pack_a_panel<MR>(apack + pi * MR * kb, A, p.lda, p.trans_a, m0 + i,
                         static_cast<int>(min64(MR, mb - i)), k0, kb);
      }
      if (p.nthreads > 1) barrier_wait(*p.barrier);
      // This thread's rows of the block.
      const int64_t pa0 = apanels * ti / p.tm, pa1 = apanels * (ti + 1) / p.tm;
      if (pa0 >= pa1 || nn <= 0) continue;
      const float beta = k0 == 0 ? p.beta : 1.0f;
      for (int64_t j0 = n0; j0 < n1; j0 += nb) {
        const int64_t nbl = min64(nb, n1 - j0);
        for (int64_t j = 0; j < nbl; j += NR)
          pack_b_panel<NR>(bpack + j * kb, B, p.ldb, p.trans_b, k0, kb, j0 + j,
                           static_cast<int>(min64(NR, nbl - j)));
        for (int64_t pi = pa0; pi < pa1; ++pi) {
          const int64_t i = m0 + pi * MR;
          const int rows = static_cast<int>(min64(MR, p.M - i));
          const float* ap = apack + pi * MR * kb;
          float* crow = p.C + i * p.ldc;
          for (int64_t j = 0; j < nbl; j += NR) {
            const int cols = static_cast<int>(min64(NR, nbl - j));
            Kern::tile(rows, cols, kb, ap, bpack + j * kb, crow + j0 + j, p.ldc, p.alpha, beta);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace gemm_detail
}  // namespace pg
