// Bindings of native/cpu/gemm.cpp. (Functions are registered as the kernels land.)
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

void RegisterGemm(Napi::Env env, Napi::Object exports) {}

}  // namespace pgnode
