// A vectorisable expf for the kernels that take one per element (softmax cross-entropy, SiLU).
// std::exp is a library call the compiler cannot vectorise without -ffast-math; this is the
// Cephes single-precision polynomial (max error ~1 ulp over the clamped range), in plain C++ so
// PG_CLONES turns it into AVX-512/AVX2 code inside the calling loops.
#pragma once
#include <cstdint>
#include <cstring>

namespace pg {

__attribute__((always_inline)) inline float fast_exp(float x) {
  // exp(-87.3) is the smallest normal float: below it the result is flushed to 0, above 88.3
  // it saturates (2^127 * ~1.3) instead of overflowing the exponent bits.
  const bool underflow = x < -87.3f;
  x = x > 88.3f ? 88.3f : x;
  x = x < -87.3f ? -87.3f : x;
  // x = n ln2 + r with |r| <= ln2 / 2; adding 1.5 * 2^23 rounds to the nearest integer.
  const float kRound = 12582912.0f;
  float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, 4);
  return underflow ? 0.0f : y * scale;
}

}  // namespace pg
