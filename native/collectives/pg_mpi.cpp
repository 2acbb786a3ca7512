// pg_mpi.node: MPI collectives for CPU tensors, as a Node module of its own. It is built only where
// MPI is installed (native/collectives/CMakeLists.txt) and loaded at run time by src/distributed/mpi.ts, so the
// package installs and runs without MPI.
//
// Every MPI call runs on one communication thread (the thread that initialised MPI, so
// MPI_THREAD_FUNNELED suffices): JavaScript submits an operation over a typed array and gets an
// id back at once, goes on (backward of the next layers), and waits for the id later. That thread
// is what overlaps gradient all-reduces with backward, as DDP's buckets do. A wait that runs past
// its timeout throws, naming this rank and the operation: MPI itself never times out, so a dead
// peer would otherwise hang the job.
//
// The typed arrays must stay alive and untouched until their wait returns (src/distributed/mpi.ts holds
// them); their backing stores are off the V8 heap and do not move.
#include <mpi.h>
#include <napi.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

enum class Kind { Init, AllReduceSum, AllReduceMax, ReduceScatter, ReduceScatterV, AllGather, Broadcast, Barrier, Finalize };

const char* KindName(Kind k) {
  switch (k) {
    case Kind::Init: return "init";
    case Kind::AllReduceSum: return "all-reduce";
    case Kind::AllReduceMax: return "all-reduce (max)";
    case Kind::ReduceScatter: return "reduce-scatter";
    case Kind::ReduceScatterV: return "reduce-scatter (v)";
    case Kind::AllGather: return "all-gather";
    case Kind::Broadcast: return "broadcast";
    case Kind::Barrier: return "barrier";
    case Kind::Finalize: return "finalize";
  }
  return "?";
}

struct Op {
  int64_t id = 0;
  Kind kind = Kind::Barrier;
  void* a = nullptr;  // input (in place for all-reduce and broadcast)
  void* b = nullptr;  // output (reduce-scatter, all-gather)
  int64_t count = 0;  // elements of `a` (reduce-scatter: of the output block; all-gather: of the input)
  MPI_Datatype type = MPI_FLOAT;
  int root = 0;
  std::vector<int> counts;  // reduce-scatter (v): the block of each rank
  bool done = false;
  int err = MPI_SUCCESS;
  double ms = 0;  // time inside MPI
};

struct State {
  std::mutex mu;
  std::condition_variable work, finished;
  std::deque<Op*> queue;
  std::unordered_map<int64_t, Op*> ops;
  int64_t next_id = 1;
  int rank = -1, size = 0, thread_level = 0;
  bool started = false, finalized = false;
  double comm_ms = 0;
  int64_t completed = 0;
};

// Never destroyed: the communication thread may still be inside MPI when the process exits.
State& S() {
  static State* s = new State();
  return *s;
}

std::string ErrorString(int err) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(err, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(err);
  return std::string(buf, len);
}

void Run(Op* op) {
  auto t0 = std::chrono::steady_clock::now();
  int err = MPI_SUCCESS;
  const int n = static_cast<int>(op->count);
  switch (op->kind) {
    case Kind::Init: {
      int provided = 0;
      int inited = 0;
      MPI_Initialized(&inited);
      err = inited ? MPI_SUCCESS : MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      if (err == MPI_SUCCESS) {
        // Errors come back as codes (and then as JS errors), not as an abort of the whole job.
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &S().rank);
        MPI_Comm_size(MPI_COMM_WORLD, &S().size);
        S().thread_level = provided;
      }
      break;
    }
    case Kind::AllReduceSum:
      err = MPI_Allreduce(MPI_IN_PLACE, op->a, n, op->type, MPI_SUM, MPI_COMM_WORLD);
      break;
    case Kind::AllReduceMax:
      err = MPI_Allreduce(MPI_IN_PLACE, op->a, n, op->type, MPI_MAX, MPI_COMM_WORLD);
      break;
    case Kind::ReduceScatter:
      err = MPI_Reduce_scatter_block(op->a, op->b, n, op->type, MPI_SUM, MPI_COMM_WORLD);
      break;
    case Kind::ReduceScatterV:
      err = MPI_Reduce_scatter(op->a, op->b, op->counts.data(), op->type, MPI_SUM, MPI_COMM_WORLD);
      break;
    case Kind::AllGather:
      err = MPI_Allgather(op->a, n, op->type, op->b, n, op->type, MPI_COMM_WORLD);
      break;
    case Kind::Broadcast:
      err = MPI_Bcast(op->a, n, op->type, op->root, MPI_COMM_WORLD);
      break;
    case Kind::Barrier:
      err = MPI_Barrier(MPI_COMM_WORLD);
      break;
    case Kind::Finalize:
      err = MPI_Finalize();
      break;
  }
  op->err = err;
  op->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void Loop() {
  State& s = S();
  for (;;) {
    Op* op;
    {
      std::unique_lock<std::mutex> lk(s.mu);
      s.work.wait(lk, [&] { return !s.queue.empty(); });
      op = s.queue.front();
      s.queue.pop_front();
    }
    Run(op);
    const bool last = op->kind == Kind::Finalize;
    {
      std::lock_guard<std::mutex> lk(s.mu);
      op->done = true;
      if (op->kind != Kind::Init && op->kind != Kind::Finalize) {
        s.comm_ms += op->ms;
        s.completed++;
      }
      if (last) s.finalized = true;
    }
    s.finished.notify_all();
    if (last) return;
  }
}

int64_t Submit(Op* op) {
  State& s = S();
  std::lock_guard<std::mutex> lk(s.mu);
  op->id = s.next_id++;
  s.ops[op->id] = op;
  s.queue.push_back(op);
  s.work.notify_one();
  return op->id;
}

std::string Where() {
  State& s = S();
  return s.rank >= 0 ? "rank " + std::to_string(s.rank) + " of " + std::to_string(s.size) : "this rank";
}

Napi::Error DistError(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// Waits for `id` up to timeout_ms (<= 0: no limit); returns its time in MPI (ms) and forgets it.
double WaitFor(Napi::Env env, int64_t id, double timeout_ms) {
  State& s = S();
  std::unique_lock<std::mutex> lk(s.mu);
  auto it = s.ops.find(id);
  if (it == s.ops.end()) throw DistError(env, "E_ARGUMENT", "mpi.wait: no operation " + std::to_string(id) + " in flight");
  Op* op = it->second;
  auto ready = [&] { return op->done; };
  if (timeout_ms > 0) {
    if (!s.finished.wait_for(lk, std::chrono::duration<double, std::milli>(timeout_ms), ready))
      throw DistError(env, "E_DIST_TIMEOUT",
                      Where() + ": " + KindName(op->kind) + " #" + std::to_string(id) + " (" + std::to_string(op->count) +
                          " values) did not complete within " + std::to_string(static_cast<int64_t>(timeout_ms / 1000)) +
                          " s: a peer rank died or hangs. Stop the job and run the launch again to resume from the last checkpoint "
                          "(or raise the timeout: PATENTGPT_DIST_TIMEOUT seconds)");
  } else {
    s.finished.wait(lk, ready);
  }
  s.ops.erase(it);
  const int err = op->err;
  const double ms = op->ms;
  const Kind kind = op->kind;
  delete op;
  if (err != MPI_SUCCESS)
    throw DistError(env, "E_DIST", Where() + ": " + KindName(kind) + " failed: " + ErrorString(err) +
                                       " (a peer rank may have died; run the launch again to resume from the last checkpoint)");
  return ms;
}

MPI_Datatype TypeOf(Napi::Env env, const Napi::TypedArray& arr, const char* what) {
  switch (arr.TypedArrayType()) {
    case napi_float32_array: return MPI_FLOAT;
    case napi_float64_array: return MPI_DOUBLE;
    case napi_int32_array: return MPI_INT;
    default: throw DistError(env, "E_ARGUMENT", std::string(what) + ": a Float32Array, Float64Array or Int32Array");
  }
}

void* DataOf(const Napi::TypedArray& arr) {
  return static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
}

Napi::TypedArray ArrayArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray()) throw DistError(info.Env(), "E_ARGUMENT", std::string(what) + ": expected a typed array");
  return info[i].As<Napi::TypedArray>();
}

void NeedStarted(Napi::Env env) {
  State& s = S();
  if (!s.started || s.finalized) throw DistError(env, "E_DIST", "mpi: not initialised (call init() first) or already finalised");
}

// init() -> { rank, size, threadLevel, version }: starts the communication thread and MPI on it.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& s = S();
  if (!s.started) {
    s.started = true;
    std::thread(Loop).detach();
    Op* op = new Op();
    op->kind = Kind::Init;
    WaitFor(env, Submit(op), 0);
  }
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  Napi::Object r = Napi::Object::New(env);
  r.Set("rank", s.rank);
  r.Set("size", s.size);
  r.Set("threadLevel", s.thread_level);
  r.Set("version", std::string(version, len));
  return r;
}

// submit(kind, a, b | null, root) -> id
Napi::Value SubmitJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NeedStarted(env);
  const std::string kind = info[0].As<Napi::String>();
  Op* op = new Op();
  try {
    if (kind == "barrier") {
      op->kind = Kind::Barrier;
    } else {
      Napi::TypedArray a = ArrayArg(info, 1, kind.c_str());
      op->type = TypeOf(env, a, kind.c_str());
      op->a = DataOf(a);
      op->count = static_cast<int64_t>(a.ElementLength());
      if (kind == "allreduce" || kind == "allreduce-max") {
        op->kind = kind == "allreduce" ? Kind::AllReduceSum : Kind::AllReduceMax;
      } else if (kind == "broadcast") {
        op->kind = Kind::Broadcast;
        op->root = info[3].As<Napi::Number>().Int32Value();
        if (op->root < 0 || op->root >= S().size) throw DistError(env, "E_ARGUMENT", "broadcast: root " + std::to_string(op->root) + " is not a rank");
      } else if (kind == "reduce-scatter-v") {
        // submit('reduce-scatter-v', input, output, 0, counts): rank r gets counts[r] values of the sum
        Napi::TypedArray b = ArrayArg(info, 2, kind.c_str());
        Napi::TypedArray c = ArrayArg(info, 4, "reduce-scatter-v counts");
        if (b.TypedArrayType() != a.TypedArrayType()) throw DistError(env, "E_ARGUMENT", kind + ": input and output must have the same type");
        if (c.TypedArrayType() != napi_int32_array || static_cast<int>(c.ElementLength()) != S().size)
          throw DistError(env, "E_ARGUMENT", kind + ": counts must be an Int32Array of one count per rank");
        const int32_t* counts = static_cast<const int32_t*>(DataOf(c));
        int64_t total = 0;
        for (int k = 0; k < S().size; ++k) {
          if (counts[k] < 0) throw DistError(env, "E_ARGUMENT", kind + ": a negative count");
          total += counts[k];
        }
        if (total != static_cast<int64_t>(a.ElementLength()) || counts[S().rank] != static_cast<int64_t>(b.ElementLength()))
          throw DistError(env, "E_ARGUMENT", kind + ": the counts must add up to the input and give this rank the output's length");
        op->kind = Kind::ReduceScatterV;
        op->b = DataOf(b);
        op->counts.assign(counts, counts + S().size);
      } else if (kind == "reduce-scatter" || kind == "allgather") {
        Napi::TypedArray b = ArrayArg(info, 2, kind.c_str());
        if (b.TypedArrayType() != a.TypedArrayType()) throw DistError(env, "E_ARGUMENT", kind + ": input and output must have the same type");
        const int64_t n = static_cast<int64_t>(a.ElementLength()), m = static_cast<int64_t>(b.ElementLength());
        const int64_t W = S().size;
        op->b = DataOf(b);
        if (kind == "reduce-scatter") {
          if (n != m * W) throw DistError(env, "E_ARGUMENT", "reduce-scatter: the input holds " + std::to_string(n) + " values, expected " + std::to_string(W) + " x the output's " + std::to_string(m));
          op->kind = Kind::ReduceScatter;
          op->count = m;
        } else {
          if (m != n * W) throw DistError(env, "E_ARGUMENT", "allgather: the output holds " + std::to_string(m) + " values, expected " + std::to_string(W) + " x the input's " + std::to_string(n));
          op->kind = Kind::AllGather;
          op->count = n;
        }
      } else {
        throw DistError(env, "E_ARGUMENT", "mpi.submit: unknown operation " + kind);
      }
      if (op->count > INT32_MAX) throw DistError(env, "E_ARGUMENT", kind + ": more than 2^31 values in one call; split it into buckets");
    }
  } catch (...) {
    delete op;
    throw;
  }
  return Napi::Number::New(env, static_cast<double>(Submit(op)));
}

// wait(id, timeoutMs) -> ms inside MPI
Napi::Value Wait(const Napi::CallbackInfo& info) {
  const double ms = WaitFor(info.Env(), static_cast<int64_t>(info[0].As<Napi::Number>().Int64Value()), info[1].As<Napi::Number>().DoubleValue());
  return Napi::Number::New(info.Env(), ms);
}

// done(id) -> whether the operation finished (wait still has to be called).
Napi::Value Done(const Napi::CallbackInfo& info) {
  State& s = S();
  std::lock_guard<std::mutex> lk(s.mu);
  auto it = s.ops.find(static_cast<int64_t>(info[0].As<Napi::Number>().Int64Value()));
  return Napi::Boolean::New(info.Env(), it != s.ops.end() && it->second->done);
}

// stats() -> { commMs, ops }: time spent inside MPI collectives, summed, and their count.
Napi::Value Stats(const Napi::CallbackInfo& info) {
  State& s = S();
  std::lock_guard<std::mutex> lk(s.mu);
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("commMs", s.comm_ms);
  r.Set("ops", static_cast<double>(s.completed));
  return r;
}

// finalize(timeoutMs): MPI_Finalize on the communication thread, which then ends.
Napi::Value Finalize(const Napi::CallbackInfo& info) {
  State& s = S();
  if (!s.started || s.finalized) return info.Env().Undefined();
  Op* op = new Op();
  op->kind = Kind::Finalize;
  WaitFor(info.Env(), Submit(op), info[0].As<Napi::Number>().DoubleValue());
  return info.Env().Undefined();
}

// abort(code): ends every rank of the job (after a fatal error on this one).
Napi::Value Abort(const Napi::CallbackInfo& info) {
  MPI_Abort(MPI_COMM_WORLD, info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("submit", Napi::Function::New(env, SubmitJs));
  exports.Set("wait", Napi::Function::New(env, Wait));
  exports.Set("done", Napi::Function::New(env, Done));
  exports.Set("stats", Napi::Function::New(env, Stats));
  exports.Set("finalize", Napi::Function::New(env, Finalize));
  exports.Set("abort", Napi::Function::New(env, Abort));
  return exports;
}

}  // namespace

NODE_API_MODULE(pg_mpi, InitModule)
