// See nccl_shim.h: NCCL opened with dlopen, resolved symbol by symbol.
#include "nccl_shim.h"

#include <dlfcn.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

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
  resolve(lib, "ncclReduce", g_api.Reduce, missing);
  resolve(lib, "ncclGroupStart", g_api.GroupStart, missing);
  resolve(lib, "ncclGroupEnd", g_api.GroupEnd, missing);
  resolve(lib, "ncclCommAbort", g_api.CommAbort, missing);
  resolve(lib, "ncclCommDestroy", g_api.CommDestroy, missing);
  resolve(lib, "ncclGetErrorString", g_api.GetErrorString, missing);
  resolve(lib, "ncclCommGetAsyncError", g_api.CommGetAsyncError, missing);
  resolve(lib, "ncclGetVersion", g_api.GetVersion, missing);
  // Optional (NCCL >= 2.14): without it, the blocking init.
  g_api.CommInitRankConfig = reinterpret_cast<decltype(g_api.CommInitRankConfig)>(dlsym(lib, "ncclCommInitRankConfig"));
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

Config default_config() {
  Config c{};
  c.size = sizeof(Config);
  c.magic = 0xcafebeef;  // NCCL_API_MAGIC
  c.version = kConfigVersion;
  c.blocking = c.cgaClusterSize = c.minCTAs = c.maxCTAs = c.splitShare = INT_MIN;  // NCCL_CONFIG_UNDEF_INT
  c.netName = nullptr;
  return c;
}

namespace {

std::string seconds(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", ms / 1000);
  return buf;
}

std::string of(int rank, int nranks) { return "rank " + std::to_string(rank) + " of " + std::to_string(nranks); }

}  // namespace

Outcome wait_ready(const Api& api, Comm comm, double timeout_ms, int rank, int nranks, const char* what) {
  const auto t0 = std::chrono::steady_clock::now();
  Outcome out;
  for (;;) {
    Result state = 0;
    const Result q = api.CommGetAsyncError(comm, &state);
    if (q != 0) state = q;
    if (state == 0) return out;
    if (state != kInProgress) {
      out.ok = false;
      out.result = state;
      out.error = describe(api, state, what, rank) + " (" + of(rank, nranks) + "; a peer rank may have died)";
      break;
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (timeout_ms > 0 && ms > timeout_ms) {
      out.ok = false;
      out.timed_out = true;
      out.result = kInProgress;
      out.error = of(rank, nranks) + ": NCCL " + what + " did not complete within " + seconds(timeout_ms) + " s: a peer rank died or hangs";
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  api.CommAbort(comm);  // lets NCCL's threads and kernels give up; the communicator is gone
  return out;
}

Outcome init_rank(const Api& api, Comm* comm, int nranks, const UniqueId& id, int rank, double timeout_ms) {
  Outcome out;
  int version = 0;
  if (api.GetVersion) api.GetVersion(&version);
  Comm c = nullptr;
  if (!api.CommInitRankConfig || version < kConfigVersion || timeout_ms <= 0) {
    // Older NCCL: blocks until every rank joined, with no limit (a missing peer hangs here).
    const Result r = api.CommInitRank(&c, nranks, id, rank);
    if (r != 0) {
      out.ok = false;
      out.result = r;
      out.error = describe(api, r, "commInitRank", rank) + " (" + of(rank, nranks) + ")";
      return out;
    }
    *comm = c;
    return out;
  }
  Config config = default_config();
  config.blocking = 0;  // returns at once (ncclInProgress); set-up goes on in NCCL's threads
  const Result r = api.CommInitRankConfig(&c, nranks, id, rank, &config);
  if (r != 0 && r != kInProgress) {
    if (c) api.CommAbort(c);
    out.ok = false;
    out.result = r;
    out.error = describe(api, r, "commInitRankConfig", rank) + " (" + of(rank, nranks) + ")";
    return out;
  }
  if (!c) {
    out.ok = false;
    out.result = r;
    out.error = of(rank, nranks) + ": ncclCommInitRankConfig returned no communicator";
    return out;
  }
  out = wait_ready(api, c, timeout_ms, rank, nranks, "communicator set-up");
  if (out.timed_out)
    out.error = of(rank, nranks) + ": the NCCL communicator was not set up within " + seconds(timeout_ms) + " s: not all " +
                std::to_string(nranks) +
                " ranks joined it (a rank that was not started, died while starting, or cannot reach this one). Check that every "
                "rank was launched with the same WORLD_SIZE and MASTER_ADDR/MASTER_PORT (or in one mpirun/srun job), that "
                "NCCL_SOCKET_IFNAME names an interface the machines share, or raise the limit (PATENTGPT_DIST_TIMEOUT seconds)";
  if (out.ok) *comm = c;
  return out;
}

}  // namespace pg::nccl
