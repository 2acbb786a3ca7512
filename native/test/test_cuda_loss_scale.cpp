// fp16 dynamic loss scaling: the host rule (cuda_loss_scale.h, plain C++: runs everywhere) and,
// where a GPU is present or under scripts/cuda-emulate.sh, the device check (unscale_check*: one
// flag for every gradient tensor of a step, read back once) and a short fp16 training loop on the
// device (unscale + check, the rule, AdamW over fp16 parameters with f32 master weights) against
// the same loop on the CPU.
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "check.h"
#include "patentgpt/cuda_loss_scale.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

TEST(loss_scale_grows_after_interval_and_backs_off_on_overflow) {
  pg::DynamicLossScale ls;
  ls.scale = 8.0f;
  ls.growth_interval = 3;
  CHECK(ls.validate().empty());
  CHECK(ls.update(false) && ls.update(false));
  CHECK(ls.scale == 8.0f && ls.good_steps == 2);
  CHECK(ls.update(false));  // the third finite step in a row: x2
  CHECK(ls.scale == 16.0f && ls.good_steps == 0);
  CHECK(ls.update(false) && ls.update(false));
  CHECK(!ls.update(true));  // overflow: skip, /2, the count restarts
  CHECK(ls.scale == 8.0f && ls.good_steps == 0 && ls.skipped_steps == 1);
  CHECK(ls.update(false) && ls.update(false) && ls.scale == 8.0f);
  CHECK(ls.update(false) && ls.scale == 16.0f);
  CHECK(std::fabs(ls.inv_scale() - 1.0f / 16.0f) == 0.0f);
}

TEST(loss_scale_stays_within_min_and_finite) {
  pg::DynamicLossScale ls;
  ls.scale = 1.0f;
  ls.min_scale = 0.25f;
  for (int i = 0; i < 5; ++i) CHECK(!ls.update(true));
  CHECK(ls.scale == 0.25f && ls.skipped_steps == 5);
  ls.scale = std::ldexp(1.0f, 127);  // the largest power of two in f32: doubling would be inf
  ls.growth_interval = 1;
  CHECK(ls.update(false) && ls.scale == std::ldexp(1.0f, 127));
}

TEST(loss_scale_validate_names_the_bad_setting) {
  pg::DynamicLossScale ls;
  ls.backoff_factor = 1.0f;
  CHECK(ls.validate().find("backoff") != std::string::npos);
  ls = {};
  ls.growth_interval = 0;
  CHECK(ls.validate().find("interval") != std::string::npos);
  ls = {};
  ls.scale = std::numeric_limits<float>::infinity();
  CHECK(ls.validate().find("positive finite") != std::string::npos);
}

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "cuda_test_util.h"
#include "patentgpt/cuda_ops.h"

namespace {

using pg::cuda::Half16;
using pgtest::down;
using pgtest::Pool;

std::vector<uint16_t> to_f16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  pg::cast_f32_to_f16(out.data(), x.data(), static_cast<int64_t>(x.size()));
  return out;
}
std::vector<uint16_t> to_bf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  pg::cast_f32_to_bf16(out.data(), x.data(), static_cast<int64_t>(x.size()));
  return out;
}
std::vector<float> from_f16(const std::vector<uint16_t>& x) {
  std::vector<float> out(x.size());
  pg::cast_f16_to_f32(out.data(), x.data(), static_cast<int64_t>(x.size()));
  return out;
}
std::vector<float> from_bf16(const std::vector<uint16_t>& x) {
  std::vector<float> out(x.size());
  pg::cast_bf16_to_f32(out.data(), x.data(), static_cast<int64_t>(x.size()));
  return out;
}
std::vector<float> times(std::vector<float> x, float s) {
  for (auto& v : x) v *= s;
  return x;
}

}  // namespace

TEST(cuda_unscale_check_raises_one_flag_per_step) {
  NEED_GPU();
  Pool p;
  const float scale = 1024.0f, inv = 1.0f / scale;  // a power of two: unscaling is exact
  const auto g32 = times(pgtest::randn(1000, 61), scale);
  const auto g16 = to_f16(times(pgtest::randn(513, 62), scale));
  const auto gb = to_bf16(times(pgtest::randn(777, 63), scale));
  int32_t* flag = p.zeros<int32_t>(1);
  float *d32 = p.up(g32), *o16 = p.zeros<float>(513), *ob = p.zeros<float>(777);
  uint16_t *d16 = p.up(g16), *db = p.up(gb);
  // A finite step: unscaled values exact, flag down; f32 unscaled in place.
  pg::cuda::clear_found_inf(flag);
  pg::cuda::unscale_check(d32, d32, 1000, inv, flag);
  pg::cuda::unscale_check_16(Half16::F16, o16, d16, 513, inv, flag);
  pg::cuda::unscale_check_16(Half16::BF16, ob, db, 777, inv, flag);
  CHECK(!pg::cuda::read_found_inf(flag));
  CHECK_DEVICE(d32, 1000, times(g32, inv), 0, 0);
  CHECK_DEVICE(o16, 513, times(from_f16(g16), inv), 0, 0);
  CHECK_DEVICE(ob, 777, times(from_bf16(gb), inv), 0, 0);
  // One inf in the last tensor but one, near its end: the flag goes up and stays up.
  auto bad16 = g16;
  bad16[509] = 0x7c00;  // fp16 +inf
  uint16_t* dbad = p.up(bad16);
  pg::cuda::clear_found_inf(flag);
  pg::cuda::unscale_check_16(Half16::F16, o16, dbad, 513, inv, flag);
  pg::cuda::unscale_check_16(Half16::BF16, ob, db, 777, inv, flag);
  CHECK(pg::cuda::read_found_inf(flag));
  // A NaN in an f32 tensor alone; then cleared for the next step.
  auto nan32 = g32;
  nan32[0] = std::numeric_limits<float>::quiet_NaN();
  float* dnan = p.up(nan32);
  pg::cuda::clear_found_inf(flag);
  CHECK(!pg::cuda::read_found_inf(flag));
  pg::cuda::unscale_check(dnan, dnan, 1000, inv, flag);
  CHECK(pg::cuda::read_found_inf(flag));
}

// Gradients of magnitude about 1 scaled by 2^16 overflow fp16 (max 65504): the first steps are
// skipped with the scale halving, until it fits; then the scale grows every 2 finite steps until
// it overflows again. The device and the CPU walk the same scales, skip the same steps and end
// with the same weights.
TEST(cuda_fp16_training_with_dynamic_loss_scale_matches_cpu) {
  NEED_GPU();
  Pool p;
  const int64_t n = 700, steps = 10;
  pg::DynamicLossScale dev_ls, cpu_ls;
  dev_ls.growth_interval = cpu_ls.growth_interval = 2;
  auto master = pgtest::randn(n, 71, 0.5f);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  float *dmaster = p.up(master), *dm = p.up(m), *dv = p.up(v), *dgrad = p.zeros<float>(n);
  uint16_t* dparam = p.up(to_f16(master));
  int32_t* flag = p.zeros<int32_t>(1);
  int64_t dev_applied = 0, cpu_applied = 0;
  for (int64_t s = 0; s < steps; ++s) {
    auto g = pgtest::randn(n, static_cast<unsigned>(80 + s), 4.0f);
    // The backward pass's fp16 gradients of the scaled loss (the same for both).
    const auto g16 = to_f16(times(g, dev_ls.scale));
    CHECK(dev_ls.scale == cpu_ls.scale);
    // Device: unscale + check, one read back, the rule, the step.
    pg::cuda::clear_found_inf(flag);
    pg::cuda::unscale_check_16(Half16::F16, dgrad, p.up(g16), n, dev_ls.inv_scale(), flag);
    if (dev_ls.update(pg::cuda::read_found_inf(flag)))
      pg::cuda::adamw_step_master(Half16::F16, dmaster, dparam, dm, dv, dgrad, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f,
                                  ++dev_applied, 1.0f);
    // CPU: the same on the host.
    const float inv = cpu_ls.inv_scale();  // the scale of this step's loss, before the rule changes it
    auto gf = from_f16(g16);
    bool inf = false;
    for (float x : gf) inf |= !std::isfinite(x);
    if (cpu_ls.update(inf)) {
      gf = times(gf, inv);
      pg::adamw_step(master.data(), m.data(), v.data(), gf.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, ++cpu_applied,
                     1.0f);
    }
  }
  std::printf("  fp16 loop: %lld of %lld steps applied, %lld skipped, final scale %g\n",
              static_cast<long long>(dev_applied), static_cast<long long>(steps),
              static_cast<long long>(dev_ls.skipped_steps), dev_ls.scale);
  CHECK(dev_applied == cpu_applied && dev_ls.skipped_steps == cpu_ls.skipped_steps && dev_ls.scale == cpu_ls.scale);
  CHECK(dev_ls.skipped_steps >= 2 && dev_applied >= 4);  // both paths of the rule were taken
  CHECK_DEVICE(dmaster, n, master, 1e-6, 1e-5);
  CHECK(down(dparam, n) == to_f16(down(dmaster, n)));
}

#else
TEST(cuda_loss_scale_device_not_compiled) { std::printf("skip: built without CUDA (host rule tested above)\n"); }
#endif
