// Bindings of native/cpu/elementwise.cpp (pointwise ops check each operand's broadcast pattern).
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

// A tensor argument that may be null (a gradient nobody wants).
template <typename T>
T* OptPtr(const Args& a, const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  return info[i].IsNull() ? nullptr : a.Ptr<T>(i, name, count);
}

// An operand's broadcast pattern over n output elements: it reads x[(i / inner) % size].
struct Pattern {
  int64_t size, inner;
};
Pattern PatternArg(const Args& a, size_t i, const char* name, int64_t n) {
  Pattern p{a.Size(i, name), a.Size(i + 1, name)};
  if (n > 0 && (p.size < 1 || p.inner < 1 || n % a.Mul(p.size, p.inner) != 0))
    a.Fail(std::string(name) + ": broadcast size " + std::to_string(p.size) + " x inner " + std::to_string(p.inner) +
           " does not tile " + std::to_string(n) + " elements");
  return p;
}

pg::BinaryOp BinaryOpArg(const Args& a, size_t i) {
  int64_t op = a.Int(i, "op");
  if (op < 0 || op > static_cast<int64_t>(pg::BinaryOp::Maximum)) a.Fail("unknown binary op " + std::to_string(op));
  return static_cast<pg::BinaryOp>(op);
}

pg::UnaryOp UnaryOpArg(const Args& a, size_t i) {
  int64_t op = a.Int(i, "op");
  if (op < 0 || op > static_cast<int64_t>(pg::UnaryOp::Clamp)) a.Fail("unknown unary op " + std::to_string(op));
  return static_cast<pg::UnaryOp>(op);
}

// binaryForward(out, oO, a, aO, b, bO, n, aSize, aInner, bSize, bInner, op)
Napi::Value BinaryForward(const Napi::CallbackInfo& info) {
  Args a(info, "binaryForward", 12);
  int64_t n = a.Size(6, "n");
  Pattern pa = PatternArg(a, 7, "a", n), pb = PatternArg(a, 9, "b", n);
  pg::BinaryOp op = BinaryOpArg(a, 11);
  pg::binary_forward(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "a", n ? pa.size : 0), a.Ptr<float>(4, "b", n ? pb.size : 0), n,
                     pa.size, pa.inner, pb.size, pb.inner, op);
  return info.Env().Undefined();
}

// binaryBackward(da|null, daO, db|null, dbO, dout, doutO, a, aO, b, bO, n, aSize, aInner, bSize, bInner, op)
Napi::Value BinaryBackward(const Napi::CallbackInfo& info) {
  Args a(info, "binaryBackward", 16);
  int64_t n = a.Size(10, "n");
  Pattern pa = PatternArg(a, 11, "a", n), pb = PatternArg(a, 13, "b", n);
  pg::BinaryOp op = BinaryOpArg(a, 15);
  pg::binary_backward(OptPtr<float>(a, info, 0, "da", n), OptPtr<float>(a, info, 2, "db", n), a.Ptr<float>(4, "dout", n),
                      a.Ptr<float>(6, "a", n ? pa.size : 0), a.Ptr<float>(8, "b", n ? pb.size : 0), n, pa.size, pa.inner,
                      pb.size, pb.inner, op);
  return info.Env().Undefined();
}

// sumBroadcast(out, oO, x, xO, n, size, inner): the adjoint of an operand's broadcast
Napi::Value SumBroadcast(const Napi::CallbackInfo& info) {
  Args a(info, "sumBroadcast", 7);
  int64_t n = a.Size(4, "n");
  Pattern p = PatternArg(a, 5, "pattern", n);
  if (n == 0) return info.Env().Undefined();
  pg::sum_broadcast(a.Ptr<float>(0, "out", p.size), a.Ptr<float>(2, "x", n), n, p.size, p.inner);
  return info.Env().Undefined();
}

// unaryForward(out, oO, x, xO, n, op, lo, hi)
Napi::Value UnaryForward(const Napi::CallbackInfo& info) {
  Args a(info, "unaryForward", 8);
  int64_t n = a.Size(4, "n");
  pg::UnaryOp op = UnaryOpArg(a, 5);
  pg::unary_forward(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "x", n), n, op, static_cast<float>(a.Num(6, "lo")),
                    static_cast<float>(a.Num(7, "hi")));
  return info.Env().Undefined();
}

// unaryBackward(dx, dxO, dout, doutO, x|null, xO, out|null, outO, n, op, lo, hi): x or out as the op reads
Napi::Value UnaryBackward(const Napi::CallbackInfo& info) {
  Args a(info, "unaryBackward", 12);
  int64_t n = a.Size(8, "n");
  pg::UnaryOp op = UnaryOpArg(a, 9);
  const float* x = OptPtr<float>(a, info, 4, "x", n);
  const float* out = OptPtr<float>(a, info, 6, "out", n);
  const bool needs_out = op == pg::UnaryOp::Exp || op == pg::UnaryOp::Sigmoid;
  if (needs_out ? out == nullptr : (op != pg::UnaryOp::Neg && x == nullptr))
    a.Fail(needs_out ? "this op's backward reads the forward's out" : "this op's backward reads x");
  pg::unary_backward(a.Ptr<float>(0, "dx", n), a.Ptr<float>(2, "dout", n), x, out, n, op,
                     static_cast<float>(a.Num(10, "lo")), static_cast<float>(a.Num(11, "hi")));
  return info.Env().Undefined();
}

// whereForward(out, oO, cond, cO, a, aO, b, bO, n, aSize, aInner, bSize, bInner)
Napi::Value WhereForward(const Napi::CallbackInfo& info) {
  Args a(info, "whereForward", 13);
  int64_t n = a.Size(8, "n");
  Pattern pa = PatternArg(a, 9, "a", n), pb = PatternArg(a, 11, "b", n);
  pg::where_forward(a.Ptr<float>(0, "out", n), a.Ptr<int32_t>(2, "cond", n), a.Ptr<float>(4, "a", n ? pa.size : 0),
                    a.Ptr<float>(6, "b", n ? pb.size : 0), n, pa.size, pa.inner, pb.size, pb.inner);
  return info.Env().Undefined();
}

// whereBackward(da|null, daO, db|null, dbO, dout, doutO, cond, cO, n)
Napi::Value WhereBackward(const Napi::CallbackInfo& info) {
  Args a(info, "whereBackward", 9);
  int64_t n = a.Size(8, "n");
  pg::where_backward(OptPtr<float>(a, info, 0, "da", n), OptPtr<float>(a, info, 2, "db", n), a.Ptr<float>(4, "dout", n),
                     a.Ptr<int32_t>(6, "cond", n), n);
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
  exports.Set("binaryForward", Napi::Function::New(env, BinaryForward, "binaryForward"));
  exports.Set("binaryBackward", Napi::Function::New(env, BinaryBackward, "binaryBackward"));
  exports.Set("sumBroadcast", Napi::Function::New(env, SumBroadcast, "sumBroadcast"));
  exports.Set("unaryForward", Napi::Function::New(env, UnaryForward, "unaryForward"));
  exports.Set("unaryBackward", Napi::Function::New(env, UnaryBackward, "unaryBackward"));
  exports.Set("whereForward", Napi::Function::New(env, WhereForward, "whereForward"));
  exports.Set("whereBackward", Napi::Function::New(env, WhereBackward, "whereBackward"));
}

}  // namespace pgnode
