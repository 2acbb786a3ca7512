// Dropout against a plain SplitMix64 loop: the mask, the scale, offsets, thread independence,
// in-place use, and backward = forward of dout under the same (seed, offset).
#include <cstdint>
#include <cstring>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

uint64_t splitmix_at(uint64_t seed, uint64_t k) {
  uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::vector<float> reference(const std::vector<float>& x, double p, uint64_t seed, uint64_t offset) {
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double u = static_cast<double>(splitmix_at(seed, offset + i) >> 40) / 16777216.0;
    out[i] = u < p ? 0.0f : x[i] * scale;
  }
  return out;
}

}  // namespace

TEST(dropout_matches_splitmix_reference_at_any_offset_and_thread_count) {
  const int64_t n = 300007;  // several parallel chunks, not a vector multiple
  auto x = pgtest::randn(n, 3);
  for (double p : {0.0, 0.1, 0.5, 0.9}) {
    const auto ref = reference(x, p, 42, 1000);
    std::vector<float> one(n), two(n);
    pg::set_num_threads(1);
    pg::dropout_forward(one.data(), x.data(), n, p, 42, 1000);
    pg::set_num_threads(2);
    pg::dropout_forward(two.data(), x.data(), n, p, 42, 1000);
    CHECK(std::memcmp(one.data(), ref.data(), n * sizeof(float)) == 0);
    CHECK(std::memcmp(two.data(), ref.data(), n * sizeof(float)) == 0);
  }
}

TEST(dropout_in_place_and_backward_reuse_the_mask) {
  const int64_t n = 4099;
  auto x = pgtest::randn(n, 5);
  auto g = pgtest::randn(n, 6);
  std::vector<float> y(n), inplace = x, dx(n);
  pg::dropout_forward(y.data(), x.data(), n, 0.3, 7, 11);
  pg::dropout_forward(inplace.data(), inplace.data(), n, 0.3, 7, 11);
  CHECK(std::memcmp(y.data(), inplace.data(), n * sizeof(float)) == 0);
  pg::dropout_backward(dx.data(), g.data(), n, 0.3, 7, 11);
  const auto ref = reference(g, 0.3, 7, 11);
  CHECK(std::memcmp(dx.data(), ref.data(), n * sizeof(float)) == 0);
  for (int64_t i = 0; i < n; ++i) CHECK((y[i] == 0.0f) == (dx[i] == 0.0f) || x[i] == 0.0f || g[i] == 0.0f);
}
