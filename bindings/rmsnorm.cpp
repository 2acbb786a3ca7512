// Bindings of native/cpu/rmsnorm.cpp. (Functions are registered as the kernels land.)
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

void RegisterRmsnorm(Napi::Env env, Napi::Object exports) {}

}  // namespace pgnode
