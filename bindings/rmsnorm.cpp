// Bindings of native/cpu/rmsnorm.cpp.
#include <cmath>
#include <string>

#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// rmsnormForward(out, outO, rstd, rstdO, x, xO, w, wO, N, C, eps)
Napi::Value RmsnormForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(8, "N"), C = a.Size(9, "C");
  const double eps = a.Num(10, "eps");
  if (!std::isfinite(eps) || eps < 0) a.Fail("eps must be a finite number >= 0, got " + std::to_string(eps));
  if (C == 0 && N > 0) a.Fail("C must be > 0");
  const int64_t NC = a.Mul(N, C);
  PG_ON(a, rmsnorm_forward)(a.Ptr<float>(0, "out", NC), a.Ptr<float>(2, "rstd", N), a.Ptr<float>(4, "x", NC),
                      a.Ptr<float>(6, "w", C), N, C, static_cast<float>(eps));
  return info.Env().Undefined();
}

// rmsnormBackward(dx, dxO, dw, dwO, dout, doutO, x, xO, w, wO, rstd, rstdO, N, C): dx =, dw +=
Napi::Value RmsnormBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(12, "N"), C = a.Size(13, "C");
  const int64_t NC = a.Mul(N, C);
  PG_ON(a, rmsnorm_backward)(a.Ptr<float>(0, "dx", NC), a.Ptr<float>(2, "dw", C), a.Ptr<float>(4, "dout", NC),
                       a.Ptr<float>(6, "x", NC), a.Ptr<float>(8, "w", C), a.Ptr<float>(10, "rstd", N), N, C);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "rmsnormForward", "rmsnorm",
     "out: f32, rstd: f32, x: f32, w: f32, N: size, C: size, eps: number",
     "void", /* cpu */ RmsnormForward, /* cuda */ PG_CUDA(RmsnormForward)},
    {DeclKind::Function, "rmsnormBackward", "rmsnorm backward",
     "dx: f32, dw: f32, dout: f32, x: f32, w: f32, rstd: f32, N: size, C: size",
     "void", /* cpu */ RmsnormBackward, /* cuda */ PG_CUDA(RmsnormBackward)},
};

}  // namespace

void RegisterRmsnorm(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
