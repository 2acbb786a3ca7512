// Shared by test_gemm.cpp and test_gemm_bf16.cpp: a GEMM test case, its operands (random, in the
// case's layout) and the reference bf16 rounding.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "check.h"

namespace pgtest {

// f32 -> bf16, round to nearest, ties to even (finite inputs), and back.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct GemmCase {
  int64_t M, N, K;
  bool ta, tb;
  int64_t pad = 0;    // extra elements per row (lda, ldb, ldc beyond the row width)
  int64_t batch = 1;
  bool bcast_a = false, bcast_b = false;
  float alpha = 1.0f, beta = 0.0f;
};

// A case's operands: A, B and C's starting values (randn), A and B rounded to bf16, and the
// leading dimensions and batch strides (0 for a broadcast operand) to pass to the GEMM.
struct GemmOperands {
  int64_t lda, ldb, ldc, sa, sb, sc;
  std::vector<float> A, B, C0;
  std::vector<uint16_t> Ah, Bh;

  GemmOperands(const GemmCase& c, unsigned seed) {
    const int64_t arows = c.ta ? c.K : c.M, acols = c.ta ? c.M : c.K;
    const int64_t brows = c.tb ? c.N : c.K, bcols = c.tb ? c.K : c.N;
    lda = acols + c.pad;
    ldb = bcols + c.pad;
    ldc = c.N + c.pad;
    sa = c.bcast_a ? 0 : arows * lda;
    sb = c.bcast_b ? 0 : brows * ldb;
    sc = c.M * ldc;
    const int64_t na = c.bcast_a ? arows * lda : sa * c.batch, nb = c.bcast_b ? brows * ldb : sb * c.batch;
    A = randn(static_cast<size_t>(na), seed);
    B = randn(static_cast<size_t>(nb), seed + 1);
    C0 = randn(static_cast<size_t>(sc * c.batch), seed + 2);
    Ah.resize(A.size());
    Bh.resize(B.size());
    for (size_t i = 0; i < A.size(); ++i) Ah[i] = to_bf16(A[i]);
    for (size_t i = 0; i < B.size(); ++i) Bh[i] = to_bf16(B[i]);
  }
};

// Products that cross every cache block of the f32 and bf16 kernels: K past kc (384; 768 for
// AMX) with a remainder, N past nc (480) per thread, M past several row panels and past mc (2016).
inline std::vector<GemmCase> blocked_cases() {
  return {{131, 1003, 777, false, false}, {131, 1003, 777, true, true}, {300, 517, 401, false, true, 3},
          {45, 97, 1200, true, false},    {2100, 40, 20, false, false}, {2100, 70, 50, true, true}};
}

}  // namespace pgtest
