// CUDA twin of native/cpu/adamw.cpp: the fused AdamW step of torch.optim.AdamW (foreach=False),
// f32 master weights and moments updated in place. The scalars are formed on the host in double,
// as the CPU kernel forms them, so both devices apply the same f32 constants.
#include <cmath>

#include "common.cuh"

namespace pg::cuda {

namespace {

struct AdamwScalars {
  float decay, w1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, grad_scale;
};

__global__ void __launch_bounds__(kElementwiseThreads) adamw_kernel(float* param, float* m, float* v, const float* grad,
                                                                    int64_t n, AdamwScalars s) {
  const bool small_w = s.w1 < 0.5f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = grad[i] * s.grad_scale;
    const float mi = m[i];
    const float diff = g - mi;
    const float mn = small_w ? mi + s.w1 * diff : g - diff * (1.0f - s.w1);  // torch's lerp
    const float vn = v[i] * s.beta2 + s.one_minus_beta2 * g * g;
    m[i] = mn;
    v[i] = vn;
    const float denom = sqrtf(vn) / s.bc2_sqrt + s.eps;
    param[i] = param[i] * s.decay + s.neg_step_size * mn / denom;
  }
}

}  // namespace

void adamw_step(float* param, float* m, float* v, const float* grad, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, float grad_scale) {
  if (n <= 0) return;
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
  adamw_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(param, m, v, grad, n, s);
  check_launch(describe("adamw_step", {{"n", n}, {"step", step}}));
}

}  // namespace pg::cuda
