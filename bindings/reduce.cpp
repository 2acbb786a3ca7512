// Bindings of native/cpu/reduce.cpp: reductions over a dimension, softmax, gather/scatter-add.
// Tensors are viewed as (outer, D, inner) around the dimension; index tensors are checked in
// range and refused when they overlap what the kernel writes.
#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

struct Dims {
  int64_t outer, D, inner, n;  // n = outer * D * inner
};
Dims DimsArg(const Args& a, size_t i) {
  Dims d{a.Size(i, "outer"), a.Size(i + 1, "D"), a.Size(i + 2, "inner"), 0};
  d.n = a.Mul(a.Mul(d.outer, d.D), d.inner);
  return d;
}

// index (count) must lie in [0, D) and not overlap the `dst` the kernel writes.
// On CUDA the index lives on the device: the kernel checks it (cuda_ops.h), only the overlap is checked here.
void CheckIndex(const Args& a, const int32_t* index, int64_t count, int64_t D, const float* dst, int64_t dst_count) {
  for (int64_t i = 0; i < count && !OnCuda(a); ++i)
    if (index[i] < 0 || index[i] >= D)
      a.Fail("index[" + std::to_string(i) + "] = " + std::to_string(index[i]) + " is outside [0, " + std::to_string(D) + ")");
  if (Overlap(dst, dst_count, index, count)) a.Fail("index overlaps the output");
}

// sumDimForward(out, oO, x, xO, outer, D, inner, scale)
Napi::Value SumDimForward(const Napi::CallbackInfo& info, const Args& a) {
  Dims d = DimsArg(a, 4);
  PG_ON(a, sum_dim_forward)(a.Ptr<float>(0, "out", a.Mul(d.outer, d.inner)), a.Ptr<float>(2, "x", d.n), d.outer, d.D, d.inner,
                      static_cast<float>(a.Num(7, "scale")));
  return info.Env().Undefined();
}

// sumDimBackward(dx, dxO, dout, doutO, outer, D, inner, scale)
Napi::Value SumDimBackward(const Napi::CallbackInfo& info, const Args& a) {
  Dims d = DimsArg(a, 4);
  PG_ON(a, sum_dim_backward)(a.Ptr<float>(0, "dx", d.n), a.Ptr<float>(2, "dout", a.Mul(d.outer, d.inner)), d.outer, d.D,
                       d.inner, static_cast<float>(a.Num(7, "scale")));
  return info.Env().Undefined();
}

// maxDimForward(values, vO, indices, iO, x, xO, outer, D, inner)
Napi::Value MaxDimForward(const Napi::CallbackInfo& info, const Args& a) {
  Dims d = DimsArg(a, 6);
  const int64_t m = a.Mul(d.outer, d.inner);
  if (m > 0 && d.D == 0) a.Fail("max over an empty dimension");
  PG_ON(a, max_dim_forward)(a.Ptr<float>(0, "values", m), a.Ptr<int32_t>(2, "indices", m), a.Ptr<float>(4, "x", d.n), d.outer,
                      d.D, d.inner);
  return info.Env().Undefined();
}

// gatherForward(out, oO, x, xO, index, iO, outer, D, K, inner)
Napi::Value GatherForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t outer = a.Size(6, "outer"), D = a.Size(7, "D"), K = a.Size(8, "K"), inner = a.Size(9, "inner");
  const int64_t n = a.Mul(outer, a.Mul(D, inner)), m = a.Mul(outer, a.Mul(K, inner));
  float* out = a.Ptr<float>(0, "out", m);
  const int32_t* index = a.Ptr<int32_t>(4, "index", m);
  CheckIndex(a, index, m, D, out, m);
  PG_ON(a, gather_forward)(out, a.Ptr<float>(2, "x", n), index, outer, D, K, inner);
  return info.Env().Undefined();
}

// scatterAdd(dst, dO, src, sO, index, iO, outer, D, K, inner): dst (outer, D, inner) += scatter of src
Napi::Value ScatterAdd(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t outer = a.Size(6, "outer"), D = a.Size(7, "D"), K = a.Size(8, "K"), inner = a.Size(9, "inner");
  const int64_t n = a.Mul(outer, a.Mul(D, inner)), m = a.Mul(outer, a.Mul(K, inner));
  float* dst = a.Ptr<float>(0, "dst", n);
  const int32_t* index = a.Ptr<int32_t>(4, "index", m);
  CheckIndex(a, index, m, D, dst, n);
  PG_ON(a, scatter_add)(dst, a.Ptr<float>(2, "src", m), index, outer, D, K, inner);
  return info.Env().Undefined();
}

// softmaxForward / logSoftmaxForward(out, oO, x, xO, N, C)
template <void (*kernel)(float*, const float*, int64_t, int64_t), void (*cuda_kernel)(float*, const float*, int64_t, int64_t)>
Napi::Value RowsForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(4, "N"), C = a.Size(5, "C"), n = a.Mul(N, C);
  (OnCuda(a) ? cuda_kernel : kernel)(a.Ptr<float>(0, "out", n), a.Ptr<float>(2, "x", n), N, C);
  return info.Env().Undefined();
}

// softmaxBackward / logSoftmaxBackward(dx, dxO, dout, doutO, out, oO, N, C)
template <void (*kernel)(float*, const float*, const float*, int64_t, int64_t),
          void (*cuda_kernel)(float*, const float*, const float*, int64_t, int64_t)>
Napi::Value RowsBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(6, "N"), C = a.Size(7, "C"), n = a.Mul(N, C);
  (OnCuda(a) ? cuda_kernel : kernel)(a.Ptr<float>(0, "dx", n), a.Ptr<float>(2, "dout", n), a.Ptr<float>(4, "out", n), N, C);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "sumDimForward", "sumDimForward",
     "out: f32, x: f32, outer: size, D: size, inner: size, scale: number",
     "void", /* cpu */ SumDimForward, /* cuda */ PG_CUDA(SumDimForward)},
    {DeclKind::Function, "sumDimBackward", "sumDimBackward",
     "dx: f32, dout: f32, outer: size, D: size, inner: size, scale: number",
     "void", /* cpu */ SumDimBackward, /* cuda */ PG_CUDA(SumDimBackward)},
    {DeclKind::Function, "maxDimForward", "maxDimForward",
     "values: f32, indices: i32, x: f32, outer: size, D: size, inner: size",
     "void", /* cpu */ MaxDimForward, /* cuda */ PG_CUDA(MaxDimForward)},
    {DeclKind::Function, "gatherForward", "gatherForward",
     "out: f32, x: f32, index: i32, outer: size, D: size, K: size, inner: size",
     "void", /* cpu */ GatherForward, /* cuda */ PG_CUDA(GatherForward)},
    {DeclKind::Function, "scatterAdd", "scatterAdd",
     "dst: f32, src: f32, index: i32, outer: size, D: size, K: size, inner: size",
     "void", /* cpu */ ScatterAdd, /* cuda */ PG_CUDA(ScatterAdd)},
    {DeclKind::Function, "softmaxForward", "softmaxForward",
     "out: f32, x: f32, N: size, C: size",
     "void", /* cpu */ RowsForward<pg::softmax_forward, PG_CUDA_FN(softmax_forward)>, /* cuda */ PG_CUDA((RowsForward<pg::softmax_forward, PG_CUDA_FN(softmax_forward)>))},
    {DeclKind::Function, "softmaxBackward", "softmaxBackward",
     "dx: f32, dout: f32, out: f32, N: size, C: size",
     "void", /* cpu */ RowsBackward<pg::softmax_backward, PG_CUDA_FN(softmax_backward)>, /* cuda */ PG_CUDA((RowsBackward<pg::softmax_backward, PG_CUDA_FN(softmax_backward)>))},
    {DeclKind::Function, "logSoftmaxForward", "logSoftmaxForward",
     "out: f32, x: f32, N: size, C: size",
     "void", /* cpu */ RowsForward<pg::log_softmax_forward, PG_CUDA_FN(log_softmax_forward)>, /* cuda */ PG_CUDA((RowsForward<pg::log_softmax_forward, PG_CUDA_FN(log_softmax_forward)>))},
    {DeclKind::Function, "logSoftmaxBackward", "logSoftmaxBackward",
     "dx: f32, dout: f32, out: f32, N: size, C: size",
     "void", /* cpu */ RowsBackward<pg::log_softmax_backward, PG_CUDA_FN(log_softmax_backward)>, /* cuda */ PG_CUDA((RowsBackward<pg::log_softmax_backward, PG_CUDA_FN(log_softmax_backward)>))},
};

}  // namespace

void RegisterReduce(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
