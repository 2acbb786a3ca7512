// The addon's entry point: registers the Storage class and every op family's functions.
// src/tensor/addon.ts describes the resulting object for TypeScript.
#include <napi.h>

#include "args.h"
#include "storage.h"

namespace pgnode {

void RegisterReduce(Napi::Env env, Napi::Object exports);  // reduce.cpp

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Storage", Storage::Define(env));
  RegisterRuntime(env, exports);
  RegisterElementwise(env, exports);
  RegisterReduce(env, exports);
  RegisterGemm(env, exports);
  RegisterEmbedding(env, exports);
  RegisterRmsnorm(env, exports);
  RegisterRope(env, exports);
  RegisterSwiglu(env, exports);
  RegisterCrossEntropy(env, exports);
  RegisterAttention(env, exports);
  RegisterAdamw(env, exports);
  RegisterMinhash(env, exports);
  RegisterTextStats(env, exports);
  RegisterBpeTrain(env, exports);
  RegisterBpeEncode(env, exports);
  RegisterPagedAttention(env, exports);
  RegisterGemv(env, exports);
  return exports;
}

}  // namespace pgnode

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return pgnode::Init(env, exports); }

NODE_API_MODULE(patentgpt, InitAddon)
