// Private to the GEMV family (gemv.cpp, gemv_avx512.cpp, gemv_avx2.cpp): the register-blocked
// skinny product that each ISA's file instantiates with its vector width and tile shapes.
//
// A tile is MR rows of x against NR rows of W (NR outputs each): per step of k it loads MR
// vectors of x and NR of W and does MR x NR FMAs into whole-vector accumulators, reduced across
// lanes once at the end of K. W rows are read straight from the model's storage, each row once
// per tile of x rows. The tile's shape depends on M (rows_by_m): a single row of x wants many W
// rows in flight (measured on Zen 4 with K = 768: 16 rows streamed at once read W at the read
// bandwidth, 4 rows at two thirds of it: each row is only 48 cache lines, too short for the
// hardware prefetcher to run ahead of one stream); more rows of x want each W vector reused.
//
// Everything in the anonymous namespace is compiled separately in each ISA's file with that
// file's flags: nothing here may be a non-inline symbol shared across those files.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "patentgpt/gemv.h"

// Vectors pass only between inline functions of one file (see gemm_kernels.h).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace pg {
namespace gemv_detail {

// Rows [j0, j1) of one target on the calling thread, per ISA.
using RowsFn = void (*)(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0,
                        int64_t j1);
void rows_avx512(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1);
void rows_avx2(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1);
// Rows of W the threads share out in (the same on every ISA): a multiple of every tile's NR,
// so only a target's last tile is partial.
constexpr int64_t kTileRows = 48;

namespace {

template <int R, class F>
inline void with_count(int n, F&& f) {  // f(integral_constant<n>) for 1 <= n <= R
  if constexpr (R > 1) {
    if (n < R) return with_count<R - 1>(n, f);
  }
  f(std::integral_constant<int, R>{});
}

template <int VW>
struct Vec {
  typedef float type __attribute__((vector_size(4 * VW)));
};

template <int VW>
inline typename Vec<VW>::type load(const float* p) {
  typename Vec<VW>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Lanes [Off, Off + VW / 2) of v.
template <int VW, int Off, size_t... I>
inline typename Vec<VW / 2>::type half(typename Vec<VW>::type v, std::index_sequence<I...>) {
  return __builtin_shufflevector(v, v, (static_cast<int>(I) + Off)...);
}

// The sum of v's lanes by halving (lanes l and l + VW / 2 first): a tree, not a VW-deep chain,
// in vector registers (through memory it cost a fifth of the M = 16 product's time).
template <int VW>
inline float lane_sum(typename Vec<VW>::type v) {
  if constexpr (VW == 2) {
    return v[0] + v[1];
  } else {
    constexpr auto lanes = std::make_index_sequence<VW / 2>{};
    return lane_sum<VW / 2>(half<VW, 0>(v, lanes) + half<VW, VW / 2>(v, lanes));
  }
}

// y[m][n] (+)= dot(x[m], w[n]) for m < MR, n < NR. While k is in [pf0, pf1), the same columns of
// `next` (the W tile after this one; null for none) are prefetched, into L2: on Zen 4 this
// streams W 10-15% faster than the hardware prefetcher alone for every M (into L1 it was slower
// for one row: the L1's few miss buffers fill up).
template <int VW, int MR, int NR>
inline void tile(const float* __restrict x, int64_t ldx, const float* __restrict w, int64_t ldw, int64_t K,
                 float* __restrict y, int64_t ldy, bool accumulate, const float* next, int64_t pf0, int64_t pf1) {
  using V = typename Vec<VW>::type;
  V acc[MR][NR];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) acc[m][n] = V{};
  const int64_t kv = K / VW * VW;
  auto step = [&](int64_t k, auto prefetch) __attribute__((always_inline)) {
    V wv[NR];
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) {
      wv[n] = load<VW>(w + n * ldw + k);
      if constexpr (decltype(prefetch)::value) __builtin_prefetch(next + n * ldw + k, 0, 2);
    }
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const V xv = load<VW>(x + m * ldx + k);
#pragma GCC unroll 16
      for (int n = 0; n < NR; ++n) acc[m][n] += xv * wv[n];
    }
  };
  if (next == nullptr) pf0 = pf1 = kv;
  int64_t k = 0;
  for (; k < pf0; k += VW) step(k, std::false_type{});
  for (; k < pf1; k += VW) step(k, std::true_type{});
  for (; k < kv; k += VW) step(k, std::false_type{});
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) {
      float s = lane_sum<VW>(acc[m][n]);
      for (int64_t kk = kv; kk < K; ++kk) s += x[m * ldx + kk] * w[n * ldw + kk];
      float* out = y + m * ldy + n;
      *out = accumulate ? *out + s : s;
    }
}

// Rows [j0, j1) of t: W tiles of NR rows in order, each against every MR-row tile of x (the
// passes). The next W tile is prefetched meanwhile, spread over the passes (pass p fetches the
// p-th share of its columns): all in one pass, as a burst, it was 10% slower at M = 16.
template <int VW, int MR, int NR>
void rows_impl(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  const int64_t passes = (M + MR - 1) / MR, vectors = K / VW;
  for (int64_t j = j0; j < j1; j += NR) {
    const int nr = static_cast<int>(j1 - j < NR ? j1 - j : NR);
    const float* w = t.w + j * t.ldw;
    const float* next = j + 2 * NR <= j1 ? w + NR * t.ldw : nullptr;
    for (int64_t m0 = 0, p = 0; m0 < M; m0 += MR, ++p) {
      const int mr = static_cast<int>(M - m0 < MR ? M - m0 : MR);
      const int64_t pf0 = vectors * p / passes * VW, pf1 = vectors * (p + 1) / passes * VW;
      with_count<MR>(mr, [&](auto mc) {
        with_count<NR>(nr, [&](auto nc) {
          tile<VW, decltype(mc)::value, decltype(nc)::value>(x + m0 * ldx, ldx, w, t.ldw, K, t.y + m0 * t.ldy + j,
                                                              t.ldy, t.accumulate, next, pf0, pf1);
        });
      });
    }
  }
}

// The tile shape for M rows: one row (NR1 rows of W in flight), two or three (MR2 x NR2), four
// and more (MR4 x NR4).
template <int VW, int NR1, int MR2, int NR2, int MR4, int NR4>
void rows_by_m(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1) {
  static_assert(kTileRows % NR1 == 0 && kTileRows % NR2 == 0 && kTileRows % NR4 == 0, "tiles must not straddle");
  if (M == 1)
    rows_impl<VW, 1, NR1>(t, x, ldx, M, K, j0, j1);
  else if (M < MR4)
    rows_impl<VW, MR2, NR2>(t, x, ldx, M, K, j0, j1);
  else
    rows_impl<VW, MR4, NR4>(t, x, ldx, M, K, j0, j1);
}

}  // namespace
}  // namespace gemv_detail
}  // namespace pg
