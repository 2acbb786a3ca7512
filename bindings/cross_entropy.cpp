// Bindings of native/cpu/cross_entropy.cpp. Targets and ids are checked against the vocabulary
// here, before the kernels index logits rows with them.
#include <cstdint>
#include <string>

#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// Every targets[n] in [0, V) or equal to ignore_index (when allow_ignore).
void CheckTargets(const Args& a, const int32_t* t, int64_t N, int64_t V, bool allow_ignore, int32_t ignore_index,
                  const char* what) {
  if (OnCuda(a)) return;  // on the device: the CUDA kernels check them (cuda_ops.h)
  for (int64_t n = 0; n < N; ++n) {
    if (allow_ignore && t[n] == ignore_index) continue;
    if (t[n] < 0 || t[n] >= V)
      a.Fail(std::string(what) + " " + std::to_string(t[n]) + " at position " + std::to_string(n) +
             " is outside [0, V = " + std::to_string(V) + ")" +
             (allow_ignore ? " and is not ignore_index " + std::to_string(ignore_index) : std::string()));
  }
}

int32_t IgnoreIndex(const Args& a, size_t i) {
  const int64_t v = a.Int(i, "ignoreIndex");
  if (v < INT32_MIN || v > INT32_MAX) a.Fail("ignoreIndex must fit in int32, got " + std::to_string(v));
  return static_cast<int32_t>(v);
}

// crossEntropyForward(loss, lossO, lse, lseO, logits, logitsO, targets, targetsO, N, V, ignoreIndex)
Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(8, "N"), V = a.Size(9, "V");
  const int32_t ignore = IgnoreIndex(a, 10);
  float* loss = a.Ptr<float>(0, "loss", N);
  float* lse = a.Ptr<float>(2, "lse", N);
  const float* logits = a.Ptr<float>(4, "logits", a.Mul(N, V));
  const int32_t* targets = a.Ptr<int32_t>(6, "targets", N);
  CheckTargets(a, targets, N, V, true, ignore, "target");
  if (Overlap(loss, N, targets, N) || Overlap(lse, N, targets, N)) a.Fail("targets share memory with an output");
  PG_ON(a, cross_entropy_forward)(loss, lse, logits, targets, N, V, ignore);
  return info.Env().Undefined();
}

// crossEntropyBackward(dlogits, dlogitsO, dloss, dlossO, logits, logitsO, lse, lseO, targets, targetsO,
//                      N, V, ignoreIndex); dlogits may be the logits themselves.
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(10, "N"), V = a.Size(11, "V");
  const int32_t ignore = IgnoreIndex(a, 12);
  const int64_t NV = a.Mul(N, V);
  float* dlogits = a.Ptr<float>(0, "dlogits", NV);
  const float* dloss = a.Ptr<float>(2, "dloss", N);
  const float* logits = a.Ptr<float>(4, "logits", NV);
  const float* lse = a.Ptr<float>(6, "lse", N);
  const int32_t* targets = a.Ptr<int32_t>(8, "targets", N);
  CheckTargets(a, targets, N, V, true, ignore, "target");
  if (Overlap(dlogits, NV, targets, N)) a.Fail("targets share memory with dlogits");
  PG_ON(a, cross_entropy_backward)(dlogits, dloss, logits, lse, targets, N, V, ignore);
  return info.Env().Undefined();
}

// logprobForward(out, outO, lse, lseO, logits, logitsO, ids, idsO, N, V)
Napi::Value LogprobForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(8, "N"), V = a.Size(9, "V");
  float* out = a.Ptr<float>(0, "out", N);
  float* lse = a.Ptr<float>(2, "lse", N);
  const float* logits = a.Ptr<float>(4, "logits", a.Mul(N, V));
  const int32_t* ids = a.Ptr<int32_t>(6, "ids", N);
  CheckTargets(a, ids, N, V, false, 0, "id");
  if (Overlap(out, N, ids, N) || Overlap(lse, N, ids, N)) a.Fail("ids share memory with an output");
  PG_ON(a, logprob_forward)(out, lse, logits, ids, N, V);
  return info.Env().Undefined();
}

// logprobBackward(dlogits, dlogitsO, dout, doutO, logits, logitsO, lse, lseO, ids, idsO, N, V)
Napi::Value LogprobBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(10, "N"), V = a.Size(11, "V");
  const int64_t NV = a.Mul(N, V);
  float* dlogits = a.Ptr<float>(0, "dlogits", NV);
  const float* dout = a.Ptr<float>(2, "dout", N);
  const float* logits = a.Ptr<float>(4, "logits", NV);
  const float* lse = a.Ptr<float>(6, "lse", N);
  const int32_t* ids = a.Ptr<int32_t>(8, "ids", N);
  CheckTargets(a, ids, N, V, false, 0, "id");
  if (Overlap(dlogits, NV, ids, N)) a.Fail("ids share memory with dlogits");
  PG_ON(a, logprob_backward)(dlogits, dout, logits, lse, ids, N, V);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "crossEntropyForward", "crossEntropy",
     "loss: f32, lse: f32, logits: f32, targets: i32, N: size, V: size, ignoreIndex: int",
     "void", /* cpu */ CrossEntropyForward, /* cuda */ PG_CUDA(CrossEntropyForward)},
    {DeclKind::Function, "crossEntropyBackward", "crossEntropy backward",
     "dlogits: f32, dloss: f32, logits: f32, lse: f32, targets: i32, N: size, V: size, ignoreIndex: int",
     "void", /* cpu */ CrossEntropyBackward, /* cuda */ PG_CUDA(CrossEntropyBackward)},
    {DeclKind::Function, "logprobForward", "logprobs",
     "out: f32, lse: f32, logits: f32, ids: i32, N: size, V: size",
     "void", /* cpu */ LogprobForward, /* cuda */ PG_CUDA(LogprobForward)},
    {DeclKind::Function, "logprobBackward", "logprobs backward",
     "dlogits: f32, dout: f32, logits: f32, lse: f32, ids: i32, N: size, V: size",
     "void", /* cpu */ LogprobBackward, /* cuda */ PG_CUDA(LogprobBackward)},
};

}  // namespace

void RegisterCrossEntropy(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
