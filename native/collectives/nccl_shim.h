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

// The NCCL entry points, or null before a successful load().
struct Api {
  Result (*GetUniqueId)(UniqueId*);
  Result (*CommInitRank)(Comm*, int nranks, UniqueId id, int rank);
  Result (*AllReduce)(const void*, void*, size_t, int, int, Comm, void* stream);
  Result (*ReduceScatter)(const void*, void*, size_t recvcount, int, int, Comm, void* stream);
  Result (*AllGather)(const void*, void*, size_t sendcount, int, Comm, void* stream);
  Result (*Broadcast)(const void*, void*, size_t, int, int root, Comm, void* stream);
  Result (*CommAbort)(Comm);
  Result (*CommDestroy)(Comm);
  const char* (*GetErrorString)(Result);
  Result (*CommGetAsyncError)(Comm, Result*);
  Result (*GetVersion)(int*);
};

// Opens NCCL once (PATENTGPT_NCCL names the library file, default libnccl.so.2). Returns the API,
// or null with `error` saying what was missing and what to install.
const Api* load(std::string* error);

// "NCCL <op> failed on rank R: <NCCL's message>", for a non-zero result.
std::string describe(const Api& api, Result r, const char* op, int rank);

}  // namespace pg::nccl
