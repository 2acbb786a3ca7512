// Index checks on the device, without a host sync (native/cuda/index_check.cu). The bindings of
// attention, paged attention and MoE used to read their index tensors back to check them on the
// host (a copy that waits for the stream, per call and per layer). On CUDA they now enqueue a
// check here instead, on the current stream before the op's kernels: its kernels find the first
// violation (the one the host checks of the CPU path report: lowest position, same order of
// conditions) and write it into a process-wide record in mapped pinned host memory, and raise a
// device flag (index_halt()) that the op kernels read at entry and return on without touching
// memory, so a bad index never becomes an illegal address. The host reads the record at its next
// synchronisation point (every device-to-host copy and synchronize in device.cu) and raises an
// error naming the op, the argument and the value, then clears it (take_index_violation).
// Defined when CUDA is compiled in (PG_WITH_CUDA).
#pragma once
#include <cstdint>
#include <string>

namespace pg::cuda {

// cu (nseq + 1) starts at 0, never decreases, ends at T ("cuSeqlens" of attention).
void check_cu_seqlens(const std::string& op, const char* arg, const int32_t* cu, int64_t nseq, int64_t T);
// Expert ids (M) in [0, E).
void check_expert_ids(const std::string& op, const int32_t* idx, int64_t M, int64_t E);
// KV cache slots (T) in [-1, slots): -1 skips the row.
void check_kv_slots(const std::string& op, const int32_t* slot, int64_t T, int64_t slots);
// p (M) is a permutation of [0, M).
void check_permutation(const std::string& op, const char* arg, const int32_t* p, int64_t M);
// Paged attention's cuQ (nseq + 1, 0 .. Tq), contextLens (nseq) and blockTables (nseq, maxBlocks),
// in the order of the CPU binding's CheckPagedIndex.
void check_paged(const std::string& op, const int32_t* cu, const int32_t* ctx, const int32_t* tables, int64_t nseq,
                 int64_t Tq, int64_t num_blocks, int64_t block_size, int64_t max_blocks, int64_t partition_size,
                 int64_t max_partitions);

// The device flag (an int, non-zero once a check failed) the op kernels return on at entry.
const int* index_halt();
// "" or the recorded violation as "<op>: <what is wrong>", clearing it (and, in stream order, the
// device flag). Reads mapped host memory: no copy, no sync; final once the stream was synchronised.
std::string take_index_violation();
// Checks enqueued so far (tests: a call enqueues one instead of reading the index back).
uint64_t index_checks_enqueued();

}  // namespace pg::cuda
