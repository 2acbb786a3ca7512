// Scalar f32 <-> bf16 / f16 conversions (round to nearest even, NaN kept quiet), shared by the
// cast ops, the 16-bit KV cache and the quantized blocks' f16 scales. Internal linkage and always
// inlined: the per-ISA files include this too, and each must keep its own copy, compiled for it.
#pragma once
#include <cstdint>
#include <cstring>

namespace pg {
namespace half {

#define PG_HALF_INLINE static inline __attribute__((always_inline))

PG_HALF_INLINE uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

PG_HALF_INLINE float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

PG_HALF_INLINE uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow to inf
  if (abs < 0x38800000u) {  // subnormal or zero: adding 0.5 lets the FPU round to nearest even
    float a;
    std::memcpy(&a, &abs, 4);
    const float shifted = a + 0.5f;
    uint32_t s;
    std::memcpy(&s, &shifted, 4);
    return static_cast<uint16_t>(sign | (s - 0x3f000000u));
  }
  abs += 0xc8000fffu + ((abs >> 13) & 1u);  // rebias the exponent (-112 << 23), round to nearest even
  return static_cast<uint16_t>(sign | (abs >> 13));
}

PG_HALF_INLINE float f16_to_f32(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: mant * 2^-24
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

#undef PG_HALF_INLINE

}  // namespace half
}  // namespace pg
