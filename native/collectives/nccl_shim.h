// NCCL, opened at run time (dlopen libnccl.so.2), with our own declarations of the few entry points
// the collectives use: the package builds without nccl.h and runs without NCCL, and a CUDA rank
// that needs it gets a clear error when it is missing. Types and enum values are NCCL's (nccl.h,
// stable since NCCL 2.0); the functions take device pointers and a cudaStream_t (as void*).
#pragma once
#include <cstddef>
#include <string>

namespace pg::nccl {

struct UniqueId {
  char internal[128];  // NCCL_UNIQUE_ID_BYTES
};
using Comm = struct ncclComm*;
using Result = int;  // ncclResult_t: 0 success
enum DataType : int { Int8 = 0, Uint8 = 1, Int32 = 2, Uint32 = 3, Int64 = 4, Uint64 = 5, Float16 = 6, Float32 = 7, Float64 = 8, Bfloat16 = 9 };
enum RedOp : int { Sum = 0, Prod = 1, Max = 2, Min = 3, Avg = 4 };
constexpr Result kInProgress = 7;  // ncclInProgress: a non-blocking communicator's call still running

// ncclConfig_t as NCCL 2.17 lays it out (nccl.h's ncclConfig_v21700). NCCL reads `size` and
// `version` to know which layout it was given, so later versions take this one as it is.
struct Config {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
  int cgaClusterSize;
  int minCTAs;
  int maxCTAs;
  const char* netName;
  int splitShare;
};
// NCCL_CONFIG_INITIALIZER for that layout: every field "undefined" (NCCL's defaults).
Config default_config();
constexpr int kConfigVersion = 21700;

// The NCCL entry points, or null before a successful load().
struct Api {
  Result (*GetUniqueId)(UniqueId*);
  Result (*CommInitRank)(Comm*, int nranks, UniqueId id, int rank);
  Result (*AllReduce)(const void*, void*, size_t, int, int, Comm, void* stream);
  Result (*ReduceScatter)(const void*, void*, size_t recvcount, int, int, Comm, void* stream);
  Result (*AllGather)(const void*, void*, size_t sendcount, int, Comm, void* stream);
  Result (*Broadcast)(const void*, void*, size_t, int, int root, Comm, void* stream);
  Result (*Reduce)(const void*, void*, size_t, int, int op, int root, Comm, void* stream);
  Result (*GroupStart)();
  Result (*GroupEnd)();
  Result (*CommAbort)(Comm);
  Result (*CommDestroy)(Comm);
  const char* (*GetErrorString)(Result);
  Result (*CommGetAsyncError)(Comm, Result*);
  Result (*GetVersion)(int*);
  // NCCL >= 2.14; null in an older library (then the blocking ncclCommInitRank, with no timeout).
  Result (*CommInitRankConfig)(Comm*, int nranks, UniqueId id, int rank, Config* config);
};

// Opens NCCL once (PATENTGPT_NCCL names the library file, default libnccl.so.2). Returns the API,
// or null with `error` saying what was missing and what to install.
const Api* load(std::string* error);

// "NCCL <op> failed on rank R: <NCCL's message>", for a non-zero result.
std::string describe(const Api& api, Result r, const char* op, int rank);

// What a wait on a communicator came to: ok, or the reason (and whether it was the deadline).
struct Outcome {
  bool ok = true;
  bool timed_out = false;
  Result result = 0;
  std::string error;
};

// Polls ncclCommGetAsyncError until the communicator's pending call leaves ncclInProgress, or
// until timeout_ms (<= 0: no limit). On a timeout or an error the communicator is aborted
// (ncclCommAbort), since NCCL itself never gives up; `what` names the call in the message.
Outcome wait_ready(const Api& api, Comm comm, double timeout_ms, int rank, int nranks, const char* what);

// Joins rank `rank` of `nranks` to the communicator of `id` on the current CUDA device. With
// NCCL >= 2.17's ncclCommInitRankConfig and timeout_ms > 0 the communicator is non-blocking
// (config.blocking = 0) and its set-up is polled up to timeout_ms: a peer that never joins gives
// an error naming this rank and what is missing, not a hang. Without that API (older NCCL), the
// blocking ncclCommInitRank, which waits for every peer with no limit. `*comm` is set only on success.
Outcome init_rank(const Api& api, Comm* comm, int nranks, const UniqueId& id, int rank, double timeout_ms);

}  // namespace pg::nccl
