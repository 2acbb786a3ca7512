// Bindings of native/cpu/elementwise.cpp.
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// addForward(out, outOff, a, aOff, b, bOff, n)
Napi::Value AddForward(const Napi::CallbackInfo& info) {
  Args a(info, "add", 7);
  int64_t n = a.Size(6, "n");
  pg::add_forward(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "a", n), a.Ptr<float>(4, "b", n), n);
  return info.Env().Undefined();
}

// axpy(y, yOff, x, xOff, alpha, n): y += alpha * x
Napi::Value Axpy(const Napi::CallbackInfo& info) {
  Args a(info, "axpy", 6);
  int64_t n = a.Size(5, "n");
  pg::axpy(a.Ptr<float>(0, "y", n), a.Ptr<float>(2, "x", n), static_cast<float>(a.Num(4, "alpha")), n);
  return info.Env().Undefined();
}

// triad(out, outOff, a, aOff, b, bOff, alpha, n): out = a + alpha * b
Napi::Value Triad(const Napi::CallbackInfo& info) {
  Args a(info, "triad", 8);
  int64_t n = a.Size(7, "n");
  pg::triad(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "a", n), a.Ptr<float>(4, "b", n), static_cast<float>(a.Num(6, "alpha")), n);
  return info.Env().Undefined();
}

// scale(x, xOff, alpha, n)
Napi::Value Scale(const Napi::CallbackInfo& info) {
  Args a(info, "scale", 4);
  int64_t n = a.Size(3, "n");
  pg::scale_inplace(a.Ptr<float>(0, "x", n), static_cast<float>(a.Num(2, "alpha")), n);
  return info.Env().Undefined();
}

// fill(x, xOff, value, n)
Napi::Value Fill(const Napi::CallbackInfo& info) {
  Args a(info, "fill", 4);
  int64_t n = a.Size(3, "n");
  pg::fill(a.Ptr<float>(0, "x", n), static_cast<float>(a.Num(2, "value")), n);
  return info.Env().Undefined();
}

// sum(x, xOff, n) -> number;  sumSquares(x, xOff, n) -> number
Napi::Value Sum(const Napi::CallbackInfo& info) {
  Args a(info, "sum", 3);
  int64_t n = a.Size(2, "n");
  return Napi::Number::New(info.Env(), pg::sum(a.Ptr<float>(0, "x", n), n));
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Args a(info, "sumSquares", 3);
  int64_t n = a.Size(2, "n");
  return Napi::Number::New(info.Env(), pg::sum_squares(a.Ptr<float>(0, "x", n), n));
}

// cast(out, outOff, outDtype, x, xOff, xDtype, n) between f32 and bf16/f16.
Napi::Value Cast(const Napi::CallbackInfo& info) {
  Args a(info, "cast", 7);
  if (!info[2].IsString() || !info[5].IsString()) a.Fail("dtypes must be strings");
  std::string to = info[2].As<Napi::String>().Utf8Value();
  std::string from = info[5].As<Napi::String>().Utf8Value();
  int64_t n = a.Size(6, "n");
  if (from == "f32" && to == "bf16") pg::cast_f32_to_bf16(a.Ptr<uint16_t>(0, "out", n), a.Ptr<float>(3, "x", n), n);
  else if (from == "bf16" && to == "f32") pg::cast_bf16_to_f32(a.Ptr<float>(0, "out", n), a.Ptr<uint16_t>(3, "x", n), n);
  else if (from == "f32" && to == "f16") pg::cast_f32_to_f16(a.Ptr<uint16_t>(0, "out", n), a.Ptr<float>(3, "x", n), n);
  else if (from == "f16" && to == "f32") pg::cast_f16_to_f32(a.Ptr<float>(0, "out", n), a.Ptr<uint16_t>(3, "x", n), n);
  else a.Fail("unsupported cast " + from + " -> " + to + " (supported: f32 <-> bf16, f32 <-> f16)");
  return info.Env().Undefined();
}

}  // namespace

void RegisterElementwise(Napi::Env env, Napi::Object exports) {
  exports.Set("addForward", Napi::Function::New(env, AddForward, "addForward"));
  exports.Set("axpy", Napi::Function::New(env, Axpy, "axpy"));
  exports.Set("triad", Napi::Function::New(env, Triad, "triad"));
  exports.Set("scale", Napi::Function::New(env, Scale, "scale"));
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
  exports.Set("sum", Napi::Function::New(env, Sum, "sum"));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares, "sumSquares"));
  exports.Set("cast", Napi::Function::New(env, Cast, "cast"));
}

}  // namespace pgnode
