// Bindings of native/cpu/elementwise.cpp (pointwise ops check each operand's broadcast pattern).
#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// addForward(out, outOff, a, aOff, b, bOff, n)
Napi::Value AddForward(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(6, "n");
  PG_ON(a, add_forward)(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "a", n), a.Ptr<float>(4, "b", n), n);
  return info.Env().Undefined();
}

// axpy(y, yOff, x, xOff, alpha, n): y += alpha * x
Napi::Value Axpy(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(5, "n");
  PG_ON(a, axpy)(a.Ptr<float>(0, "y", n), a.Ptr<float>(2, "x", n), static_cast<float>(a.Num(4, "alpha")), n);
  return info.Env().Undefined();
}

// triad(out, outOff, a, aOff, b, bOff, alpha, n): out = a + alpha * b
Napi::Value Triad(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(7, "n");
  PG_ON(a, triad)(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "a", n), a.Ptr<float>(4, "b", n), static_cast<float>(a.Num(6, "alpha")), n);
  return info.Env().Undefined();
}

// scale(x, xOff, alpha, n)
Napi::Value Scale(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(3, "n");
  PG_ON(a, scale_inplace)(a.Ptr<float>(0, "x", n), static_cast<float>(a.Num(2, "alpha")), n);
  return info.Env().Undefined();
}

// fill(x, xOff, value, n)
Napi::Value Fill(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(3, "n");
  PG_ON(a, fill)(a.Ptr<float>(0, "x", n), static_cast<float>(a.Num(2, "value")), n);
  return info.Env().Undefined();
}

// sum(x, xOff, n) -> number;  sumSquares(x, xOff, n) -> number
Napi::Value Sum(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(2, "n");
  return Napi::Number::New(info.Env(), PG_ON(a, sum)(a.Ptr<float>(0, "x", n), n));
}

Napi::Value SumSquares(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(2, "n");
  return Napi::Number::New(info.Env(), PG_ON(a, sum_squares)(a.Ptr<float>(0, "x", n), n));
}

// cast(out, outOff, outDtype, x, xOff, xDtype, n) between f32 and bf16/f16.
Napi::Value Cast(const Napi::CallbackInfo& info, const Args& a) {
  if (!info[2].IsString() || !info[5].IsString()) a.Fail("dtypes must be strings");
  std::string to = info[2].As<Napi::String>().Utf8Value();
  std::string from = info[5].As<Napi::String>().Utf8Value();
  int64_t n = a.Size(6, "n");
  if (from == "f32" && to == "bf16") PG_ON(a, cast_f32_to_bf16)(a.Ptr<uint16_t>(0, "out", n), a.Ptr<float>(3, "x", n), n);
  else if (from == "bf16" && to == "f32") PG_ON(a, cast_bf16_to_f32)(a.Ptr<float>(0, "out", n), a.Ptr<uint16_t>(3, "x", n), n);
  else if (from == "f32" && to == "f16") PG_ON(a, cast_f32_to_f16)(a.Ptr<uint16_t>(0, "out", n), a.Ptr<float>(3, "x", n), n);
  else if (from == "f16" && to == "f32") PG_ON(a, cast_f16_to_f32)(a.Ptr<float>(0, "out", n), a.Ptr<uint16_t>(3, "x", n), n);
  else a.Fail("unsupported cast " + from + " -> " + to + " (supported: f32 <-> bf16, f32 <-> f16)");
  return info.Env().Undefined();
}

// An operand's broadcast pattern over n output elements: it reads x[(i / inner) % size].
struct Pattern {
  int64_t size, inner;
};
Pattern PatternArg(const Args& a, size_t i, const char* size_name, const char* inner_name, const char* name, int64_t n) {
  Pattern p{a.Size(i, size_name), a.Size(i + 1, inner_name)};
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
Napi::Value BinaryForward(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(6, "n");
  Pattern pa = PatternArg(a, 7, "aSize", "aInner", "a", n), pb = PatternArg(a, 9, "bSize", "bInner", "b", n);
  pg::BinaryOp op = BinaryOpArg(a, 11);
  PG_ON(a, binary_forward)(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "a", n ? pa.size : 0), a.Ptr<float>(4, "b", n ? pb.size : 0), n,
                     pa.size, pa.inner, pb.size, pb.inner, op);
  return info.Env().Undefined();
}

// binaryBackward(da|null, daO, db|null, dbO, dout, doutO, a, aO, b, bO, n, aSize, aInner, bSize, bInner, op)
Napi::Value BinaryBackward(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(10, "n");
  Pattern pa = PatternArg(a, 11, "aSize", "aInner", "a", n), pb = PatternArg(a, 13, "bSize", "bInner", "b", n);
  pg::BinaryOp op = BinaryOpArg(a, 15);
  PG_ON(a, binary_backward)(a.OptPtr<float>(0, "da", n), a.OptPtr<float>(2, "db", n), a.Ptr<float>(4, "dout", n),
                      a.Ptr<float>(6, "a", n ? pa.size : 0), a.Ptr<float>(8, "b", n ? pb.size : 0), n, pa.size, pa.inner,
                      pb.size, pb.inner, op);
  return info.Env().Undefined();
}

// sumBroadcast(out, oO, x, xO, n, size, inner): the adjoint of an operand's broadcast
Napi::Value SumBroadcast(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(4, "n");
  Pattern p = PatternArg(a, 5, "size", "inner", "pattern", n);
  if (n == 0) return info.Env().Undefined();
  PG_ON(a, sum_broadcast)(a.Ptr<float>(0, "out", p.size), a.Ptr<float>(2, "x", n), n, p.size, p.inner);
  return info.Env().Undefined();
}

// unaryForward(out, oO, x, xO, n, op, lo, hi)
Napi::Value UnaryForward(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(4, "n");
  pg::UnaryOp op = UnaryOpArg(a, 5);
  PG_ON(a, unary_forward)(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "x", n), n, op, static_cast<float>(a.Num(6, "lo")),
                    static_cast<float>(a.Num(7, "hi")));
  return info.Env().Undefined();
}

// unaryBackward(dx, dxO, dout, doutO, x|null, xO, out|null, outO, n, op, lo, hi): x or out as the op reads
Napi::Value UnaryBackward(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(8, "n");
  pg::UnaryOp op = UnaryOpArg(a, 9);
  const float* x = a.OptPtr<float>(4, "x", n);
  const float* out = a.OptPtr<float>(6, "out", n);
  const bool needs_out = op == pg::UnaryOp::Exp || op == pg::UnaryOp::Sigmoid;
  if (needs_out ? out == nullptr : (op != pg::UnaryOp::Neg && x == nullptr))
    a.Fail(needs_out ? "this op's backward reads the forward's out" : "this op's backward reads x");
  PG_ON(a, unary_backward)(a.Ptr<float>(0, "dx", n), a.Ptr<float>(2, "dout", n), x, out, n, op,
                     static_cast<float>(a.Num(10, "lo")), static_cast<float>(a.Num(11, "hi")));
  return info.Env().Undefined();
}

// whereForward(out, oO, cond, cO, a, aO, b, bO, n, aSize, aInner, bSize, bInner)
Napi::Value WhereForward(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(8, "n");
  Pattern pa = PatternArg(a, 9, "aSize", "aInner", "a", n), pb = PatternArg(a, 11, "bSize", "bInner", "b", n);
  PG_ON(a, where_forward)(a.Ptr<float>(0, "out", n), a.Ptr<int32_t>(2, "cond", n), a.Ptr<float>(4, "a", n ? pa.size : 0),
                    a.Ptr<float>(6, "b", n ? pb.size : 0), n, pa.size, pa.inner, pb.size, pb.inner);
  return info.Env().Undefined();
}

// whereBackward(da|null, daO, db|null, dbO, dout, doutO, cond, cO, n)
Napi::Value WhereBackward(const Napi::CallbackInfo& info, const Args& a) {
  int64_t n = a.Size(8, "n");
  PG_ON(a, where_backward)(a.OptPtr<float>(0, "da", n), a.OptPtr<float>(2, "db", n), a.Ptr<float>(4, "dout", n),
                     a.Ptr<int32_t>(6, "cond", n), n);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "addForward", "add",
     "out: f32, a: f32, b: f32, n: size",
     "void", /* cpu */ AddForward, /* cuda */ PG_CUDA(AddForward)},
    {DeclKind::Function, "axpy", "axpy",
     "y: f32, x: f32, alpha: number, n: size",
     "void", /* cpu */ Axpy, /* cuda */ PG_CUDA(Axpy)},
    {DeclKind::Function, "triad", "triad",
     "out: f32, a: f32, b: f32, alpha: number, n: size",
     "void", /* cpu */ Triad, /* cuda */ PG_CUDA(Triad)},
    {DeclKind::Function, "scale", "scale",
     "x: f32, alpha: number, n: size",
     "void", /* cpu */ Scale, /* cuda */ PG_CUDA(Scale)},
    {DeclKind::Function, "fill", "fill",
     "x: f32, value: number, n: size",
     "void", /* cpu */ Fill, /* cuda */ PG_CUDA(Fill)},
    {DeclKind::Function, "sum", "sum",
     "x: f32, n: size",
     "number", /* cpu */ Sum, /* cuda */ PG_CUDA(Sum)},
    {DeclKind::Function, "sumSquares", "sumSquares",
     "x: f32, n: size",
     "number", /* cpu */ SumSquares, /* cuda */ PG_CUDA(SumSquares)},
    {DeclKind::Function, "cast", "cast",
     "out: tensor, outDtype: string, x: tensor, xDtype: string, n: size",
     "void", /* cpu */ Cast, /* cuda */ PG_CUDA(Cast)},
    {DeclKind::Function, "binaryForward", "binaryForward",
     "out: f32, a: f32, b: f32, n: size, aSize: size, aInner: size, bSize: size, bInner: size, op: int",
     "void", /* cpu */ BinaryForward, /* cuda */ PG_CUDA(BinaryForward)},
    {DeclKind::Function, "binaryBackward", "binaryBackward",
     "da: f32 | null, db: f32 | null, dout: f32, a: f32, b: f32, n: size, aSize: size, aInner: size, bSize: size, bInner: size, op: int",
     "void", /* cpu */ BinaryBackward, /* cuda */ PG_CUDA(BinaryBackward)},
    {DeclKind::Function, "sumBroadcast", "sumBroadcast",
     "out: f32, x: f32, n: size, size: size, inner: size",
     "void", /* cpu */ SumBroadcast, /* cuda */ PG_CUDA(SumBroadcast)},
    {DeclKind::Function, "unaryForward", "unaryForward",
     "out: f32, x: f32, n: size, op: int, lo: number, hi: number",
     "void", /* cpu */ UnaryForward, /* cuda */ PG_CUDA(UnaryForward)},
    {DeclKind::Function, "unaryBackward", "unaryBackward",
     "dx: f32, dout: f32, x: f32 | null, out: f32 | null, n: size, op: int, lo: number, hi: number",
     "void", /* cpu */ UnaryBackward, /* cuda */ PG_CUDA(UnaryBackward)},
    {DeclKind::Function, "whereForward", "whereForward",
     "out: f32, cond: i32, a: f32, b: f32, n: size, aSize: size, aInner: size, bSize: size, bInner: size",
     "void", /* cpu */ WhereForward, /* cuda */ PG_CUDA(WhereForward)},
    {DeclKind::Function, "whereBackward", "whereBackward",
     "da: f32 | null, db: f32 | null, dout: f32, cond: i32, n: size",
     "void", /* cpu */ WhereBackward, /* cuda */ PG_CUDA(WhereBackward)},
};

}  // namespace

void RegisterElementwise(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
