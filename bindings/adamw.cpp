// Bindings of native/cpu/adamw.cpp. Hyper-parameters are checked as torch.optim.AdamW checks them.
#include <cmath>
#include <string>

#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// adamwStep(param, paramO, m, mO, v, vO, grad, gradO, n, lr, beta1, beta2, eps, weightDecay, step, gradScale)
Napi::Value AdamwStep(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t n = a.Size(8, "n");
  const double lr = a.Num(9, "lr"), beta1 = a.Num(10, "beta1"), beta2 = a.Num(11, "beta2");
  const double eps = a.Num(12, "eps"), wd = a.Num(13, "weightDecay"), scale = a.Num(15, "gradScale");
  const int64_t step = a.Int(14, "step");
  auto check = [&](bool ok, const char* name, double v, const char* want) {
    if (!ok) a.Fail(std::string(name) + " must be " + want + ", got " + std::to_string(v));
  };
  check(std::isfinite(lr) && lr >= 0, "lr", lr, "a finite number >= 0");
  check(beta1 >= 0 && beta1 < 1, "beta1", beta1, "in [0, 1)");
  check(beta2 >= 0 && beta2 < 1, "beta2", beta2, "in [0, 1)");
  check(std::isfinite(eps) && eps >= 0, "eps", eps, "a finite number >= 0");
  check(std::isfinite(wd) && wd >= 0, "weightDecay", wd, "a finite number >= 0");
  check(std::isfinite(scale), "gradScale", scale, "finite");
  if (step < 1) a.Fail("step must be >= 1 (bias correction counts from 1), got " + std::to_string(step));
  PG_ON(a, adamw_step)(a.Ptr<float>(0, "param", n), a.Ptr<float>(2, "m", n), a.Ptr<float>(4, "v", n),
                 a.Ptr<float>(6, "grad", n), n, static_cast<float>(lr), static_cast<float>(beta1),
                 static_cast<float>(beta2), static_cast<float>(eps), static_cast<float>(wd), step,
                 static_cast<float>(scale));
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "adamwStep", "adamw",
     "param: f32, m: f32, v: f32, grad: f32, n: size, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: int, gradScale: number",
     "void", /* cpu */ AdamwStep, /* cuda */ PG_CUDA(AdamwStep)},
};

}  // namespace

void RegisterAdamw(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
