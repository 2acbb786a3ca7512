// Bindings of native/cpu/cross_entropy.cpp. (Functions are registered as the kernels land.)
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

void RegisterCrossEntropy(Napi::Env env, Napi::Object exports) {}

}  // namespace pgnode
