// Elementwise ops and reductions: residual add, accumulate, STREAM's triad, fill, scale, dtype
// casts, sums.
// Memory-bound loops: written plainly, vectorised by the compiler (PG_CLONES), split over the pool.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

PG_CLONES void add_range(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
PG_CLONES void axpy_range(float* y, const float* x, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
PG_CLONES void triad_range(float* out, const float* a, const float* b, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + alpha * b[i];
}
PG_CLONES void scale_range(float* x, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}
// Blocks of 256 summed in 16 f32 lanes (vectorisable, each lane adds 16 values), folded into
// f64: vector speed with error far below a plain f32 running sum.
template <bool kSquare>
inline double blocked_sum(const float* x, int64_t n) {
  double total = 0;
  int64_t i = 0;
  for (; i + 256 <= n; i += 256) {
    float lanes[16] = {};
    for (int64_t j = 0; j < 256; j += 16)
      for (int l = 0; l < 16; ++l) lanes[l] += kSquare ? x[i + j + l] * x[i + j + l] : x[i + j + l];
    double block = 0;
    for (int l = 0; l < 16; ++l) block += lanes[l];
    total += block;
  }
  for (; i < n; ++i) total += kSquare ? static_cast<double>(x[i]) * x[i] : x[i];
  return total;
}
PG_CLONES double sum_range(const float* x, int64_t n) { return blocked_sum<false>(x, n); }
PG_CLONES double sum_squares_range(const float* x, int64_t n) { return blocked_sum<true>(x, n); }

double parallel_sum(const float* x, int64_t n, double (*range)(const float*, int64_t)) {
  // Fixed chunking (independent of the thread count) keeps the result bit-identical
  // whatever num_threads() is.
  const int64_t chunk = kElementwiseGrain;
  int64_t nchunks = (n + chunk - 1) / chunk;
  if (nchunks <= 1) return range(x, n);
  std::vector<double> partial(static_cast<size_t>(nchunks));
  parallel_for(nchunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
      partial[c] = range(x + lo, hi - lo);
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow to inf
  if (abs < 0x38800000u) {                                                // subnormal or zero
    float a;
    std::memcpy(&a, &abs, 4);
    // Adding 0.5 aligns the mantissa so the FPU does round-to-nearest-even for us.
    float shifted = a + 0.5f;
    uint32_t s;
    std::memcpy(&s, &shifted, 4);
    return static_cast<uint16_t>(sign | (s - 0x3f000000u));
  }
  uint32_t mant_odd = (abs >> 13) & 1u;
  abs += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to nearest even
  return static_cast<uint16_t>(sign | (abs >> 13));
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: value = mant * 2^-24
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename Fn>
void parallel_elementwise(int64_t n, Fn fn) {
  parallel_for(n, kElementwiseGrain, [&](int64_t begin, int64_t end) { fn(begin, end); });
}

}  // namespace

void add_forward(float* out, const float* a, const float* b, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { add_range(out + s, a + s, b + s, e - s); });
}

void axpy(float* y, const float* x, float alpha, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { axpy_range(y + s, x + s, alpha, e - s); });
}

void triad(float* out, const float* a, const float* b, float alpha, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { triad_range(out + s, a + s, b + s, alpha, e - s); });
}

void scale_inplace(float* x, float alpha, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { scale_range(x + s, alpha, e - s); });
}

void fill(float* x, float value, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { std::fill(x + s, x + e, value); });
}

double sum(const float* x, int64_t n) { return parallel_sum(x, n, sum_range); }
double sum_squares(const float* x, int64_t n) { return parallel_sum(x, n, sum_squares_range); }

void cast_f32_to_bf16(uint16_t* out, const float* x, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) out[i] = f32_to_bf16(x[i]);
  });
}
void cast_bf16_to_f32(float* out, const uint16_t* x, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) out[i] = bf16_to_f32(x[i]);
  });
}
void cast_f32_to_f16(uint16_t* out, const float* x, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) out[i] = f32_to_f16(x[i]);
  });
}
void cast_f16_to_f32(float* out, const uint16_t* x, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) out[i] = f16_to_f32(x[i]);
  });
}

}  // namespace pg
