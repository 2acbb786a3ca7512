// The NCCL join with a deadline (pg::nccl::init_rank, wait_ready in native/collectives/nccl_shim.cpp)
// driven by a fake NCCL API table, so its host logic is checked on machines without a GPU or NCCL:
//   a set-up that never completes     -> a timeout error naming the rank, the world size and what
//                                        is missing; the communicator aborted, none returned
//   a set-up that completes after k polls -> success after exactly k polls, no abort
//   an asynchronous error              -> NCCL's error text and the rank; aborted
//   an NCCL without ncclCommInitRankConfig, or older than 2.17 -> the blocking ncclCommInitRank
//   a collective still in progress past the deadline -> its own timeout message
#include <climits>
#include <cstdio>
#include <string>

#include "../collectives/nccl_shim.h"

namespace nccl = pg::nccl;

namespace {

int g_version = 23007;
int g_polls = 0;          // ncclCommGetAsyncError calls
int g_ready_after = -1;   // polls after which the state is ncclSuccess (-1: never)
int g_async_error = 0;    // state reported instead of ncclInProgress (0: none)
int g_aborts = 0, g_blocking_inits = 0, g_config_inits = 0;
nccl::Config g_seen{};
const nccl::Comm kFake = reinterpret_cast<nccl::Comm>(0x1234);

nccl::Result GetVersion(int* v) { *v = g_version; return 0; }
nccl::Result InitRank(nccl::Comm* c, int, nccl::UniqueId, int) { ++g_blocking_inits; *c = kFake; return 0; }
nccl::Result InitRankConfig(nccl::Comm* c, int, nccl::UniqueId, int, nccl::Config* cfg) {
  ++g_config_inits;
  g_seen = *cfg;
  *c = kFake;
  return nccl::kInProgress;
}
nccl::Result GetAsyncError(nccl::Comm, nccl::Result* state) {
  ++g_polls;
  if (g_async_error) *state = g_async_error;
  else *state = g_ready_after >= 0 && g_polls >= g_ready_after ? 0 : nccl::kInProgress;
  return 0;
}
nccl::Result Abort(nccl::Comm) { ++g_aborts; return 0; }
const char* ErrorString(nccl::Result r) { return r == 6 ? "remote process exited or there was a network error" : "other error"; }

nccl::Api fake(bool with_config) {
  nccl::Api api{};
  api.GetVersion = GetVersion;
  api.CommInitRank = InitRank;
  api.CommInitRankConfig = with_config ? InitRankConfig : nullptr;
  api.CommGetAsyncError = GetAsyncError;
  api.CommAbort = Abort;
  api.GetErrorString = ErrorString;
  return api;
}

void reset() { g_version = 23007; g_polls = 0; g_ready_after = -1; g_async_error = 0; g_aborts = g_blocking_inits = g_config_inits = 0; g_seen = {}; }

int failures = 0;
void expect(bool ok, const char* what, const std::string& detail = "") {
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail.empty() ? "" : ": ", detail.c_str());
  if (!ok) ++failures;
}
bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

int main() {
  nccl::UniqueId id{};
  {
    reset();
    const nccl::Api api = fake(true);
    nccl::Comm comm = nullptr;
    const nccl::Outcome r = nccl::init_rank(api, &comm, 2, id, 1, 30);
    expect(!r.ok && r.timed_out, "never-completing set-up times out", r.error);
    expect(has(r.error, "rank 1 of 2") && has(r.error, "not all 2 ranks joined") && has(r.error, "MASTER_ADDR") &&
               has(r.error, "PATENTGPT_DIST_TIMEOUT"),
           "the timeout names the rank, the world size, the missing peers and what to check");
    expect(g_aborts == 1 && comm == nullptr, "the stuck communicator is aborted and not returned");
    expect(g_config_inits == 1 && g_blocking_inits == 0 && g_seen.blocking == 0 && g_seen.magic == 0xcafebeef &&
               g_seen.version == 21700 && g_seen.size == sizeof(nccl::Config) && g_seen.minCTAs == INT_MIN,
           "non-blocking config (NCCL_CONFIG_INITIALIZER's undefined fields, blocking = 0)");
  }
  {
    reset();
    g_ready_after = 5;
    const nccl::Api api = fake(true);
    nccl::Comm comm = nullptr;
    const nccl::Outcome r = nccl::init_rank(api, &comm, 4, id, 3, 60000);
    expect(r.ok && comm == kFake && g_polls == 5 && g_aborts == 0, "set-up completing after 5 polls succeeds",
           "polls " + std::to_string(g_polls) + (r.ok ? "" : ", " + r.error));
  }
  {
    reset();
    g_async_error = 6;  // ncclRemoteError
    const nccl::Api api = fake(true);
    nccl::Comm comm = nullptr;
    const nccl::Outcome r = nccl::init_rank(api, &comm, 2, id, 0, 60000);
    expect(!r.ok && !r.timed_out && r.result == 6 && comm == nullptr && g_aborts == 1, "an asynchronous error fails at once and aborts");
    expect(has(r.error, "remote process exited") && has(r.error, "rank 0"), "the error carries NCCL's text and the rank", r.error);
  }
  {
    reset();
    const nccl::Api api = fake(false);
    nccl::Comm comm = nullptr;
    const nccl::Outcome r = nccl::init_rank(api, &comm, 2, id, 1, 30);
    expect(r.ok && comm == kFake && g_blocking_inits == 1 && g_polls == 0, "without ncclCommInitRankConfig: the blocking init");
    reset();
    g_version = 21500;
    const nccl::Api api2 = fake(true);
    comm = nullptr;
    const nccl::Outcome r2 = nccl::init_rank(api2, &comm, 2, id, 1, 30);
    expect(r2.ok && g_blocking_inits == 1 && g_config_inits == 0, "NCCL older than 2.17: the blocking init");
  }
  {
    reset();
    const nccl::Api api = fake(true);
    const nccl::Outcome r = nccl::wait_ready(api, kFake, 20, 1, 2, "all-reduce");
    expect(!r.ok && r.timed_out && has(r.error, "rank 1 of 2") && has(r.error, "all-reduce did not complete within") && g_aborts == 1,
           "a collective in progress past the deadline", r.error);
  }
  if (failures) {
    std::printf("%d failed\n", failures);
    return 1;
  }
  std::printf("all passed\n");
  return 0;
}
