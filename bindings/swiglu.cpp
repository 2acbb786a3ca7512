// Bindings of native/cpu/swiglu.cpp.
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// swigluForward(out, outO, gate, gateO, up, upO, n)
Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  Args a(info, "swiglu", 7);
  const int64_t n = a.Size(6, "n");
  pg::swiglu_forward(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "gate", n), a.Ptr<float>(4, "up", n), n);
  return info.Env().Undefined();
}

// swigluBackward(dgate, dgateO, dup, dupO, dout, doutO, gate, gateO, up, upO, n)
Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "swiglu backward", 11);
  const int64_t n = a.Size(10, "n");
  pg::swiglu_backward(a.Ptr<float>(0, "dgate", n), a.Ptr<float>(2, "dup", n), a.Ptr<float>(4, "dout", n),
                      a.Ptr<float>(6, "gate", n), a.Ptr<float>(8, "up", n), n);
  return info.Env().Undefined();
}

}  // namespace

void RegisterSwiglu(Napi::Env env, Napi::Object exports) {
  exports.Set("swigluForward", Napi::Function::New(env, SwigluForward, "swigluForward"));
  exports.Set("swigluBackward", Napi::Function::New(env, SwigluBackward, "swigluBackward"));
}

}  // namespace pgnode
