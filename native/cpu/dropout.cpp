// Inverted dropout (torch.nn.functional.dropout): out = keep ? x / (1 - p) : 0, elementwise.
// The mask is not stored: element i of a call is kept or dropped by a counter-based generator,
// the (offset + i)-th output of SplitMix64 seeded with `seed`, so the same (seed, offset) gives the
// same mask whatever the thread count or split, and backward regenerates it instead of saving n
// bytes per call. out/dx may alias x/dout (each element reads only its own input).
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

// SplitMix64 (Steele, Lea, Flood 2014): output k of the generator seeded with s is mix(s + (k + 1) * gamma).
inline uint64_t splitmix64_at(uint64_t seed, uint64_t k) {
  uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Dropped when the top 24 bits, as u in [0, 1) with 2^-24 steps, fall below p: the comparison is
// on integers, u < p <=> bits < ceil(p * 2^24), exact for every p the caller passes.
inline uint32_t drop_threshold(double p) {
  double t = p * 16777216.0;
  uint32_t ti = static_cast<uint32_t>(t);
  return static_cast<double>(ti) < t ? ti + 1 : ti;
}

// out, x (n): elements [start, start + n) of the call.
PG_CLONES void dropout_range(float* out, const float* x, int64_t n, uint64_t seed, uint64_t first,
                             uint32_t threshold, float keep_scale) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(splitmix64_at(seed, first + static_cast<uint64_t>(i)) >> 40);
    out[i] = bits < threshold ? 0.0f : x[i] * keep_scale;
  }
}

void dropout_apply(float* out, const float* x, int64_t n, double p, uint64_t seed, uint64_t offset) {
  const uint32_t threshold = drop_threshold(p);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
  parallel_for(n, kElementwiseGrain / 4, [&](int64_t s, int64_t e) {
    dropout_range(out + s, x + s, e - s, seed, offset + static_cast<uint64_t>(s), threshold, keep_scale);
  });
}

}  // namespace

void dropout_forward(float* out, const float* x, int64_t n, double p, uint64_t seed, uint64_t offset) {
  dropout_apply(out, x, n, p, seed, offset);
}

// The op is linear in x with the same mask and scale, so dx = dropout(dout) under the same (seed, offset).
void dropout_backward(float* dx, const float* dout, int64_t n, double p, uint64_t seed, uint64_t offset) {
  dropout_apply(dx, dout, n, p, seed, offset);
}

}  // namespace pg
