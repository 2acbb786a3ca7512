// Bindings of native/cpu/swiglu.cpp.
#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// swigluForward(out, outO, gate, gateO, up, upO, n)
Napi::Value SwigluForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t n = a.Size(6, "n");
  PG_ON(a, swiglu_forward)(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "gate", n), a.Ptr<float>(4, "up", n), n);
  return info.Env().Undefined();
}

// swigluBackward(dgate, dgateO, dup, dupO, dout, doutO, gate, gateO, up, upO, n)
Napi::Value SwigluBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t n = a.Size(10, "n");
  PG_ON(a, swiglu_backward)(a.Ptr<float>(0, "dgate", n), a.Ptr<float>(2, "dup", n), a.Ptr<float>(4, "dout", n),
                      a.Ptr<float>(6, "gate", n), a.Ptr<float>(8, "up", n), n);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "swigluForward", "swiglu",
     "out: f32, gate: f32, up: f32, n: size",
     "void", /* cpu */ SwigluForward, /* cuda */ PG_CUDA(SwigluForward)},
    {DeclKind::Function, "swigluBackward", "swiglu backward",
     "dgate: f32, dup: f32, dout: f32, gate: f32, up: f32, n: size",
     "void", /* cpu */ SwigluBackward, /* cuda */ PG_CUDA(SwigluBackward)},
};

}  // namespace

void RegisterSwiglu(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
