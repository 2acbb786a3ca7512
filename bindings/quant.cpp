// Bindings of native/cpu/quant*.cpp: llama.cpp's block quantization of weight matrices and the
// GEMV over them. A quantized matrix lives in an i32 tensor (its bytes, rows * quant_row_bytes,
// a whole number of 4-byte words); its type is GGML's id (8 = Q8_0, 2 = Q4_0, 12 = Q4_K).
#include <string>

#include "args.h"
#include "patentgpt/quant.h"

namespace pgnode {

namespace {

std::string S(int64_t v) { return std::to_string(v); }

// The type at argument i and the bytes of one row of K weights, checked.
pg::QuantType TypeArg(const Args& a, size_t i, int64_t K, int64_t& row_bytes) {
  const int64_t t = a.Int(i, "type");
  if (t == 0 || !pg::quant_type_valid(static_cast<int32_t>(t)))
    a.Fail("type " + S(t) + " is not a quantized type (8 = q8_0, 2 = q4_0, 12 = q4_k)");
  const pg::QuantType qt = static_cast<pg::QuantType>(t);
  row_bytes = pg::quant_row_bytes(qt, K);
  if (row_bytes < 0)
    a.Fail("K = " + S(K) + " must be a multiple of " + S(qt == pg::QuantType::Q4_K ? 256 : 64) + " for " +
           pg::quant_type_name(qt));
  return qt;
}

// quantize(dst, src, type, rows, K): dst (rows * rowBytes / 4 words) = the blocks of src (rows, K).
Napi::Value Quantize(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t rows = a.Size(5, "rows"), K = a.Size(6, "K");
  int64_t rb;
  const pg::QuantType t = TypeArg(a, 4, K, rb);
  const int64_t words = a.Mul(rows, rb) / 4;
  uint8_t* dst = reinterpret_cast<uint8_t*>(a.Ptr<int32_t>(0, "dst", words));
  const float* src = a.Ptr<float>(2, "src", a.Mul(rows, K));
  if (Overlap(dst, words * 4, src, rows * K)) a.Fail("dst overlaps src");
  pg::quantize_rows(t, dst, src, rows, K);
  return info.Env().Undefined();
}

// dequantize(dst, src, type, rows, K): dst (rows, K) = the weights of src's blocks.
Napi::Value Dequantize(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t rows = a.Size(5, "rows"), K = a.Size(6, "K");
  int64_t rb;
  const pg::QuantType t = TypeArg(a, 4, K, rb);
  const int64_t words = a.Mul(rows, rb) / 4;
  float* dst = a.Ptr<float>(0, "dst", a.Mul(rows, K));
  const uint8_t* src = reinterpret_cast<const uint8_t*>(a.Ptr<int32_t>(2, "src", words));
  if (Overlap(dst, rows * K, src, words * 4)) a.Fail("dst overlaps src");
  pg::dequantize_rows(t, dst, src, rows, K);
  return info.Env().Undefined();
}

// quantGemv(y, x, w, type, M, N, K, accumulate): y (M, N) (+)= x (M, K) @ W (N, K)^T, W quantized.
Napi::Value QuantGemv(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t M = a.Size(7, "M"), N = a.Size(8, "N"), K = a.Size(9, "K");
  const bool accumulate = a.Bool(10, "accumulate");
  int64_t rb;
  const pg::QuantType t = TypeArg(a, 6, K, rb);
  const int64_t words = a.Mul(N, rb) / 4;
  float* y = a.Ptr<float>(0, "y", a.Mul(M, N));
  const float* x = a.Ptr<float>(2, "x", a.Mul(M, K));
  const uint8_t* w = reinterpret_cast<const uint8_t*>(a.Ptr<int32_t>(4, "w", words));
  if (Overlap(y, M * N, x, M * K) || Overlap(y, M * N, w, words * 4)) a.Fail("y overlaps an input");
  pg::quant_gemv(t, y, N, x, K, w, M, N, K, accumulate);
  return info.Env().Undefined();
}

Napi::Value QuantKernel(const Napi::CallbackInfo& info, const Args&) {
  return Napi::String::New(info.Env(), pg::quant_gemv_kernel_name());
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "quantize", "quantize", "dst: i32, src: f32, type: int, rows: size, K: size", "void",
     /* cpu */ Quantize, /* cuda */ nullptr},
    {DeclKind::Function, "dequantize", "dequantize", "dst: f32, src: i32, type: int, rows: size, K: size", "void",
     /* cpu */ Dequantize, /* cuda */ nullptr},
    {DeclKind::Function, "quantGemv", "quantGemv",
     "y: f32, x: f32, w: i32, type: int, M: size, N: size, K: size, accumulate: boolean", "void",
     /* cpu */ QuantGemv, /* cuda */ nullptr},
    {DeclKind::Function, "quantGemvKernel", "quantGemvKernel", "", "string", /* cpu */ QuantKernel,
     /* cuda */ nullptr},
};

}  // namespace

void RegisterQuant(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
