// The CPU loss-scaling kernel (loss_scale.h, native/cpu/loss_scale.cpp), twin of the CUDA
// unscale_check: multiplies by 1 / scale exactly for a power-of-two scale, raises the flag for any
// inf or NaN (and only raises it), and unscales in place.
#include <cmath>
#include <limits>
#include <vector>

#include "check.h"
#include "patentgpt/loss_scale.h"

TEST(cpu_unscale_check_unscales_and_flags_non_finite) {
  std::vector<float> g = {1024.0f, -3.0f, 0.5f, 65536.0f, 0.0f};
  std::vector<float> out(g.size());
  int32_t flag = 0;
  pg::unscale_check(out.data(), g.data(), static_cast<int64_t>(g.size()), 1.0f / 1024.0f, &flag);
  CHECK(flag == 0);
  CHECK(out[0] == 1.0f && out[1] == -3.0f / 1024.0f && out[2] == 0.5f / 1024.0f && out[3] == 64.0f && out[4] == 0.0f);
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> h = {1.0f, 2.0f, bad, 4.0f};
    flag = 0;
    pg::unscale_check(h.data(), h.data(), 4, 0.5f, &flag);  // in place
    CHECK(flag == 1);
    CHECK(h[0] == 0.5f && h[1] == 1.0f && h[3] == 2.0f);
  }
  // the flag is only raised: a finite tensor after a bad one leaves it set
  std::vector<float> ok = {1.0f};
  flag = 1;
  pg::unscale_check(ok.data(), ok.data(), 1, 1.0f, &flag);
  CHECK(flag == 1);
}
