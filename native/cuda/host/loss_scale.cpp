// Host logic of dynamic loss scaling (cuda_loss_scale.h): plain C++, tested on CPU.
#include <cmath>
#include <string>

#include "patentgpt/cuda_loss_scale.h"

namespace pg {

bool DynamicLossScale::update(bool found_inf) {
  if (found_inf) {
    const float backed = scale * backoff_factor;
    scale = backed < min_scale ? min_scale : backed;
    good_steps = 0;
    ++skipped_steps;
    return false;
  }
  if (++good_steps >= growth_interval) {
    const float grown = scale * growth_factor;
    if (std::isfinite(grown)) scale = grown;  // as torch: never an infinite scale
    good_steps = 0;
  }
  return true;
}

std::string DynamicLossScale::validate() const {
  if (!(scale > 0.0f) || !std::isfinite(scale)) return "loss scale must be a positive finite number, got " + std::to_string(scale);
  if (!(growth_factor > 1.0f) || !std::isfinite(growth_factor))
    return "loss-scale growth factor must be > 1, got " + std::to_string(growth_factor);
  if (!(backoff_factor > 0.0f && backoff_factor < 1.0f))
    return "loss-scale backoff factor must be in (0, 1), got " + std::to_string(backoff_factor);
  if (growth_interval < 1) return "loss-scale growth interval must be >= 1 step, got " + std::to_string(growth_interval);
  if (!(min_scale > 0.0f) || min_scale > scale)
    return "minimum loss scale must be in (0, scale], got " + std::to_string(min_scale);
  return "";
}

}  // namespace pg
