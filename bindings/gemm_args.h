// The argument list and checks shared by the GEMM bindings (gemm.cpp: gemm and gemmBf16;
// gemm_bf16.cpp: gemmBf16Compute and gemmBf16ComputeBf16):
//   (transA, transB, M, N, K, alpha, A, aOff, lda, strideA, B, bOff, ldb, strideB,
//    beta, C, cOff, ldc, strideC, batch)
#pragma once
#include <limits>
#include <string>

#include "args.h"

namespace pgnode {
namespace gemm_args {

// Checked x + y.
inline int64_t Add(const Args& a, int64_t x, int64_t y) {
  if (y > std::numeric_limits<int64_t>::max() - x) a.Fail("size overflow");
  return x + y;
}

// Elements spanned by `batch` matrices of rows x cols with row stride ld and batch stride
// `stride` (0 when nothing is read). Requires ld >= cols.
inline int64_t Extent(const Args& a, const char* name, int64_t rows, int64_t cols, int64_t ld, int64_t stride,
                      int64_t batch) {
  if (ld < cols)
    a.Fail(std::string(name) + ": leading dimension " + std::to_string(ld) + " is less than its row width " +
           std::to_string(cols));
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  const int64_t one = Add(a, a.Mul(rows - 1, ld), cols);
  return Add(a, a.Mul(batch - 1, stride), one);
}

}  // namespace gemm_args

// One checked GEMM call: A and B of T (float or bf16 bits), C f32.
template <typename T>
struct GemmCall {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  const T* A;
  int64_t lda, sa;
  const T* B;
  int64_t ldb, sb;
  float* C;
  int64_t ldc, sc, batch;

  explicit GemmCall(const Args& a) {
    using gemm_args::Extent;
    ta = a.Bool(0, "transA");
    tb = a.Bool(1, "transB");
    M = a.Size(2, "M");
    N = a.Size(3, "N");
    K = a.Size(4, "K");
    alpha = static_cast<float>(a.Num(5, "alpha"));
    beta = static_cast<float>(a.Num(14, "beta"));
    lda = a.Size(8, "lda");
    sa = a.Size(9, "strideA");
    ldb = a.Size(12, "ldb");
    sb = a.Size(13, "strideB");
    ldc = a.Size(17, "ldc");
    sc = a.Size(18, "strideC");
    batch = a.Size(19, "batch");
    // A is stored (M, K), or (K, M) when transposed; B (K, N) or (N, K); C (M, N).
    const int64_t na = Extent(a, "A", ta ? K : M, ta ? M : K, lda, sa, batch);
    const int64_t nb = Extent(a, "B", tb ? N : K, tb ? K : N, ldb, sb, batch);
    const int64_t nc = Extent(a, "C", M, N, ldc, sc, batch);
    if (sc != 0 && batch > 1 && M > 0 && N > 0 && sc < (M - 1) * ldc + N)
      a.Fail("strideC " + std::to_string(sc) + " makes the batch's C matrices overlap (0 accumulates into one C)");
    A = a.Ptr<T>(6, "A", na);
    B = a.Ptr<T>(10, "B", nb);
    C = a.Ptr<float>(15, "C", nc);
    // C is written while A and B are still being read: they must not share memory.
    auto overlaps = [&](const void* p, int64_t bytes) {
      const char* c0 = reinterpret_cast<const char*>(C);
      const char* p0 = static_cast<const char*>(p);
      return bytes > 0 && nc > 0 && p0 < c0 + nc * 4 && c0 < p0 + bytes;
    };
    if (overlaps(A, na * static_cast<int64_t>(sizeof(T))) || overlaps(B, nb * static_cast<int64_t>(sizeof(T))))
      a.Fail("C overlaps A or B");
  }
};

}  // namespace pgnode
