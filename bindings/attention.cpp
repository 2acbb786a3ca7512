// Bindings of native/cpu/attention.cpp. (Functions are registered as the kernels land.)
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

void RegisterAttention(Napi::Env env, Napi::Object exports) {}

}  // namespace pgnode
