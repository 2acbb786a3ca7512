// Index checks on the device (cuda_index_check.h): one scan over the index's "keys" (a position,
// or for the sequence and paged checks a condition at a position, numbered in the order the CPU
// binding tests them), each thread testing its keys and keeping the lowest failing one
// (atomicMin), then a one-thread kernel that re-evaluates that key and records it: so the record
// names the violation the host check would have named first, whatever the thread timing. The
// record is mapped pinned host memory (the host reads it without a copy); the halt flag is
// device memory (the op kernels read it at entry, a cached global load).
#include <cuda_runtime.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "common.cuh"
#include "patentgpt/cuda_index_check.h"

namespace pg::cuda {

namespace {

constexpr int kCheckThreads = 256;

enum Kind : int { kSeq = 0, kExpert = 1, kSlot = 2, kPerm = 3, kPaged = 4 };
// What went wrong (the message the host prints).
enum Reason : int {
  kSeqStart = 1, kSeqDecrease, kSeqEnd, kExpertRange, kSlotRange, kPermBad, kCuQDecrease, kCtxShort, kCtxLong,
  kCtxParts, kTableRange
};

struct Record {
  int flag, reason, op, arg, total, pad;
  long long pos, value, bound, extra;
};

struct Check {
  int kind, op, arg, total;
  const int32_t* p;       // the index (cu_seqlens, expert ids, slots, permutation, cuQ)
  const int32_t* ctx;     // paged: contextLens
  const int32_t* tables;  // paged: blockTables
  long long n;            // seq, paged: nseq; else the index's length
  long long bound;        // seq: T; expert: E; slot: slots; perm: M; paged: Tq
  long long num_blocks, block_size, max_blocks, partition_size, max_partitions;
  unsigned* first;                 // perm: first position of each value
  unsigned long long* min_key;     // lowest failing key (~0: none)
  Record* rec;                     // device view of the mapped record
  int* halt;
};

struct Found {
  int reason;
  long long pos, value, bound, extra;
};

// Keys of a check: seq: [0] start, [1, nseq] decrease at i, [nseq + 1] end; paged: [0] cuQ[0],
// [1] cuQ[nseq], then per sequence s: decrease, short, long, partitions, table entries.
__host__ __device__ inline long long paged_stride(const Check& c) { return c.max_blocks + 4; }
__host__ __device__ inline long long key_count(const Check& c) {
  switch (c.kind) {
    case kSeq: return c.n + 2;
    case kPaged: return 2 + c.n * paged_stride(c);
    default: return c.n;
  }
}

__device__ bool evaluate(const Check& c, long long key, Found* f) {
  switch (c.kind) {
    case kSeq: {
      if (key == 0) {
        *f = {kSeqStart, 0, c.p[0], 0, 0};
        return c.p[0] != 0;
      }
      if (key <= c.n) {
        *f = {kSeqDecrease, key, c.p[key], c.p[key - 1], 0};
        return c.p[key] < c.p[key - 1];
      }
      *f = {kSeqEnd, c.n, c.p[c.n], c.bound, 0};
      return c.p[c.n] != c.bound;
    }
    case kExpert: {
      const int v = c.p[key];
      *f = {kExpertRange, key, v, c.bound, 0};
      return v < 0 || v >= c.bound;
    }
    case kSlot: {
      const int v = c.p[key];
      *f = {kSlotRange, key, v, c.bound, 0};
      return v < -1 || v >= c.bound;
    }
    case kPerm: {
      const int v = c.p[key];
      *f = {kPermBad, key, v, c.bound, 0};
      return v < 0 || v >= c.bound || c.first[v] != static_cast<unsigned>(key);
    }
    default: {  // kPaged
      if (key == 0) {
        *f = {kSeqStart, 0, c.p[0], 0, 0};
        return c.p[0] != 0;
      }
      if (key == 1) {
        *f = {kSeqEnd, c.n, c.p[c.n], c.bound, 0};
        return c.p[c.n] != c.bound;
      }
      const long long s = (key - 2) / paged_stride(c), sub = (key - 2) % paged_stride(c);
      const long long qlen = static_cast<long long>(c.p[s + 1]) - c.p[s], len = c.ctx[s];
      switch (sub) {
        case 0: *f = {kCuQDecrease, s + 1, c.p[s + 1], c.p[s], 0}; return qlen < 0;
        case 1: *f = {kCtxShort, s, len, qlen, 0}; return len < qlen;
        case 2: *f = {kCtxLong, s, len, c.max_blocks * c.block_size, 0}; return len > c.max_blocks * c.block_size;
        case 3:
          *f = {kCtxParts, s, len, c.max_partitions, c.partition_size};
          return (len + c.partition_size - 1) / c.partition_size > c.max_partitions;
        default: {
          const long long b = sub - 4;
          // Only the blocks a query row reads; a bad length is caught by its own (lower) key.
          if (qlen <= 0 || len < 0 || b >= (len + c.block_size - 1) / c.block_size) return false;
          const int blk = c.tables[s * c.max_blocks + b];
          *f = {kTableRange, s, blk, c.num_blocks, b};
          return blk < 0 || blk >= c.num_blocks;
        }
      }
    }
  }
}

// perm: the first position of each in-range value.
__global__ void __launch_bounds__(kCheckThreads) index_first_kernel(Check c) {
  for (long long i = static_cast<long long>(blockIdx.x) * kCheckThreads + threadIdx.x; i < c.n;
       i += static_cast<long long>(gridDim.x) * kCheckThreads) {
    const int v = c.p[i];
    if (v >= 0 && v < c.bound) atomicMin(&c.first[v], static_cast<unsigned>(i));
  }
}

__global__ void __launch_bounds__(kCheckThreads) index_scan_kernel(Check c) {
  const long long keys = key_count(c);
  for (long long key = static_cast<long long>(blockIdx.x) * kCheckThreads + threadIdx.x; key < keys;
       key += static_cast<long long>(gridDim.x) * kCheckThreads) {
    Found f;
    if (evaluate(c, key, &f)) {
      atomicMin(c.min_key, static_cast<unsigned long long>(key));
      return;  // this thread's later keys are higher
    }
  }
}

// One thread: records the lowest failing key unless an earlier check already did.
__global__ void __launch_bounds__(32) index_report_kernel(Check c) {
  if (threadIdx.x != 0) return;
  const unsigned long long key = *c.min_key;
  if (key == ~0ull) return;
  Found f;
  evaluate(c, static_cast<long long>(key), &f);
  if (atomicCAS(c.halt, 0, 1) != 0) return;
  volatile Record* r = c.rec;
  r->reason = f.reason;
  r->op = c.op;
  r->arg = c.arg;
  r->total = c.total;
  r->pos = f.pos;
  r->value = f.value;
  r->bound = f.bound;
  r->extra = f.extra;
  __threadfence_system();  // the fields reach the host before the flag
  r->flag = 1;
}

// The record, the flag and the names the record refers to (ids into `names`).
struct State {
  std::mutex mutex;
  Record* host = nullptr;
  Record* dev = nullptr;
  int* halt = nullptr;
  std::vector<std::string> names;
  std::atomic<uint64_t> enqueued{0};

  void init() {
    if (halt) return;
    void* h = nullptr;
    void* d = nullptr;
    if (cudaHostAlloc(&h, sizeof(Record), cudaHostAllocMapped) != cudaSuccess ||
        cudaHostGetDevicePointer(&d, h, 0) != cudaSuccess) {
      cudaGetLastError();
      throw Error("index check: mapped pinned memory for the error record is unavailable");
    }
    void* f = nullptr;
    if (cudaMalloc(&f, sizeof(int)) != cudaSuccess || cudaMemset(f, 0, sizeof(int)) != cudaSuccess) {
      cudaGetLastError();
      throw Error("index check: device memory for the halt flag is unavailable");
    }
    std::memset(h, 0, sizeof(Record));
    host = static_cast<Record*>(h);
    dev = static_cast<Record*>(d);
    halt = static_cast<int*>(f);
  }
  int id(const std::string& name) {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == name) return static_cast<int>(i);
    names.push_back(name);
    return static_cast<int>(names.size() - 1);
  }
};

State& state() {
  static auto* s = new State();  // never destroyed: finalizers may run after static destructors
  return *s;
}

void run(Check c, const std::string& op, const char* arg, const char* total) {
  const long long keys = key_count(c);
  if (keys <= 0) return;
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.init();
    c.op = s.id(op);
    c.arg = s.id(arg);
    c.total = s.id(total);
  }
  c.rec = s.dev;
  c.halt = s.halt;
  const std::string what = op + ": index check of " + arg;
  Scratch key(sizeof(unsigned long long), what);
  c.min_key = key.as<unsigned long long>();
  cudaMemsetAsync(c.min_key, 0xff, sizeof(unsigned long long), st());
  Scratch first(c.kind == kPerm ? static_cast<size_t>(c.n) * sizeof(unsigned) : 0, what);
  if (c.kind == kPerm) {
    c.first = first.as<unsigned>();
    cudaMemsetAsync(c.first, 0xff, static_cast<size_t>(c.n) * sizeof(unsigned), st());
    index_first_kernel<<<blocks_for(c.n, kCheckThreads), kCheckThreads, 0, st()>>>(c);
  }
  index_scan_kernel<<<blocks_for(keys, kCheckThreads), kCheckThreads, 0, st()>>>(c);
  index_report_kernel<<<1, 32, 0, st()>>>(c);
  check_launch(what);
  s.enqueued.fetch_add(1, std::memory_order_relaxed);
}

Check make(int kind, const int32_t* p, long long n, long long bound) {
  Check c{};
  c.kind = kind;
  c.p = p;
  c.n = n;
  c.bound = bound;
  return c;
}

std::string S(long long v) { return std::to_string(v); }

}  // namespace

void check_cu_seqlens(const std::string& op, const char* arg, const int32_t* cu, int64_t nseq, int64_t T) {
  run(make(kSeq, cu, nseq, T), op, arg, "T");
}

void check_expert_ids(const std::string& op, const int32_t* idx, int64_t M, int64_t E) {
  run(make(kExpert, idx, M, E), op, "indices", "E");
}

void check_kv_slots(const std::string& op, const int32_t* slot, int64_t T, int64_t slots) {
  run(make(kSlot, slot, T, slots), op, "slotMapping", "numBlocks * blockSize");
}

void check_permutation(const std::string& op, const char* arg, const int32_t* p, int64_t M) {
  run(make(kPerm, p, M, M), op, arg, "M");
}

void check_paged(const std::string& op, const int32_t* cu, const int32_t* ctx, const int32_t* tables, int64_t nseq,
                 int64_t Tq, int64_t num_blocks, int64_t block_size, int64_t max_blocks, int64_t partition_size,
                 int64_t max_partitions) {
  Check c = make(kPaged, cu, nseq, Tq);
  c.ctx = ctx;
  c.tables = tables;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  c.max_blocks = max_blocks;
  c.partition_size = partition_size;
  c.max_partitions = max_partitions;
  run(c, op, "cuQ", "Tq");
}

const int* index_halt() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.init();
  return s.halt;
}

std::string take_index_violation() {
  State& s = state();
  if (!s.host) return "";
  volatile Record* r = s.host;
  if (r->flag == 0) return "";
  std::lock_guard<std::mutex> lock(s.mutex);
  if (r->flag == 0) return "";
  std::atomic_thread_fence(std::memory_order_acquire);
  const long long pos = r->pos, value = r->value, bound = r->bound, extra = r->extra;
  const std::string op = s.names[static_cast<size_t>(r->op)], arg = s.names[static_cast<size_t>(r->arg)],
                    total = s.names[static_cast<size_t>(r->total)];
  std::string m;
  switch (r->reason) {
    case kSeqStart: m = arg + "[0] must be 0, got " + S(value); break;
    case kSeqDecrease:
      m = arg + " must not decrease: " + arg + "[" + S(pos) + "] = " + S(value) + " < " + S(bound);
      break;
    case kSeqEnd: m = arg + "[" + S(pos) + "] = " + S(value) + " must equal " + total + " = " + S(bound); break;
    case kExpertRange: m = "expert " + S(value) + " at slot " + S(pos) + " is outside [0, E = " + S(bound) + ")"; break;
    case kSlotRange:
      m = arg + "[" + S(pos) + "] = " + S(value) + " is outside [-1, " + S(bound) + ") (" + total + ")";
      break;
    case kPermBad:
      m = arg + " is not a permutation of [0, M = " + S(bound) + "): " + S(value) + " at " + S(pos);
      break;
    case kCuQDecrease: m = "cuQ must not decrease at index " + S(pos); break;
    case kCtxShort:
      m = "contextLens[" + S(pos) + "] = " + S(value) + " is less than its " + S(bound) + " query rows";
      break;
    case kCtxLong:
      m = "contextLens[" + S(pos) + "] = " + S(value) + " exceeds maxBlocks * blockSize = " + S(bound);
      break;
    case kCtxParts:
      m = "contextLens[" + S(pos) + "] = " + S(value) + " needs more than maxPartitions = " + S(bound) +
          " partitions of " + S(extra);
      break;
    default:
      m = "blockTables[" + S(pos) + "][" + S(extra) + "] = " + S(value) + " is outside [0, " + S(bound) + ")";
      break;
  }
  r->flag = 0;
  // In stream order: the work already enqueued stays halted, what comes next runs.
  cudaMemsetAsync(s.halt, 0, sizeof(int), st());
  return op + ": " + m + " (an index checked on the device)";
}

uint64_t index_checks_enqueued() { return state().enqueued.load(std::memory_order_relaxed); }

}  // namespace pg::cuda
