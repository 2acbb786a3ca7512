// The CUDA AdamW step over 16-bit parameters with f32 master weights (native/cuda/adamw.cu,
// adamw_step_master) against the CPU AdamW (ops.h adamw_step) on the f32 master copy, then
// rounding: bf16 and fp16, three steps with weight decay and a gradient scale, a length that is
// not a multiple of the block. The master weights and moments match the CPU's to f32 tolerance
// (as the f32 step in test_cuda_ops.cpp); the 16-bit parameters are the device's own master values
// rounded to nearest even, bit for bit, and within the format's unit roundoff u (2^-8 bf16, 2^-11
// fp16) of the CPU's master. The f32 step (adamw_step), which shares the element update, is
// checked the same way. Runs where a GPU is present and under scripts/cuda-emulate.sh.
#include <cmath>
#include <cstdio>
#include <vector>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "cuda_test_util.h"
#include "patentgpt/cuda_ops.h"

namespace {

using pg::cuda::Half16;
using pgtest::down;
using pgtest::Pool;

constexpr float kLr = 1e-2f, kBeta1 = 0.9f, kBeta2 = 0.95f, kEps = 1e-8f, kWd = 0.1f, kGradScale = 0.5f;

std::vector<uint16_t> narrow(Half16 dt, const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  if (dt == Half16::BF16) pg::cast_f32_to_bf16(out.data(), x.data(), static_cast<int64_t>(x.size()));
  else pg::cast_f32_to_f16(out.data(), x.data(), static_cast<int64_t>(x.size()));
  return out;
}
std::vector<float> widen(Half16 dt, const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  if (dt == Half16::BF16) pg::cast_bf16_to_f32(out.data(), bits.data(), static_cast<int64_t>(bits.size()));
  else pg::cast_f16_to_f32(out.data(), bits.data(), static_cast<int64_t>(bits.size()));
  return out;
}

void check_master(Half16 dt) {
  const double u = dt == Half16::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  Pool p;
  const int64_t n = 1000;  // not a multiple of 256
  auto master = pgtest::randn(n, 31, 0.5f);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  float *dmaster = p.up(master), *dm = p.up(m), *dv = p.up(v);
  uint16_t* dparam = p.up(narrow(dt, master));
  for (int64_t step = 1; step <= 3; ++step) {
    const auto g = pgtest::randn(n, static_cast<unsigned>(40 + step));
    float* dg = p.up(g);
    pg::adamw_step(master.data(), m.data(), v.data(), g.data(), n, kLr, kBeta1, kBeta2, kEps, kWd, step, kGradScale);
    pg::cuda::adamw_step_master(dt, dmaster, dparam, dm, dv, dg, n, kLr, kBeta1, kBeta2, kEps, kWd, step,
                                kGradScale);
  }
  CHECK_DEVICE(dmaster, n, master, 1e-6, 1e-5);
  CHECK_DEVICE(dm, n, m, 1e-7, 1e-5);
  CHECK_DEVICE(dv, n, v, 1e-9, 1e-5);
  const auto bits = down(dparam, n);
  CHECK(bits == narrow(dt, down(dmaster, n)));  // the device's master, rounded to nearest even
  const auto param = widen(dt, bits);
  CHECK_CLOSE(param, master, n, 1e-6, u + 1e-5);
}

}  // namespace

TEST(cuda_adamw_master_bf16_matches_cpu_then_rounding) {
  NEED_GPU();
  check_master(Half16::BF16);
}

TEST(cuda_adamw_master_fp16_matches_cpu_then_rounding) {
  NEED_GPU();
  check_master(Half16::F16);
}

TEST(cuda_adamw_f32_matches_cpu) {
  NEED_GPU();
  Pool p;
  const int64_t n = 1000;
  auto prm = pgtest::randn(n, 51), gr = pgtest::randn(n, 52);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  float *dprm = p.up(prm), *dm = p.up(m), *dv = p.up(v), *dgr = p.up(gr);
  for (int64_t step = 1; step <= 3; ++step) {
    pg::adamw_step(prm.data(), m.data(), v.data(), gr.data(), n, kLr, kBeta1, kBeta2, kEps, kWd, step, kGradScale);
    pg::cuda::adamw_step(dprm, dm, dv, dgr, n, kLr, kBeta1, kBeta2, kEps, kWd, step, kGradScale);
  }
  CHECK_DEVICE(dprm, n, prm, 1e-6, 1e-5);
  CHECK_DEVICE(dm, n, m, 1e-7, 1e-5);
  CHECK_DEVICE(dv, n, v, 1e-9, 1e-5);
}

#else
TEST(cuda_adamw_master_not_compiled) { std::printf("skip: built without CUDA\n"); }
#endif
