// Bindings of native/cpu/rope.cpp. (Functions are registered as the kernels land.)
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

void RegisterRope(Napi::Env env, Napi::Object exports) {}

}  // namespace pgnode
