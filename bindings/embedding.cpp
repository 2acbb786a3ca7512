// Bindings of native/cpu/embedding.cpp. (Functions are registered as the kernels land.)
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

void RegisterEmbedding(Napi::Env env, Napi::Object exports) {}

}  // namespace pgnode
