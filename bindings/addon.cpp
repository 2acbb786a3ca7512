// The addon's entry point: registers the Storage class and every op family's functions.
// Every function is declared next to its body (signature.h); signatures() lists them, and
// scripts/gen-addon-types.mjs turns that list into src/native/addon-types.ts.
#include <napi.h>

#include "args.h"
#include "storage.h"

namespace pgnode {

// Each op family registers its functions (one bindings/<family>.cpp each); a new family adds a
// line here and a call in Init.
void RegisterRuntime(Napi::Env env, Napi::Object exports);
void RegisterElementwise(Napi::Env env, Napi::Object exports);
void RegisterReduce(Napi::Env env, Napi::Object exports);
void RegisterGemm(Napi::Env env, Napi::Object exports);
void RegisterGemmBf16(Napi::Env env, Napi::Object exports);
void RegisterEmbedding(Napi::Env env, Napi::Object exports);
void RegisterRmsnorm(Napi::Env env, Napi::Object exports);
void RegisterRope(Napi::Env env, Napi::Object exports);
void RegisterSwiglu(Napi::Env env, Napi::Object exports);
void RegisterCrossEntropy(Napi::Env env, Napi::Object exports);
void RegisterAttention(Napi::Env env, Napi::Object exports);
void RegisterAdamw(Napi::Env env, Napi::Object exports);
void RegisterMinhash(Napi::Env env, Napi::Object exports);
void RegisterTextStats(Napi::Env env, Napi::Object exports);
void RegisterBpeTrain(Napi::Env env, Napi::Object exports);
void RegisterBpeEncode(Napi::Env env, Napi::Object exports);
void RegisterPagedAttention(Napi::Env env, Napi::Object exports);
void RegisterGemv(Napi::Env env, Napi::Object exports);
void RegisterMoe(Napi::Env env, Napi::Object exports);
void RegisterDropout(Napi::Env env, Napi::Object exports);
void RegisterQuant(Napi::Env env, Napi::Object exports);
void RegisterNccl(Napi::Env env, Napi::Object exports);
void RegisterLossScale(Napi::Env env, Napi::Object exports);

namespace {

Napi::Value Signatures(const Napi::CallbackInfo& info, const Args&) { return SignaturesValue(info.Env()); }

// signatures() itself (Storage is declared in storage.cpp, each op family in its own file).
const Decl kDecls[] = {
    {DeclKind::Function, "signatures", "signatures", "", "NativeSignature[]", Signatures},
};

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Define(env, exports, kDecls);
  exports.Set("Storage", Storage::Define(env));
  RegisterRuntime(env, exports);
  RegisterElementwise(env, exports);
  RegisterReduce(env, exports);
  RegisterGemm(env, exports);
  RegisterGemmBf16(env, exports);
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
  RegisterMoe(env, exports);
  RegisterDropout(env, exports);
  RegisterQuant(env, exports);
  RegisterNccl(env, exports);
  RegisterLossScale(env, exports);
  return exports;
}

}  // namespace pgnode

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return pgnode::Init(env, exports); }

NODE_API_MODULE(patentgpt, InitAddon)
