// Fused AdamW step, the arithmetic of torch.optim.AdamW (foreach=False) step for step:
//   g = grad * grad_scale                     (clip_grad_norm_ scales grads in place first)
//   p *= 1 - lr * wd                          (decoupled weight decay)
//   m = lerp(m, g, 1 - b1)                    (torch's lerp_, = b1 m + (1 - b1) g)
//   v = b2 v + (1 - b2) g^2
//   p += -(lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Scalars are formed in double, as torch forms them in Python, then used in f32.
// Updates param, m and v in place; grad is read only.
#include <cmath>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace pg {

namespace {

struct AdamwScalars {
  float decay, w1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, grad_scale;
};

constexpr int64_t kBlock = 64;

// sq (n) = sqrt(sq). std::sqrt keeps a scalar errno branch (GCC 12 cannot prove v >= 0), which
// stops the compiler vectorising any loop holding it; the SSE2 instruction is in every x86-64.
inline void sqrt_block(float* sq, int64_t n) {
#if defined(__SSE2__)
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(sq + i, _mm_sqrt_ps(_mm_loadu_ps(sq + i)));
  for (; i < n; ++i) sq[i] = std::sqrt(sq[i]);
#else
  for (int64_t i = 0; i < n; ++i) sq[i] = std::sqrt(sq[i]);
#endif
}

// torch's lerp(self, end, w): self + w (end - self) for |w| < 0.5, else end - (end - self)(1 - w).
// Blocks of kBlock: moments (vectorised), sqrt(v) (SSE), parameter update (vectorised).
PG_CLONES void adamw_range(float* param, float* m, float* v, const float* grad, int64_t n, AdamwScalars s) {
  const bool small_w = s.w1 < 0.5f;
  float sq[kBlock];  // sqrt(v) of the block
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = n - b < kBlock ? n - b : kBlock;
    float* mb = m + b;
    float* vb = v + b;
    const float* gb = grad + b;
    for (int64_t i = 0; i < len; ++i) {
      const float g = gb[i] * s.grad_scale;
      const float diff = g - mb[i];
      mb[i] = small_w ? mb[i] + s.w1 * diff : g - diff * (1.0f - s.w1);
      vb[i] = vb[i] * s.beta2 + s.one_minus_beta2 * g * g;  // addcmul: (value * t1) * t2
      sq[i] = vb[i];
    }
    sqrt_block(sq, len);
    float* pb = param + b;
    for (int64_t i = 0; i < len; ++i) {
      const float denom = sq[i] / s.bc2_sqrt + s.eps;
      pb[i] = pb[i] * s.decay + s.neg_step_size * mb[i] / denom;  // addcdiv: (value * t1) / t2
    }
  }
}

}  // namespace

// param, m, v, grad (n)
void adamw_step(float* param, float* m, float* v, const float* grad, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, float grad_scale) {
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), t);
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), t);
  AdamwScalars s;
  s.decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
  s.w1 = static_cast<float>(1.0 - static_cast<double>(beta1));
  s.beta2 = beta2;
  s.one_minus_beta2 = static_cast<float>(1.0 - static_cast<double>(beta2));
  s.neg_step_size = static_cast<float>(-(static_cast<double>(lr) / bc1));
  s.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  s.eps = eps;
  s.grad_scale = grad_scale;
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    adamw_range(param + b, m + b, v + b, grad + b, e - b, s);
  });
}

}  // namespace pg
