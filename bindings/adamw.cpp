// Bindings of native/cpu/adamw.cpp. (Functions are registered as the kernels land.)
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

void RegisterAdamw(Napi::Env env, Napi::Object exports) {}

}  // namespace pgnode
