// Bindings of native/cpu/dropout.cpp.
#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

double DropP(const Args& a, size_t i) {
  const double p = a.Num(i, "p");
  if (!(p >= 0.0 && p < 1.0)) a.Fail("p must be in [0, 1), got " + std::to_string(p));
  return p;
}

// dropoutForward(out, outO, x, xO, n, p, seed, offset) and dropoutBackward(dx, dxO, dout, doutO, ...):
// the same arguments, `out` and `in` naming the tensors; backward is forward on the gradient.
using DropoutKernel = void (*)(float*, const float*, int64_t, double, uint64_t, uint64_t);
Napi::Value Dropout(const Args& a, DropoutKernel kernel, const char* out, const char* in) {
  const int64_t n = a.Size(4, "n");
  const double p = DropP(a, 5);
  const uint64_t seed = static_cast<uint64_t>(a.Size(6, "seed"));
  const uint64_t offset = static_cast<uint64_t>(a.Size(7, "offset"));
  kernel(a.Ptr<float>(0, out, n), a.Ptr<float>(2, in, n), n, p, seed, offset);
  return a.Env().Undefined();
}

Napi::Value DropoutForward(const Napi::CallbackInfo&, const Args& a) { return Dropout(a, PG_ON(a, dropout_forward), "out", "x"); }

Napi::Value DropoutBackward(const Napi::CallbackInfo&, const Args& a) {
  return Dropout(a, PG_ON(a, dropout_backward), "dx", "dout");
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "dropoutForward", "dropout",
     "out: f32, x: f32, n: size, p: number, seed: size, offset: size",
     "void", /* cpu */ DropoutForward, /* cuda */ PG_CUDA(DropoutForward)},
    {DeclKind::Function, "dropoutBackward", "dropout backward",
     "dx: f32, dout: f32, n: size, p: number, seed: size, offset: size",
     "void", /* cpu */ DropoutBackward, /* cuda */ PG_CUDA(DropoutBackward)},
};

}  // namespace

void RegisterDropout(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
