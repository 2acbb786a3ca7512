// Launch planning for the CUDA attention, paged-attention and MoE kernels (native/cuda/): plain
// host C++, compiled into every build, so the shapes, grids, partitions and tile maps the kernels
// rely on are tested on machines without a GPU (native/test/test_cuda_plan_*.cpp). The PG_HD
// functions are the same code on both sides: the kernels call them to find their work.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#if defined(__CUDACC__)
#define PG_HD __host__ __device__ inline
#else
#define PG_HD inline
#endif

namespace pg::cuda_plan {

// ---- fused attention (native/cuda/attention.cu) ----
// A block is kAttnWarps warps; each warp owns kAttnRowsPerWarp rows (queries in the forward and
// dq kernels, keys in the dk/dv kernel) and walks tiles of kAttnCols columns (one per lane).
constexpr int kAttnWarps = 4;
constexpr int kAttnRowsPerWarp = 4;
constexpr int kAttnRows = kAttnWarps * kAttnRowsPerWarp;  // rows per block
constexpr int kAttnCols = 32;                             // columns per tile
constexpr int kAttnThreads = kAttnWarps * 32;
constexpr int64_t kAttnMaxHeadDim = 256;

// The head-dim bucket the kernels are compiled for: 64, 128 (the common heads) or 256 (any other
// head dim up to 256); 0 for a head dim above that.
PG_HD int attention_dmax(int64_t D) { return D <= 0 ? 0 : D <= 64 ? 64 : D <= 128 ? 128 : D <= 256 ? 256 : 0; }

// Row stride (floats) of the column tiles: D + 4. When D is a multiple of 4 the rows are 16-byte
// aligned (the dot products read float4s) and lane j's row starts 4 banks after lane j - 1's, so
// each quarter-warp's 16-byte reads hit 32 distinct banks; an odd D gives an odd stride, so
// lanes reading single floats hit distinct banks too.
PG_HD int64_t attention_col_stride(int64_t D) { return D + 4; }
// Dynamic shared memory (floats) of each kernel at head dim D: row blocks of D floats (read by
// broadcast) and column tiles of attention_col_stride(D) floats per row.
PG_HD int64_t attention_forward_smem_floats(int64_t D) {
  return kAttnRows * D + 2 * kAttnCols * attention_col_stride(D);
}
PG_HD int64_t attention_dq_smem_floats(int64_t D) {
  return 2 * kAttnRows * D + 2 * kAttnCols * attention_col_stride(D);
}
PG_HD int64_t attention_dkdv_smem_floats(int64_t D) {
  return 2 * kAttnRows * D + 2 * kAttnCols * attention_col_stride(D) + 2 * kAttnCols;
}

struct AttentionPlan {
  int dmax = 0;              // head-dim bucket (attention_dmax)
  int64_t max_len = 0;       // longest sequence (tokens)
  int64_t tiles = 0;         // row tiles (kAttnRows) of the longest sequence
  int64_t grid_x = 0;        // nseq * tiles: blocks over (sequence, row tile)
  int64_t grid_y_q = 0;      // H: the forward and dq kernels' heads
  int64_t grid_y_kv = 0;     // Hkv: the dk/dv kernel's heads (it sums over the group's query heads)
  size_t smem_forward = 0, smem_dq = 0, smem_dkdv = 0;  // bytes
};

// Plans the kernels for host cu_seqlens (nseq + 1, already checked to rise from 0 to T).
// Returns "" or why the shape cannot run (a message for the caller's error).
std::string plan_attention(const int32_t* cu, int64_t nseq, int64_t H, int64_t Hkv, int64_t D, AttentionPlan& plan);

// Block x of the grid over (sequence, row tile). Within a sequence the blocks go heaviest first:
// under causal masking the last query tile sees the most keys (forward, dq: last_first) and the
// first key tile the most queries (dk/dv), so the long blocks start early and the grid ends
// with short ones.
PG_HD void attention_block_tile(int64_t x, int64_t tiles, bool last_first, int64_t* seq, int64_t* tile) {
  *seq = x / tiles;
  const int64_t i = x % tiles;
  *tile = last_first ? tiles - 1 - i : i;
}

// Columns [0, *end) a row tile [r0, r0 + rows) of a sequence of len tokens visits: under causal
// masking the keys up to its last query (forward, dq), else all of them.
PG_HD int64_t attention_key_end(int64_t r0, int64_t len, bool causal) {
  const int64_t last = r0 + kAttnRows < len ? r0 + kAttnRows : len;
  return causal ? last : len;
}
// The first query a key tile [k0, ...) is seen by under causal masking (dk/dv): k0 itself.
PG_HD int64_t attention_query_begin(int64_t k0, bool causal) { return causal ? k0 : 0; }

// ---- paged decode attention (native/cuda/paged_attention.cu) ----
constexpr int kPagedWarps = 4;
constexpr int kPagedThreads = kPagedWarps * 32;
// Query heads of one KV head a block handles at once (their accumulators live in registers).
PG_HD int paged_heads_per_block(int dmax) { return dmax <= 128 ? 8 : 4; }
// Fewest tokens worth a partition of their own: below this, the merge costs more than it saves.
constexpr int64_t kPagedMinPartitionTokens = 256;

// Shared memory (floats) of the partition kernel: the block's query vectors (heads, D) and each
// warp's key tile (32 tokens, D + 1: lane j reads token j's row from its own bank). After the
// tokens, the key tiles hold the warps' partials (warps, heads, D + 2), which must fit there.
PG_HD int64_t paged_smem_floats(int64_t heads, int64_t D) { return heads * D + kPagedWarps * 32 * (D + 1); }
PG_HD bool paged_partials_fit(int64_t heads, int64_t D) { return heads * (D + 2) <= 32 * (D + 1); }

struct PagedPlan {
  int dmax = 0;               // head-dim bucket
  int heads = 0;              // query heads per block (<= paged_heads_per_block)
  int64_t head_chunks = 0;    // blocks per KV head: ceil(group / heads)
  int64_t chunk = 0;          // caller partitions (partition_size) per GPU partition
  int64_t partition = 0;      // tokens per GPU partition: chunk * partition_size
  int64_t partitions = 0;     // GPU partitions of the longest row (<= max_partitions)
  bool split = false;         // partitions > 1: partials to part_out/part_stats, then the merge
  int64_t grid_x = 0, grid_y = 0, grid_z = 0;  // Tq, Hkv * head_chunks, partitions
  size_t smem = 0;            // bytes of dynamic shared memory of the partition kernel
};

// Plans a call: Tq rows whose longest attends max_len cache tokens; partition_size and
// max_partitions are the caller's (its scratch holds max_partitions partials per row and head);
// sm_count the device's multiprocessors. The GPU's partitions are whole multiples of the caller's,
// chosen so that rows * heads * partitions fills the device a few times over, with at least
// kPagedMinPartitionTokens per partition. Returns "" or why the shape cannot run.
std::string plan_paged(int64_t Tq, int64_t H, int64_t Hkv, int64_t D, int64_t partition_size, int64_t max_partitions,
                       int64_t max_len, int sm_count, PagedPlan& plan);

// Tokens [*begin, *end) of partition p of a row attending len tokens; false when it has none.
PG_HD bool paged_partition_range(int64_t len, int64_t partition, int64_t p, int64_t* begin, int64_t* end) {
  *begin = p * partition;
  *end = *begin + partition < len ? *begin + partition : len;
  return *begin < len;
}
PG_HD int64_t paged_partitions_of(int64_t len, int64_t partition) { return (len + partition - 1) / partition; }

// The sequence whose query rows [cu[s], cu[s+1]) hold row r (cu rises from 0; empty sequences
// are skipped): the last s with cu[s] <= r.
PG_HD int64_t paged_row_sequence(const int32_t* cu, int64_t nseq, int64_t r) {
  int64_t lo = 0, hi = nseq - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (cu[mid] <= r) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// ---- sparse MoE (native/cuda/moe.cu) ----
constexpr int kMoeTile = 64;  // rows (and columns) of a grouped-GEMM output tile
constexpr int kMoeThreads = 256;

// offsets (E + 1) = exclusive cumulative sum of counts (E): where each expert's rows begin.
PG_HD void moe_offsets_from_histogram(int32_t* offsets, const int32_t* counts, int64_t E) {
  offsets[0] = 0;
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[e];
}

// Row tiles of the grouped GEMM: expert e's rows [offsets[e], offsets[e+1]) in tiles of `tile`.
// Grid bound: sum over experts of ceil(rows_e / tile) <= ceil(M / tile) + E.
PG_HD int64_t moe_max_row_tiles(int64_t M, int64_t E, int64_t tile) { return (M + tile - 1) / tile + E; }

// Block b's tile: its expert *e and rows [*row0, *row1); false when b is past the last tile
// (the grid is sized by moe_max_row_tiles). Walks the experts in order, O(E).
PG_HD bool moe_tile_of_block(const int32_t* offsets, int64_t E, int64_t tile, int64_t b, int64_t* e, int64_t* row0,
                             int64_t* row1) {
  for (int64_t x = 0; x < E; ++x) {
    const int64_t rows = static_cast<int64_t>(offsets[x + 1]) - offsets[x];
    const int64_t n = (rows + tile - 1) / tile;
    if (b < n) {
      *e = x;
      *row0 = offsets[x] + b * tile;
      *row1 = *row0 + tile < offsets[x + 1] ? *row0 + tile : offsets[x + 1];
      return true;
    }
    b -= n;
  }
  return false;
}

}  // namespace pg::cuda_plan
