// Bindings of loss scaling (fp16 training; the trainer's src/train/loss-scale.ts): the unscale and
// inf/NaN check of each gradient (native/cpu/loss_scale.cpp, its CUDA twin in
// native/cuda/loss_scale.cu) and the dynamic loss-scale rule (native/cuda/host/loss_scale.cpp, torch's
// GradScaler), so the trainer runs one rule on every device.
#include <cmath>
#include <string>

#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/cuda_loss_scale.h"
#include "patentgpt/loss_scale.h"

namespace pgnode {

namespace {

// unscaleCheck(out, grad, foundInf (each storage, offset), n, invScale): out = grad * invScale
// (out may be grad); foundInf[0] = 1 when any gradient is inf or NaN (never cleared here).
Napi::Value UnscaleCheck(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t n = a.Size(6, "n");
  const double inv = a.Num(7, "invScale");
  if (!(inv > 0) || !std::isfinite(static_cast<float>(inv)))
    a.Fail("invScale must be a positive number finite in f32, got " + std::to_string(inv));
  float* out = a.Ptr<float>(0, "out", n);
  const float* grad = a.Ptr<float>(2, "grad", n);
  int32_t* flag = a.Ptr<int32_t>(4, "foundInf", 1);
  PG_ON(a, unscale_check)(out, grad, n, static_cast<float>(inv), flag);
  return info.Env().Undefined();
}

// lossScaleUpdate(scale, goodSteps, foundInf, growthFactor, backoffFactor, growthInterval, minScale)
// -> { scale, goodSteps, stepped }: one step of pg::DynamicLossScale (stepped false: skip the
// optimizer step). Settings are validated first, with the rule's own message.
Napi::Value LossScaleUpdate(const Napi::CallbackInfo& info, const Args& a) {
  pg::DynamicLossScale ls;
  ls.scale = static_cast<float>(a.Num(0, "scale"));
  ls.good_steps = a.Size(1, "goodSteps");
  const bool found_inf = a.Bool(2, "foundInf");
  ls.growth_factor = static_cast<float>(a.Num(3, "growthFactor"));
  ls.backoff_factor = static_cast<float>(a.Num(4, "backoffFactor"));
  ls.growth_interval = a.Size(5, "growthInterval");
  ls.min_scale = static_cast<float>(a.Num(6, "minScale"));
  const std::string bad = ls.validate();
  if (!bad.empty()) a.Fail(bad);
  const bool stepped = ls.update(found_inf);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("scale", static_cast<double>(ls.scale));
  out.Set("goodSteps", static_cast<double>(ls.good_steps));
  out.Set("stepped", stepped);
  return out;
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "unscaleCheck", "unscaleCheck",
     "out: f32, grad: f32, foundInf: i32, n: size, invScale: number",
     "void", /* cpu */ UnscaleCheck, /* cuda */ PG_CUDA(UnscaleCheck)},
    {DeclKind::Function, "lossScaleUpdate", "lossScaleUpdate",
     "scale: number, goodSteps: size, foundInf: boolean, growthFactor: number, backoffFactor: number, growthInterval: size, minScale: number",
     "{ scale: number; goodSteps: number; stepped: boolean }", /* cpu */ LossScaleUpdate, /* cuda */ nullptr},
};

}  // namespace

void RegisterLossScale(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
