// Bindings of native/cpu/dropout.cpp.
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

double DropP(const Args& a, size_t i) {
  const double p = a.Num(i, "p");
  if (!(p >= 0.0 && p < 1.0)) a.Fail("p must be in [0, 1), got " + std::to_string(p));
  return p;
}

// dropoutForward(out, outO, x, xO, n, p, seed, offset)
Napi::Value DropoutForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t n = a.Size(4, "n");
  const double p = DropP(a, 5);
  const uint64_t seed = static_cast<uint64_t>(a.Size(6, "seed"));
  const uint64_t offset = static_cast<uint64_t>(a.Size(7, "offset"));
  pg::dropout_forward(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "x", n), n, p, seed, offset);
  return info.Env().Undefined();
}

// dropoutBackward(dx, dxO, dout, doutO, n, p, seed, offset)
Napi::Value DropoutBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t n = a.Size(4, "n");
  const double p = DropP(a, 5);
  const uint64_t seed = static_cast<uint64_t>(a.Size(6, "seed"));
  const uint64_t offset = static_cast<uint64_t>(a.Size(7, "offset"));
  pg::dropout_backward(a.Ptr<float>(0, "dx", n), a.Ptr<float>(2, "dout", n), n, p, seed, offset);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "dropoutForward", "dropout",
     "out: f32, x: f32, n: size, p: number, seed: size, offset: size",
     "void", /* cpu */ DropoutForward, /* cuda */ nullptr},
    {DeclKind::Function, "dropoutBackward", "dropout backward",
     "dx: f32, dout: f32, n: size, p: number, seed: size, offset: size",
     "void", /* cpu */ DropoutBackward, /* cuda */ nullptr},
};

}  // namespace

void RegisterDropout(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
