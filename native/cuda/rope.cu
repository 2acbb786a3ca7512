// CUDA twin of native/cpu/rope.cpp: rotary embedding in the Hugging Face LLaMA layout (pair i
// couples elements i and i + D/2), with the CPU's f32 angle arithmetic (inv_freq rounded to f32,
// position / pos_scale in f32, their product in f32, cos/sin of it in f64 rounded once), so the
// two devices agree to the last bit of the angle. out may alias x (each thread owns its pair).
#include "common.cuh"

namespace pg::cuda {

namespace {

// A thread per (t, h, i) pair; sign -1 rotates by the opposite angle (backward).
__global__ void __launch_bounds__(kElementwiseThreads) rope_kernel(float* out, const float* x, const int32_t* pos,
                                                                   int64_t T, int64_t H, int64_t D, float theta,
                                                                   float pos_scale, float sign) {
  const int64_t half = D / 2, pairs = T * H * half;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < pairs;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = p % half, th = p / half, t = th / H;
    const float e = static_cast<float>(2 * i) / static_cast<float>(D);
    const float inv_freq = 1.0f / static_cast<float>(pow(static_cast<double>(theta), static_cast<double>(e)));
    const float ps = static_cast<float>(pos[t]) / pos_scale;
    const double angle = static_cast<double>(inv_freq * ps);
    const float c = static_cast<float>(cos(angle)), s = sign * static_cast<float>(sin(angle));
    const int64_t base = th * D + i;
    const float a = x[base], b = x[base + half];
    out[base] = a * c - b * s;
    out[base + half] = b * c + a * s;
  }
}

void rope(const char* name, float* out, const float* x, const int32_t* pos, int64_t T, int64_t H, int64_t D,
          float theta, float pos_scale, float sign) {
  const int64_t pairs = T * H * (D / 2);
  if (pairs <= 0) return;
  rope_kernel<<<blocks_for(pairs), kElementwiseThreads, 0, st()>>>(out, x, pos, T, H, D, theta, pos_scale, sign);
  check_launch(describe(name, {{"T", T}, {"H", H}, {"D", D}}));
}

}  // namespace

void rope_forward(float* out, const float* x, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                  float pos_scale) {
  rope("rope_forward", out, x, pos, T, H, D, theta, pos_scale, 1.0f);
}

void rope_backward(float* dx, const float* dout, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                   float pos_scale) {
  rope("rope_backward", dx, dout, pos, T, H, D, theta, pos_scale, -1.0f);
}

}  // namespace pg::cuda
