// Rotary position embedding in the Hugging Face LLaMA layout (rotate_half: pair i couples
// element i with element i + D/2), forward and backward (the rotation by the opposite angle).
// Both directions act on activations and write (=) their output; out may alias x, dx may alias dout.
//
// Angles follow HF's float32 arithmetic, not exact math: inv_freq = 1 / theta^(2i/D) rounded to
// f32, the position divided by pos_scale in f32, their product rounded to f32, then cos/sin of
// that f32 angle (computed in double, rounded once). At 16K positions the f32 rounding of the
// angle is ~1e-3 rad, so this is what keeps parity with torch at long context.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

constexpr int64_t kPairBlock = 256;  // pairs per stack block of cos/sin (one block for D <= 512)

// Rotates one head's pairs [0, len) of a block: x1 = x[i], x2 = x[i + half];
// out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin (sin negated for backward). Inputs are copied
// to the stack first so the loop vectorises even when out aliases x.
PG_CLONES void rotate(float* out1, float* out2, const float* x1, const float* x2, const float* cos_,
                      const float* sin_, int64_t len) {
  float a[kPairBlock], b[kPairBlock];
  std::memcpy(a, x1, static_cast<size_t>(len) * sizeof(float));
  std::memcpy(b, x2, static_cast<size_t>(len) * sizeof(float));
  for (int64_t i = 0; i < len; ++i) {
    out1[i] = a[i] * cos_[i] - b[i] * sin_[i];
    out2[i] = b[i] * cos_[i] + a[i] * sin_[i];
  }
}

// HF's f32 inverse frequencies: 1.0 / (base ** (arange(0, D, 2).float() / D)), all in f32.
float inv_freq_at(int64_t i, int64_t D, float theta) {
  const float e = static_cast<float>(2 * i) / static_cast<float>(D);
  return 1.0f / static_cast<float>(std::pow(static_cast<double>(theta), static_cast<double>(e)));
}

// cos and sin of every pair's angle at positions [0, n), (n, D/2) each, for one (theta, pos_scale,
// D): the same numbers the loop below computes, made once. A training step calls RoPE for q and k
// of every layer, forward and backward, over the same positions; recomputing the angles in double
// took more time than the rotations (~40 trig calls per pair).
struct RopeTable {
  float theta, pos_scale;
  int64_t D, n;
  std::vector<float> cos, sin;
};

constexpr int64_t kMaxTableFloats = int64_t(1) << 23;  // per cos or sin array (32 MB); beyond: computed per call

// Positions a table may cover at head size D: 128K at D = 128, 512K at D = 32.
int64_t max_table_positions(int64_t D) { return kMaxTableFloats / std::max<int64_t>(1, D / 2); }
constexpr size_t kMaxTables = 8;

// The table for these settings covering positions [0, max_pos] (below max_table_positions), made
// (or grown to twice its size, within that bound) under a lock; the shared pointer keeps it alive while a call reads it.
std::shared_ptr<const RopeTable> rope_table(float theta, float pos_scale, int64_t D, int64_t max_pos) {
  static std::mutex mu;
  static std::vector<std::shared_ptr<const RopeTable>> tables;  // most recently used last
  std::lock_guard<std::mutex> lock(mu);
  int64_t n = max_pos + 1;
  for (size_t k = 0; k < tables.size(); ++k) {
    const auto& t = tables[k];
    if (t->theta != theta || t->pos_scale != pos_scale || t->D != D) continue;
    auto hit = t;
    tables.erase(tables.begin() + static_cast<std::ptrdiff_t>(k));
    if (hit->n > max_pos) {
      tables.push_back(hit);
      return hit;
    }
    n = std::max(n, 2 * hit->n);
    break;
  }
  n = std::min(n, max_table_positions(D));
  auto t = std::make_shared<RopeTable>();
  const int64_t half = D / 2;
  *t = RopeTable{theta, pos_scale, D, n, std::vector<float>(static_cast<size_t>(n * half)), std::vector<float>(static_cast<size_t>(n * half))};
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[static_cast<size_t>(i)] = inv_freq_at(i, D, theta);
  RopeTable* w = t.get();
  parallel_for(n, std::max<int64_t>(1, kElementwiseGrain / (half * 40)), [&](int64_t p0, int64_t p1) {
    for (int64_t q = p0; q < p1; ++q) {
      const float p = static_cast<float>(q) / pos_scale;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(inv_freq[static_cast<size_t>(i)] * p);  // rounded to f32 first, as in HF
        w->cos[static_cast<size_t>(q * half + i)] = static_cast<float>(std::cos(angle));
        w->sin[static_cast<size_t>(q * half + i)] = static_cast<float>(std::sin(angle));
      }
    }
  });
  if (tables.size() >= kMaxTables) tables.erase(tables.begin());
  tables.push_back(t);
  return t;
}

// out, x (T, H, D); pos (T). sign = +1 rotates by the angle, -1 by its opposite.
void rope_apply(float* out, const float* x, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                float pos_scale, float sign) {
  if (T == 0 || H == 0 || D == 0) return;
  const int64_t half = D / 2;
  int64_t lo = 0, hi = 0;
  for (int64_t t = 0; t < T; ++t) lo = std::min<int64_t>(lo, pos[t]), hi = std::max<int64_t>(hi, pos[t]);
  const bool tabled = lo >= 0 && hi < max_table_positions(D);
  const std::shared_ptr<const RopeTable> table = tabled ? rope_table(theta, pos_scale, D, hi) : nullptr;
  const int64_t row_work = H * D * 4 + (table ? half : half * 40);  // trig dominates short rows
  const int64_t grain = row_work >= kElementwiseGrain ? 1 : kElementwiseGrain / row_work;
  for (int64_t p0 = 0; p0 < half; p0 += kPairBlock) {
    const int64_t len = half - p0 < kPairBlock ? half - p0 : kPairBlock;
    float inv_freq[kPairBlock];  // (len)
    if (!table)
      for (int64_t i = 0; i < len; ++i) inv_freq[i] = inv_freq_at(p0 + i, D, theta);
    parallel_for(T, grain, [&](int64_t t0, int64_t t1) {
      float cos_[kPairBlock], sin_[kPairBlock];
      for (int64_t t = t0; t < t1; ++t) {
        if (table) {
          const float* c = table->cos.data() + pos[t] * half + p0;
          const float* s = table->sin.data() + pos[t] * half + p0;
          for (int64_t i = 0; i < len; ++i) cos_[i] = c[i], sin_[i] = sign * s[i];
        } else {
          const float p = static_cast<float>(pos[t]) / pos_scale;
          for (int64_t i = 0; i < len; ++i) {
            const double angle = static_cast<double>(inv_freq[i] * p);  // rounded to f32 first, as in HF
            cos_[i] = static_cast<float>(std::cos(angle));
            sin_[i] = sign * static_cast<float>(std::sin(angle));
          }
        }
        for (int64_t h = 0; h < H; ++h) {
          const int64_t base = (t * H + h) * D + p0;
          rotate(out + base, out + base + half, x + base, x + base + half, cos_, sin_, len);
        }
      }
    });
  }
}

}  // namespace

void rope_forward(float* out, const float* x, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                  float pos_scale) {
  rope_apply(out, x, pos, T, H, D, theta, pos_scale, 1.0f);
}

void rope_backward(float* dx, const float* dout, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                   float pos_scale) {
  rope_apply(dx, dout, pos, T, H, D, theta, pos_scale, -1.0f);
}

}  // namespace pg
