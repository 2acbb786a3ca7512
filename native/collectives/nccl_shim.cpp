// See nccl_shim.h: NCCL opened with dlopen, resolved symbol by symbol.
#include "nccl_shim.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace pg::nccl {

namespace {

Api g_api{};
bool g_loaded = false;
std::string g_error;

template <typename F>
bool resolve(void* lib, const char* name, F& out, std::string& missing) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  if (!out) missing += missing.empty() ? name : std::string(", ") + name;
  return out != nullptr;
}

void open_once() {
  const char* env = std::getenv("PATENTGPT_NCCL");
  const std::string file = env && *env ? env : "libnccl.so.2";
  void* lib = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    g_error = "NCCL is not available: cannot load " + file + " (" + (why ? why : "not found") +
              "). Install NCCL: pip install nvidia-nccl-cu13 (its nvidia/nccl/lib holds libnccl.so.2) or apt-get install libnccl2, "
              "and put the library on LD_LIBRARY_PATH or set PATENTGPT_NCCL to its path";
    return;
  }
  std::string missing;
  resolve(lib, "ncclGetUniqueId", g_api.GetUniqueId, missing);
  resolve(lib, "ncclCommInitRank", g_api.CommInitRank, missing);
  resolve(lib, "ncclAllReduce", g_api.AllReduce, missing);
  resolve(lib, "ncclReduceScatter", g_api.ReduceScatter, missing);
  resolve(lib, "ncclAllGather", g_api.AllGather, missing);
  resolve(lib, "ncclBroadcast", g_api.Broadcast, missing);
  resolve(lib, "ncclCommAbort", g_api.CommAbort, missing);
  resolve(lib, "ncclCommDestroy", g_api.CommDestroy, missing);
  resolve(lib, "ncclGetErrorString", g_api.GetErrorString, missing);
  resolve(lib, "ncclCommGetAsyncError", g_api.CommGetAsyncError, missing);
  resolve(lib, "ncclGetVersion", g_api.GetVersion, missing);
  if (!missing.empty()) {
    g_error = file + " lacks " + missing + " (NCCL 2.x is needed)";
    dlclose(lib);
    g_api = Api{};
    return;
  }
  g_loaded = true;
}

}  // namespace

const Api* load(std::string* error) {
  static std::once_flag once;
  std::call_once(once, open_once);
  if (!g_loaded && error) *error = g_error;
  return g_loaded ? &g_api : nullptr;
}

std::string describe(const Api& api, Result r, const char* op, int rank) {
  const char* msg = api.GetErrorString ? api.GetErrorString(r) : nullptr;
  return std::string("NCCL ") + op + " failed on rank " + std::to_string(rank) + ": " + (msg ? msg : "error " + std::to_string(r));
}

}  // namespace pg::nccl
