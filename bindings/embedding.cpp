// Bindings of native/cpu/embedding.cpp. Every id is checked against the table's rows here,
// before the kernel reads table[id] or writes dtable[id].
#include <cstdint>
#include <string>

#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

void CheckIds(const Args& a, const int32_t* ids, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; ++n)
    if (ids[n] < 0 || ids[n] >= V)
      a.Fail("id " + std::to_string(ids[n]) + " at position " + std::to_string(n) + " is outside [0, V = " +
             std::to_string(V) + ")");
}

// embeddingForward(out, outO, ids, idsO, table, tableO, N, V, C)
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(6, "N"), V = a.Size(7, "V"), C = a.Size(8, "C");
  float* out = a.Ptr<float>(0, "out", a.Mul(N, C));
  const int32_t* ids = a.Ptr<int32_t>(2, "ids", N);
  const float* table = a.Ptr<float>(4, "table", a.Mul(V, C));
  if (Overlap(out, N * C, ids, N)) a.Fail("out and ids share memory");
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {  // ids live on the device: the kernel checks them against V
    pg::cuda::embedding_forward(out, ids, table, N, C, V);
    return info.Env().Undefined();
  }
#endif
  CheckIds(a, ids, N, V);
  pg::embedding_forward(out, ids, table, N, C);
  return info.Env().Undefined();
}

// embeddingBackward(dtable, dtableO, dout, doutO, ids, idsO, N, V, C): dtable += scatter(dout)
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(6, "N"), V = a.Size(7, "V"), C = a.Size(8, "C");
  float* dtable = a.Ptr<float>(0, "dtable", a.Mul(V, C));
  const float* dout = a.Ptr<float>(2, "dout", a.Mul(N, C));
  const int32_t* ids = a.Ptr<int32_t>(4, "ids", N);
  if (Overlap(dtable, V * C, ids, N)) a.Fail("dtable and ids share memory");
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    pg::cuda::embedding_backward(dtable, dout, ids, N, C, V);
    return info.Env().Undefined();
  }
#endif
  CheckIds(a, ids, N, V);
  pg::embedding_backward(dtable, dout, ids, N, C);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "embeddingForward", "embedding",
     "out: f32, ids: i32, table: f32, N: size, V: size, C: size",
     "void", /* cpu */ EmbeddingForward, /* cuda */ PG_CUDA(EmbeddingForward)},
    {DeclKind::Function, "embeddingBackward", "embedding backward",
     "dtable: f32, dout: f32, ids: i32, N: size, V: size, C: size",
     "void", /* cpu */ EmbeddingBackward, /* cuda */ PG_CUDA(EmbeddingBackward)},
};

}  // namespace

void RegisterEmbedding(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
