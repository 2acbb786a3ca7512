// NCCL collectives over CUDA tensors (src/distributed/nccl.ts is the facade). NCCL is opened at run
// time (native/collectives/nccl_shim.cpp), so the addon loads without it; every call that needs it
// fails with E_NATIVE_DEVICE saying what to install, which the facade turns into E_UNSUPPORTED.
//
// A communicator is a handle (an index into a process-wide table) made by ncclCommInit from the
// 128-byte unique id rank 0 made (ncclUniqueId) and the ranks exchanged (over MPI or a TCP
// rendezvous, in TypeScript), on the current device: the LOCAL_RANK's GPU, since
// initDataParallel narrows CUDA_VISIBLE_DEVICES to it before CUDA starts. Joining is bounded by
// the job's timeout (NCCL >= 2.17: a non-blocking communicator whose set-up is polled, see
// pg::nccl::init_rank), so a rank whose peers never come fails naming its rank instead of hanging.
//
// The collectives are enqueued on the process stream (cuda_ops.h stream(): the one every kernel
// and copy goes on, so they are ordered after the backward that made the gradients and before any
// read) and return at once; or, while ncclUseCommStream is on, on a second stream (cuda_ops.h
// comm_stream()) so gradient buckets reduce while backward still runs, ordered against the process
// stream by events (ncclOrder: the comm stream waits for a bucket's gradients, the process stream
// for the reduced ones before the optimizer). ncclSynchronize waits for the stream, polling ncclCommGetAsyncError, up
// to a timeout: NCCL, like MPI, never times out on its own, so a dead peer would hang every rank.
// On an error or the timeout the communicator is aborted (ncclCommAbort lets the stuck kernels
// exit) and the result says why, naming the rank.
//
// CPU tensors reach the cpu column of the kernel table, which refuses them: they go through MPI.
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../native/collectives/nccl_shim.h"
#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/runtime.h"

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace pgnode {

namespace {

struct CommEntry {
  pg::nccl::Comm comm = nullptr;
  int rank = 0, size = 0;
  bool live = false;
  std::string aborted;  // why it was aborted, once it was
  double timeout_ms = 0;  // the job's limit, for a non-blocking communicator's calls in progress
  bool on_comm_stream = false;  // collectives go on the comm stream (ncclUseCommStream)
  bool used_comm_stream = false;  // some did: synchronize waits for that stream too
};

std::vector<CommEntry>& Comms() {
  static auto* comms = new std::vector<CommEntry>();  // never destroyed (finalizers at exit)
  return *comms;
}

// NCCL's API, or a failure that says what to install.
const pg::nccl::Api& NeedNccl(const Args& a) {
  std::string why;
  const pg::nccl::Api* api = pg::nccl::load(&why);
  if (!api) a.Fail(kErrDevice, why);
  return *api;
}

CommEntry& CommArg(const Args& a, size_t i) {
  const int64_t h = a.Int(i, "comm");
  auto& comms = Comms();
  if (h < 1 || h > static_cast<int64_t>(comms.size()) || !comms[static_cast<size_t>(h - 1)].comm)
    a.Fail("comm " + std::to_string(h) + " is not an NCCL communicator (ncclCommInit makes them)");
  CommEntry& e = comms[static_cast<size_t>(h - 1)];
  if (!e.live) a.Fail(kErrDevice, "the NCCL communicator of rank " + std::to_string(e.rank) + " was aborted: " + e.aborted);
  return e;
}

void Check(const Args& a, const pg::nccl::Api& api, pg::nccl::Result r, const char* op, const CommEntry* e, int rank) {
  if (r == 0) return;
  a.Fail(kErrDevice, pg::nccl::describe(api, r, op, e ? e->rank : rank));
}

// A collective's result: a non-blocking communicator may answer ncclInProgress while it enqueues
// (connecting to peers on first use); no other NCCL call may come before it is done, so wait here
// (up to the timeout; the communicator is aborted on an error or the deadline).
[[maybe_unused]] void CheckCollective(const Args& a, const pg::nccl::Api& api, pg::nccl::Result r, const char* op, CommEntry& e) {
  if (r == pg::nccl::kInProgress) {
    const pg::nccl::Outcome w = pg::nccl::wait_ready(api, e.comm, e.timeout_ms, e.rank, e.size, op);
    if (w.ok) return;
    e.live = false;
    e.aborted = w.error;
    a.Fail(kErrDevice, w.error);
  }
  Check(a, api, r, op, &e, 0);
}

// ncclStatus() -> whether NCCL opens here, its version, and why not.
Napi::Value Status(const Napi::CallbackInfo& info, const Args&) {
  Napi::Env env = info.Env();
  std::string why;
  const pg::nccl::Api* api = pg::nccl::load(&why);
  Napi::Object out = Napi::Object::New(env);
  int version = 0;
  if (api) api->GetVersion(&version);
  out.Set("version", api ? Napi::Value(Napi::Number::New(env, version)) : Napi::Value(env.Null()));
  out.Set("error", api ? Napi::Value(env.Null()) : Napi::Value(Napi::String::New(env, why)));
  out.Set("cudaCompiled", pg::cuda_compiled());
  return out;
}

// ncclUniqueId() -> the 128 bytes rank 0 makes and every rank passes to ncclCommInit.
Napi::Value UniqueId(const Napi::CallbackInfo& info, const Args& a) {
  const pg::nccl::Api& api = NeedNccl(a);
  pg::nccl::UniqueId id{};
  Check(a, api, api.GetUniqueId(&id), "getUniqueId", nullptr, 0);
  auto out = Napi::Uint8Array::New(info.Env(), sizeof id.internal);
  std::memcpy(out.Data(), id.internal, sizeof id.internal);
  return out;
}

// ncclCommInit(id, nranks, rank, timeoutMs?) -> comm: collective over the nranks ranks. With NCCL
// >= 2.17 the set-up is non-blocking and polled up to timeoutMs (default 300 s; <= 0: no limit), so a
// peer that never joins fails this rank with its rank and what is missing (pg::nccl::init_rank);
// an older NCCL blocks until every rank came.
Napi::Value CommInit(const Napi::CallbackInfo& info, const Args& a) {
  const uint8_t* bytes = TypedArg<uint8_t>(a, info[0], napi_uint8_array, "id", "Uint8Array of 128 bytes", 0);
  if (info[0].As<Napi::TypedArray>().ElementLength() != sizeof(pg::nccl::UniqueId::internal))
    a.Fail("id must hold exactly 128 bytes (ncclUniqueId), has " + std::to_string(info[0].As<Napi::TypedArray>().ElementLength()));
  const int64_t nranks = a.Size(1, "nranks"), rank = a.Size(2, "rank");
  if (nranks < 1 || rank >= nranks || nranks > 1 << 20) a.Fail("rank " + std::to_string(rank) + " of " + std::to_string(nranks) + " ranks");
  const double timeout_ms = info.Length() > 3 && !info[3].IsUndefined() ? a.Num(3, "timeoutMs") : 300000.0;
  const pg::nccl::Api& api = NeedNccl(a);
  if (!pg::cuda_compiled())
    a.Fail(kErrDevice, "NCCL reduces CUDA tensors, and this addon was built without CUDA (rebuild where nvcc is found)");
  pg::nccl::UniqueId id{};
  std::memcpy(id.internal, bytes, sizeof id.internal);
  pg::nccl::Comm comm = nullptr;
  const pg::nccl::Outcome r = pg::nccl::init_rank(api, &comm, static_cast<int>(nranks), id, static_cast<int>(rank), timeout_ms);
  if (!r.ok) a.Fail(kErrDevice, r.error);
  Comms().push_back({comm, static_cast<int>(rank), static_cast<int>(nranks), true, "", timeout_ms});
  return Napi::Number::New(info.Env(), static_cast<double>(Comms().size()));
}

// ncclDestroy(comm): frees the communicator (after its work completed).
Napi::Value Destroy(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t h = a.Int(0, "comm");
  auto& comms = Comms();
  if (h < 1 || h > static_cast<int64_t>(comms.size()) || !comms[static_cast<size_t>(h - 1)].comm)
    a.Fail("comm " + std::to_string(h) + " is not an NCCL communicator");
  CommEntry& e = comms[static_cast<size_t>(h - 1)];
  const pg::nccl::Api& api = NeedNccl(a);
  if (e.live) api.CommDestroy(e.comm);  // an aborted one was freed by the abort
  e.comm = nullptr;
  e.live = false;
  return info.Env().Undefined();
}

// The cpu column of the collectives: CPU tensors are MPI's.
Napi::Value CpuRefused(const Napi::CallbackInfo&, const Args& a) {
  a.Fail(kErrArg, "NCCL reduces CUDA tensors; CPU tensors go through MPI (src/distributed/mpi.ts)");
}

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA

// The stream a communicator's collectives go on: the process stream, or the comm stream while
// ncclUseCommStream is on (gradient buckets reduced while backward runs; ordered by ncclOrder).
void* StreamOf(CommEntry& e) {
  if (!e.on_comm_stream) return pg::cuda::stream();
  e.used_comm_stream = true;
  return pg::cuda::comm_stream();
}

// ncclAllReduce(comm, x, n, op): in place, sum or mean over the ranks.
Napi::Value AllReduce(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  const int64_t n = a.Size(3, "n");
  float* x = a.Ptr<float>(1, "x", n);
  const std::string op = info[4].As<Napi::String>().Utf8Value();
  const pg::nccl::Api& api = NeedNccl(a);
  CheckCollective(a, api, api.AllReduce(x, x, static_cast<size_t>(n), pg::nccl::Float32, op == "avg" ? pg::nccl::Avg : pg::nccl::Sum, e.comm,
                              StreamOf(e)),
        "all-reduce", e);
  return info.Env().Undefined();
}

// ncclReduceScatter(comm, out, x, n): out (n) = block `rank` of the sum of x (size * n).
Napi::Value ReduceScatter(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  const int64_t n = a.Size(5, "n");
  float* out = a.Ptr<float>(1, "out", n);
  const float* x = a.Ptr<float>(3, "x", a.Mul(n, e.size));
  if (Overlap(out, n, x, n * e.size)) a.Fail("out must not overlap x");
  const pg::nccl::Api& api = NeedNccl(a);
  CheckCollective(a, api, api.ReduceScatter(x, out, static_cast<size_t>(n), pg::nccl::Float32, pg::nccl::Sum, e.comm, StreamOf(e)),
        "reduce-scatter", e);
  return info.Env().Undefined();
}

// ncclAllGather(comm, out, x, n): out (size * n) = every rank's x (n), in rank order.
Napi::Value AllGather(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  const int64_t n = a.Size(5, "n");
  float* out = a.Ptr<float>(1, "out", a.Mul(n, e.size));
  const float* x = a.Ptr<float>(3, "x", n);
  if (Overlap(out, n * e.size, x, n)) a.Fail("out must not overlap x");
  const pg::nccl::Api& api = NeedNccl(a);
  CheckCollective(a, api, api.AllGather(x, out, static_cast<size_t>(n), pg::nccl::Float32, e.comm, StreamOf(e)), "all-gather", e);
  return info.Env().Undefined();
}

// ncclBroadcast(comm, x, n, root): in place, root's values on every rank.
Napi::Value Broadcast(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  const int64_t n = a.Size(3, "n");
  float* x = a.Ptr<float>(1, "x", n);
  const int64_t root = a.Int(4, "root");
  if (root < 0 || root >= e.size) a.Fail("root " + std::to_string(root) + " is not a rank of " + std::to_string(e.size));
  const pg::nccl::Api& api = NeedNccl(a);
  CheckCollective(a, api, api.Broadcast(x, x, static_cast<size_t>(n), pg::nccl::Float32, static_cast<int>(root), e.comm, StreamOf(e)),
        "broadcast", e);
  return info.Env().Undefined();
}

// ncclReduce(comm, x, n, op, root): in place; root's x becomes the sum (or mean) over the ranks, the
// others' x is left as it was (ZeRO-2: each gradient reduced to the rank that owns its parameter).
Napi::Value Reduce(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  const int64_t n = a.Size(3, "n");
  float* x = a.Ptr<float>(1, "x", n);
  const std::string op = info[4].As<Napi::String>().Utf8Value();
  const int64_t root = a.Int(5, "root");
  if (root < 0 || root >= e.size) a.Fail("root " + std::to_string(root) + " is not a rank of " + std::to_string(e.size));
  const pg::nccl::Api& api = NeedNccl(a);
  CheckCollective(a, api,
                  api.Reduce(x, x, static_cast<size_t>(n), pg::nccl::Float32, op == "avg" ? pg::nccl::Avg : pg::nccl::Sum,
                             static_cast<int>(root), e.comm, StreamOf(e)),
                  "reduce", e);
  return info.Env().Undefined();
}

#endif

// ncclGroupStart(): the collectives until ncclGroupEnd are launched as one (a bucket's gradients).
Napi::Value GroupStart(const Napi::CallbackInfo& info, const Args& a) {
  const pg::nccl::Api& api = NeedNccl(a);
  Check(a, api, api.GroupStart(), "groupStart", nullptr, 0);
  return info.Env().Undefined();
}

// ncclGroupEnd(comm): launches the group (comm: whose timeout bounds a non-blocking group in progress).
Napi::Value GroupEnd(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  const pg::nccl::Api& api = NeedNccl(a);
  CheckCollective(a, api, api.GroupEnd(), "groupEnd", e);
  return info.Env().Undefined();
}

// ncclUseCommStream(comm, on): this communicator's collectives go on the comm stream (on) or the
// process stream (off, the default). On the comm stream they run beside the kernels of the process
// stream; ncclOrder is the only ordering between the two.
Napi::Value UseCommStream(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  e.on_comm_stream = a.Bool(1, "on");
  return info.Env().Undefined();
}

// ncclOrder(comm, after): 'compute' makes the comm stream wait for the process stream's work so far
// (a bucket's gradients are made: record an event there, wait on it here); 'comm' makes the process
// stream wait for the comm stream's (the reduced gradients, before the optimizer reads them).
Napi::Value Order(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  const std::string after = info[1].As<Napi::String>().Utf8Value();
  if (after != "compute" && after != "comm") a.Fail("after must be 'compute' or 'comm', got " + after);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  try {
    if (after == "compute") pg::cuda::stream_wait(pg::cuda::comm_stream(), pg::cuda::stream(), "ncclOrder (comm after compute)");
    else pg::cuda::stream_wait(pg::cuda::stream(), pg::cuda::comm_stream(), "ncclOrder (compute after comm)");
  } catch (const pg::cuda::Error& err) {
    a.Fail(kErrDevice, "rank " + std::to_string(e.rank) + ": " + err.what());
  }
#else
  (void)e;
  a.Fail(kErrDevice, "NCCL needs CUDA, and this addon was built without it");
#endif
  return info.Env().Undefined();
}

// ncclSynchronize(comm, timeoutMs) -> { ms, error, timedOut }: waits for the stream (every
// collective enqueued so far), polling NCCL's asynchronous error; aborts the communicator on an
// error or after timeoutMs (<= 0: no limit).
Napi::Value Synchronize(const Napi::CallbackInfo& info, const Args& a) {
  CommEntry& e = CommArg(a, 0);
  const double timeout_ms = a.Num(1, "timeoutMs");
  const pg::nccl::Api& api = NeedNccl(a);
  Napi::Env env = info.Env();
  const auto t0 = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); };
  std::string error;
  bool timed_out = false;
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  cudaStream_t stream = static_cast<cudaStream_t>(pg::cuda::stream());
  cudaStream_t comm_stream = e.used_comm_stream ? static_cast<cudaStream_t>(pg::cuda::comm_stream()) : nullptr;
  for (;;) {
    cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess && comm_stream) q = cudaStreamQuery(comm_stream);
    if (q == cudaSuccess) break;
    if (q != cudaErrorNotReady) {
      error = std::string("rank ") + std::to_string(e.rank) + ": the CUDA stream failed during NCCL collectives: " + cudaGetErrorString(q);
      break;
    }
    pg::nccl::Result async = 0;
    if (api.CommGetAsyncError(e.comm, &async) == 0 && async != 0 && async != 7 /* ncclInProgress */) {
      error = pg::nccl::describe(api, async, "collective", e.rank) + " (a peer rank may have died)";
      break;
    }
    if (timeout_ms > 0 && elapsed() > timeout_ms) {
      timed_out = true;
      error = "rank " + std::to_string(e.rank) + " of " + std::to_string(e.size) + ": NCCL collectives did not complete within " +
              std::to_string(static_cast<int64_t>(timeout_ms / 1000)) + " s: a peer rank died or hangs";
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
#else
  (void)timeout_ms;
  error = "NCCL needs CUDA, and this addon was built without it";
#endif
  if (!error.empty()) {
    api.CommAbort(e.comm);
    e.live = false;
    e.aborted = error;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ms", elapsed());
  out.Set("error", error.empty() ? Napi::Value(env.Null()) : Napi::Value(Napi::String::New(env, error)));
  out.Set("timedOut", timed_out);
  return out;
}

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#define PG_NCCL_CUDA(fn) PG_CUDA(fn)
#else
#define PG_NCCL_CUDA(fn) nullptr
#endif

const Decl kDecls[] = {
    {DeclKind::Function, "ncclStatus", "ncclStatus", "", "{ version: number | null; error: string | null; cudaCompiled: boolean }",
     Status, nullptr},
    {DeclKind::Function, "ncclUniqueId", "ncclUniqueId", "", "Uint8Array", UniqueId, nullptr},
    {DeclKind::Function, "ncclCommInit", "ncclCommInit", "id: Uint8Array, nranks: size, rank: size, timeoutMs?: number", "number", CommInit, nullptr},
    {DeclKind::Function, "ncclDestroy", "ncclDestroy", "comm: int", "void", Destroy, nullptr},
    {DeclKind::Function, "ncclSynchronize", "ncclSynchronize", "comm: int, timeoutMs: number",
     "{ ms: number; error: string | null; timedOut: boolean }", Synchronize, nullptr},
    {DeclKind::Function, "ncclAllReduce", "ncclAllReduce", "comm: int, x: f32, n: size, op: 'sum' | 'avg'", "void", CpuRefused,
     PG_NCCL_CUDA(AllReduce)},
    {DeclKind::Function, "ncclReduceScatter", "ncclReduceScatter", "comm: int, out: f32, x: f32, n: size", "void", CpuRefused,
     PG_NCCL_CUDA(ReduceScatter)},
    {DeclKind::Function, "ncclAllGather", "ncclAllGather", "comm: int, out: f32, x: f32, n: size", "void", CpuRefused,
     PG_NCCL_CUDA(AllGather)},
    {DeclKind::Function, "ncclBroadcast", "ncclBroadcast", "comm: int, x: f32, n: size, root: int", "void", CpuRefused,
     PG_NCCL_CUDA(Broadcast)},
    {DeclKind::Function, "ncclReduce", "ncclReduce", "comm: int, x: f32, n: size, op: 'sum' | 'avg', root: int", "void", CpuRefused,
     PG_NCCL_CUDA(Reduce)},
    {DeclKind::Function, "ncclGroupStart", "ncclGroupStart", "", "void", GroupStart, nullptr},
    {DeclKind::Function, "ncclGroupEnd", "ncclGroupEnd", "comm: int", "void", GroupEnd, nullptr},
    {DeclKind::Function, "ncclUseCommStream", "ncclUseCommStream", "comm: int, on: boolean", "void", UseCommStream, nullptr},
    {DeclKind::Function, "ncclOrder", "ncclOrder", "comm: int, after: 'compute' | 'comm'", "void", Order, nullptr},
};

}  // namespace

void RegisterNccl(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
