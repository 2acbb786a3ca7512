// Loss scaling on the CPU (loss_scale.h): the twin of native/cuda/loss_scale.cu's unscale_check.
// A bandwidth-bound pass over each gradient: multiply by 1 / scale, note any inf or NaN.
#include "patentgpt/loss_scale.h"

namespace pg {

void unscale_check(float* out, const float* grad, int64_t n, float inv_scale, int32_t* found_inf) {
  // x - x is 0 for finite x and NaN for inf or NaN: a branch-free test the compiler vectorises.
  float probe = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    probe += g - g;
    out[i] = g * inv_scale;
  }
  if (probe != 0.0f) *found_inf = 1;  // NaN != 0 too
}

}  // namespace pg
