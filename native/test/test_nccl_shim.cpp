// The NCCL shim (native/collectives/nccl_shim.cpp): where NCCL cannot be loaded, load() returns null with
// an error that names the library and what to install; where it can (a GPU machine), every entry
// point is resolved and the version is NCCL 2.x.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "../collectives/nccl_shim.h"

int main() {
  std::string err;
  const pg::nccl::Api* api = pg::nccl::load(&err);
  if (!api) {
    const bool names_lib = err.find("libnccl.so.2") != std::string::npos || err.find(std::getenv("PATENTGPT_NCCL") ? std::getenv("PATENTGPT_NCCL") : "libnccl") != std::string::npos;
    const bool says_what = err.find("Install NCCL") != std::string::npos || err.find("lacks") != std::string::npos;
    std::printf("NCCL not loaded: %s\n", err.c_str());
    if (!names_lib || !says_what) {
      std::printf("FAIL: the error must name the library and what to do\n");
      return 1;
    }
    // A second load() gives the same answer (opened once).
    std::string again;
    if (pg::nccl::load(&again) != nullptr || again != err) return 1;
    std::printf("ok (no NCCL on this machine)\n");
    return 0;
  }
  int version = 0;
  if (api->GetVersion(&version) != 0 || version < 20000) {
    std::printf("FAIL: NCCL version %d\n", version);
    return 1;
  }
  pg::nccl::UniqueId id{};
  if (api->GetUniqueId(&id) != 0) {
    std::printf("FAIL: ncclGetUniqueId\n");
    return 1;
  }
  std::printf("ok: NCCL %d loaded, unique id made\n", version);
  return 0;
}
