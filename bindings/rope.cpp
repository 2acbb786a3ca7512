// Bindings of native/cpu/rope.cpp.
#include <cmath>
#include <string>

#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// Shared by forward and backward: (out, outO, x, xO, pos, posO, T, H, D, theta, posScale).
using RopeKernel = void (*)(float*, const float*, const int32_t*, int64_t, int64_t, int64_t, float, float);
template <RopeKernel Cpu, RopeKernel Cuda>
Napi::Value Rope(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t T = a.Size(6, "T"), H = a.Size(7, "H"), D = a.Size(8, "D");
  if (D % 2 != 0) a.Fail("head size D must be even, got " + std::to_string(D));
  const double theta = a.Num(9, "theta"), pos_scale = a.Num(10, "posScale");
  if (!(theta > 0) || !(theta < 3.4e38)) a.Fail("theta must be a positive finite number, got " + std::to_string(theta));
  if (!(pos_scale > 0) || !(pos_scale < 3.4e38))
    a.Fail("posScale must be a positive finite number, got " + std::to_string(pos_scale));
  const int64_t n = a.Mul(a.Mul(T, H), D);
  (OnCuda(a) ? Cuda : Cpu)(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "x", n), a.Ptr<int32_t>(4, "positions", T), T, H, D,
         static_cast<float>(theta), static_cast<float>(pos_scale));
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "ropeForward", "rope",
     "out: f32, x: f32, positions: i32, T: size, H: size, D: size, theta: number, posScale: number",
     "void", /* cpu */ Rope<pg::rope_forward, PG_CUDA_FN(rope_forward)>, /* cuda */ PG_CUDA((Rope<pg::rope_forward, PG_CUDA_FN(rope_forward)>))},
    {DeclKind::Function, "ropeBackward", "rope backward",
     "out: f32, x: f32, positions: i32, T: size, H: size, D: size, theta: number, posScale: number",
     "void", /* cpu */ Rope<pg::rope_backward, PG_CUDA_FN(rope_backward)>, /* cuda */ PG_CUDA((Rope<pg::rope_backward, PG_CUDA_FN(rope_backward)>))},
};

}  // namespace

void RegisterRope(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
