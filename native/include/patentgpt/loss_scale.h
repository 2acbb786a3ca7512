// The CPU twin of the CUDA loss-scaling kernel (cuda_ops.h unscale_check; host rule:
// cuda_loss_scale.h): the trainer unscales every f32 gradient by 1 / scale and raises one flag
// when any of them is inf or NaN, with the same call on either device (bindings/loss_scale.cpp).
// Kept out of ops.h so the loss-scaling files stay together.
#pragma once
#include <cstdint>

namespace pg {

// out (n) = grad (n) * inv_scale in f32 (out may be grad); *found_inf = 1 when any grad[i] is inf
// or NaN, else left as it was (the flag is only raised: one flag collects a step's tensors).
void unscale_check(float* out, const float* grad, int64_t n, float inv_scale, int32_t* found_inf);

}  // namespace pg
