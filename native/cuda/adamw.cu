// CUDA twin of native/cpu/adamw.cpp: the fused AdamW step of torch.optim.AdamW (foreach=False),
// f32 master weights and moments updated in place. The scalars are formed on the host in double,
// as the CPU kernel forms them, so both devices apply the same f32 constants. adamw_step_master
// is the same step for a model that computes in bf16 or fp16: it updates the f32 master copy and
// writes the 16-bit parameter, rounded to nearest even from the new master value.
#include <cmath>

#include "common.cuh"
#include "half16.cuh"

namespace pg::cuda {

namespace {

struct AdamwScalars {
  float decay, w1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, grad_scale;
};

// One element's step: m and v updated in place, the new parameter returned.
__device__ __forceinline__ float adamw_element(float param, float& m, float& v, float grad, const AdamwScalars& s) {
  const float g = grad * s.grad_scale;
  const float mi = m;
  const float diff = g - mi;
  const float mn = s.w1 < 0.5f ? mi + s.w1 * diff : g - diff * (1.0f - s.w1);  // torch's lerp
  const float vn = v * s.beta2 + s.one_minus_beta2 * g * g;
  m = mn;
  v = vn;
  const float denom = sqrtf(vn) / s.bc2_sqrt + s.eps;
  return param * s.decay + s.neg_step_size * mn / denom;
}

__global__ void __launch_bounds__(kElementwiseThreads) adamw_kernel(float* param, float* m, float* v, const float* grad,
                                                                    int64_t n, AdamwScalars s) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    param[i] = adamw_element(param[i], m[i], v[i], grad[i], s);
}

// P: the 16-bit parameter type (__nv_bfloat16 or __half).
template <typename P>
__global__ void __launch_bounds__(kElementwiseThreads) adamw_master_kernel(float* master, P* param, float* m, float* v,
                                                                           const float* grad, int64_t n,
                                                                           AdamwScalars s) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float p = adamw_element(master[i], m[i], v[i], grad[i], s);
    master[i] = p;
    param[i] = from_f32<P>(p);
  }
}

AdamwScalars scalars(float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                     float grad_scale) {
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
  return s;
}

}  // namespace

void adamw_step(float* param, float* m, float* v, const float* grad, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, float grad_scale) {
  if (n <= 0) return;
  const AdamwScalars s = scalars(lr, beta1, beta2, eps, weight_decay, step, grad_scale);
  adamw_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(param, m, v, grad, n, s);
  check_launch(describe("adamw_step", {{"n", n}, {"step", step}}));
}

void adamw_step_master(Half16 dtype, float* master, uint16_t* param, float* m, float* v, const float* grad, int64_t n,
                       float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                       float grad_scale) {
  if (n <= 0) return;
  const AdamwScalars s = scalars(lr, beta1, beta2, eps, weight_decay, step, grad_scale);
  if (dtype == Half16::BF16)
    adamw_master_kernel<__nv_bfloat16><<<blocks_for(n), kElementwiseThreads, 0, st()>>>(
        master, as<__nv_bfloat16>(param), m, v, grad, n, s);
  else
    adamw_master_kernel<__half><<<blocks_for(n), kElementwiseThreads, 0, st()>>>(master, as<__half>(param), m, v,
                                                                                  grad, n, s);
  check_launch(describe(dtype == Half16::BF16 ? "adamw_step_master (bf16)" : "adamw_step_master (fp16)",
                        {{"n", n}, {"step", step}}));
}

}  // namespace pg::cuda
