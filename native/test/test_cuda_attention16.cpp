// The CUDA fused attention in bf16 and fp16 (native/cuda/attention.cu, attention_forward_16 /
// attention_backward_16) against the CPU f32 kernel (ops.h) on the same inputs rounded to the
// 16-bit format: causal and not, GQA, packed sequences with an empty one, head dims 64 and 128
// (and 80, 33, 256 through the other paths). The device converts the 16-bit values to f32
// exactly, so it computes what the CPU computes up to summation order and rounds each output
// once; the tolerance is therefore the format's unit roundoff u (2^-8 bf16, 2^-11 fp16)
// relative, plus the f32 test's tolerance (test_cuda_attention_moe.cpp) for the summation order:
// |got - want| <= atol + (u + rtol_f32) |want|. The backward reference takes the rounded output
// the device saw (delta = rowsum(dout * out) from it). lse stays f32 (f32 tolerance).
// Runs where a GPU is present (scripts/gpu-check.sh) and under scripts/cuda-emulate.sh.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "cuda_test_util.h"
#include "patentgpt/cuda_attention.h"
#include "patentgpt/cuda_ops.h"

namespace {

using pg::cuda::Half16;
using pgtest::down;
using pgtest::Pool;

using pgtest::AttnCase;

// x rounded to the 16-bit format (bits) and back (values).
struct Rounded {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};
Rounded round16(Half16 dt, const std::vector<float>& x) {
  Rounded r{std::vector<uint16_t>(x.size()), std::vector<float>(x.size())};
  const int64_t n = static_cast<int64_t>(x.size());
  if (dt == Half16::BF16) {
    pg::cast_f32_to_bf16(r.bits.data(), x.data(), n);
    pg::cast_bf16_to_f32(r.values.data(), r.bits.data(), n);
  } else {
    pg::cast_f32_to_f16(r.bits.data(), x.data(), n);
    pg::cast_f16_to_f32(r.values.data(), r.bits.data(), n);
  }
  return r;
}
std::vector<float> widen(Half16 dt, const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  if (dt == Half16::BF16) pg::cast_bf16_to_f32(out.data(), bits.data(), static_cast<int64_t>(bits.size()));
  else pg::cast_f16_to_f32(out.data(), bits.data(), static_cast<int64_t>(bits.size()));
  return out;
}

// The largest |got - want| / (atol + rtol |want|): how much of the tolerance a case uses.
double used(const std::vector<float>& got, const std::vector<float>& want, double atol, double rtol) {
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i)
    worst = std::fmax(worst, std::fabs(double(got[i]) - want[i]) / (atol + rtol * std::fabs(double(want[i]))));
  return worst;
}

// Checks one case in one format; returns on the first mismatch (CHECK_CLOSE counts it).
void check_case(Half16 dt, const AttnCase& c) {
  const double u = dt == Half16::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  std::printf("  %s H=%lld Hkv=%lld D=%lld T=%d causal=%d\n", dt == Half16::BF16 ? "bf16" : "fp16",
              static_cast<long long>(c.H), static_cast<long long>(c.Hkv), static_cast<long long>(c.D), c.cu.back(),
              c.causal ? 1 : 0);
  Pool p;
  const int64_t nseq = static_cast<int64_t>(c.cu.size()) - 1, T = c.cu.back();
  const int64_t nq = T * c.H * c.D, nkv = T * c.Hkv * c.D, nl = c.H * T;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  const Rounded q = round16(dt, pgtest::randn(nq, 21)), k = round16(dt, pgtest::randn(nkv, 22)),
                v = round16(dt, pgtest::randn(nkv, 23)), g = round16(dt, pgtest::randn(nq, 24));
  // Device forward.
  uint16_t *Q = p.up(q.bits), *K = p.up(k.bits), *V = p.up(v.bits), *G = p.up(g.bits);
  uint16_t* O = p.zeros<uint16_t>(nq);
  float* L = p.zeros<float>(nl);
  int32_t* cu = p.up(c.cu);
  pg::cuda::attention_forward_16(dt, O, L, Q, K, V, cu, nseq, T, c.H, c.Hkv, c.D, scale, c.causal);
  const std::vector<float> o16 = widen(dt, down(O, nq));
  // CPU forward on the rounded inputs.
  std::vector<float> out(nq), lse(nl), dq(nq), dk(nkv), dv(nkv), delta(nl);
  pg::attention_forward(out.data(), lse.data(), q.values.data(), k.values.data(), v.values.data(), c.cu.data(), nseq,
                        T, c.H, c.Hkv, c.D, scale, c.causal);
  CHECK_CLOSE(o16, out, nq, 2e-5, u + 1e-4);
  CHECK_DEVICE(L, nl, lse, 2e-5, 1e-5);
  // Backward: the CPU reference from the output the device saw, rounded.
  pg::attention_backward(dq.data(), dk.data(), dv.data(), delta.data(), g.values.data(), o16.data(), lse.data(),
                         q.values.data(), k.values.data(), v.values.data(), c.cu.data(), nseq, T, c.H, c.Hkv, c.D,
                         scale, c.causal);
  uint16_t *dQ = p.zeros<uint16_t>(nq), *dK = p.zeros<uint16_t>(nkv), *dV = p.zeros<uint16_t>(nkv);
  float* De = p.zeros<float>(nl);
  pg::cuda::attention_backward_16(dt, dQ, dK, dV, De, G, O, L, Q, K, V, cu, nseq, T, c.H, c.Hkv, c.D,
                                  scale, c.causal);
  const auto gq = widen(dt, down(dQ, nq)), gk = widen(dt, down(dK, nkv)), gv = widen(dt, down(dV, nkv));
  CHECK_CLOSE(gq, dq, nq, 5e-5, u + 2e-4);
  CHECK_CLOSE(gk, dk, nkv, 5e-5, u + 2e-4);
  CHECK_CLOSE(gv, dv, nkv, 5e-5, u + 2e-4);
  std::printf("    tolerance used: out %.2f, dq %.2f, dk %.2f, dv %.2f\n", used(o16, out, 2e-5, u + 1e-4),
              used(gq, dq, 5e-5, u + 2e-4), used(gk, dk, 5e-5, u + 2e-4), used(gv, dv, 5e-5, u + 2e-4));
}

const std::vector<AttnCase>& cases() {
  static const std::vector<AttnCase> c = {
      {8, 2, 64, {0, 70, 70, 133}, true},  // GQA 4:1, packed, an empty sequence
      {4, 4, 128, {0, 97}, true},
      {6, 2, 128, {0, 5, 60}, false},      // GQA 3:1, not causal
      {3, 1, 80, {0, 33, 50}, true},       // head dim in the 128 bucket, not a power of two
      {2, 2, 33, {0, 40}, false},          // odd head dim: single-element loads and dots
  };
  return c;
}

}  // namespace

TEST(cuda_attention_bf16_matches_cpu_on_rounded_inputs) {
  NEED_GPU();
  for (const AttnCase& c : cases()) {
    const int before = pgtest::failures();
    check_case(Half16::BF16, c);
    if (pgtest::failures() != before) return;
  }
  check_case(Half16::BF16, {2, 1, 256, {0, 40}, true});  // the largest head dim
}

TEST(cuda_attention_fp16_matches_cpu_on_rounded_inputs) {
  NEED_GPU();
  for (const AttnCase& c : cases()) {
    const int before = pgtest::failures();
    check_case(Half16::F16, c);
    if (pgtest::failures() != before) return;
  }
}

#else
TEST(cuda_attention16_not_compiled) { std::printf("skip: built without CUDA\n"); }
#endif
