// Dynamic loss scaling for fp16 training, the rule of torch.cuda.amp.GradScaler: the loss is
// multiplied by `scale` before backward; each step the gradients are unscaled and checked for
// inf/NaN on the device (cuda::unscale_check, cuda_ops.h: one flag for all tensors, read back once
// per step); on overflow the step is skipped and the scale halved, and after growth_interval
// finite steps in a row it doubles. Plain C++ (native/cuda/host/loss_scale.cpp), compiled into
// every build and tested on CPU (native/test/test_cuda_loss_scale.cpp). bf16 needs none of this:
// its range is f32's.
#pragma once
#include <cstdint>
#include <string>

namespace pg {

struct DynamicLossScale {
  float scale = 65536.0f;           // 2^16, torch's init_scale
  float growth_factor = 2.0f;
  float backoff_factor = 0.5f;
  int64_t growth_interval = 2000;   // finite steps in a row before the scale grows
  float min_scale = 1.0f / 16384;   // 2^-14, the smallest normal fp16: backoff stops there
  int64_t good_steps = 0;           // finite steps since the scale last changed
  int64_t skipped_steps = 0;        // steps skipped for overflow, in all

  float inv_scale() const { return 1.0f / scale; }
  // After a step's gradients were checked: on overflow (found_inf) backs the scale off, restarts
  // the count and returns false (skip the optimizer step; gradients are garbage); otherwise counts
  // the step, grows the scale after growth_interval of them (unless it would overflow f32) and
  // returns true (apply the step with the unscaled gradients).
  bool update(bool found_inf);
  // An empty string, or what is wrong with the settings (for the caller's error message).
  std::string validate() const;
};

}  // namespace pg
