// Bindings of native/cpu/swiglu.cpp. (Functions are registered as the kernels land.)
#include "args.h"
#include "patentgpt/ops.h"

namespace pgnode {

void RegisterSwiglu(Napi::Env env, Napi::Object exports) {}

}  // namespace pgnode
