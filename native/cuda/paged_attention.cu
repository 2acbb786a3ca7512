// Paged KV cache on CUDA: the twin of native/cpu/paged_attention.cpp (same cache layout, block
// tables, slot mapping, causal rows over the cache and the same partials and merge), checked
// against it by the op suites. Caches of f32, bf16 or f16 (paged_attention.h KvDType): stores
// round to the cache's type as the CPU does (nearest even), attention widens to f32 on load;
// softmax and every sum are f32.
//
// Decode attention is split-K (vLLM's paged attention v2): a block takes one query row, a chunk
// of the query heads sharing one KV head, and one partition of the row's tokens
// (cuda_plan::plan_paged picks the partition, a multiple of the caller's, so the grid fills the
// device even for a single long sequence). Its 4 warps take tiles of 32 tokens in turn: a warp
// stages the tile's keys in shared memory (coalesced row reads), lane j scores token j against
// the chunk's heads, and the warp keeps an online softmax per head, its lanes holding the head
// dim slices d = lane + 32 c of the value sums. The warps' partials merge in shared memory; a row
// of one partition is finished there, others leave (max, exp-sum, unnormalised output) in
// part_stats / part_out, merged by the reduce kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "attention_common.cuh"
#include "patentgpt/cuda_paged_attention.h"
#include "patentgpt/cuda_index_check.h"
#include "patentgpt/cuda_plan.h"

namespace pg::cuda {

namespace {

using namespace pg::cuda_plan;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kStoreThreads = 256;
constexpr int kMergeThreads = 128;  // 4 warps, one (row, head) each

__device__ __forceinline__ float load_kv(const void* base, int dtype, int64_t i) {
  if (dtype == static_cast<int>(KvDType::F32)) return static_cast<const float*>(base)[i];
  const unsigned short u = static_cast<const unsigned short*>(base)[i];
  if (dtype == static_cast<int>(KvDType::BF16)) return __uint_as_float(static_cast<unsigned>(u) << 16);
  return __half2float(__ushort_as_half(u));
}

__device__ __forceinline__ void store_kv(void* base, int dtype, int64_t i, float x) {
  if (dtype == static_cast<int>(KvDType::F32)) static_cast<float*>(base)[i] = x;
  else if (dtype == static_cast<int>(KvDType::BF16))
    static_cast<unsigned short*>(base)[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x));
  else static_cast<unsigned short*>(base)[i] = __half_as_ushort(__float2half_rn(x));
}

// k_cache, v_cache (num_blocks, block_size, Hkv, D) at slot_mapping (T) from k, v (T, Hkv, D).
__global__ void __launch_bounds__(kStoreThreads) paged_kv_store_kernel(void* k_cache, void* v_cache, int dtype,
                                                                       const float* __restrict__ k,
                                                                       const float* __restrict__ v,
                                                                       const int32_t* __restrict__ slot_mapping,
                                                                       int64_t n, int64_t row, const int* halt) {
  if (*halt) return;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kStoreThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kStoreThreads) {
    const int64_t t = i / row, e = i - t * row;
    const int32_t slot = slot_mapping[t];
    if (slot < 0) continue;  // padding
    const int64_t at = static_cast<int64_t>(slot) * row + e;
    store_kv(k_cache, dtype, at, k[i]);
    store_kv(v_cache, dtype, at, v[i]);
  }
}

struct Paged {
  float* out;
  float* part_out;
  float* part_stats;
  const float* q;
  const void* k_cache;
  const void* v_cache;
  const int32_t* tables;
  const int32_t* cu;
  const int32_t* ctx;
  const int* halt;  // non-zero: an index check failed (cuda_index_check.h); touch nothing
  int64_t nseq, max_blocks, partition, max_partitions;
  int H, Hkv, D, group, heads, head_chunks, block_size, dtype;
  float scale;
};

// One (row, head chunk, partition) per block (see the top of the file).
// dynamic smem: (4 * 256 + kPagedWarps * 32 * 257) * 4 bytes at most (paged_smem_floats at D 256)
template <int DMAX, int GMAX>
__global__ void __launch_bounds__(kPagedThreads, 1) paged_partition_kernel(Paged a) {
  constexpr int NC = DMAX / 32;
  extern __shared__ float smem[];
  const int D = a.D, Dp = D + 1;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r = blockIdx.x;
  if (*a.halt) return;
  const int64_t s = paged_row_sequence(a.cu, a.nseq, r);
  const int64_t qlen = a.cu[s + 1] - a.cu[s], len = a.ctx[s] - qlen + (r - a.cu[s]) + 1;
  int64_t b, e;
  if (!paged_partition_range(len, a.partition, blockIdx.z, &b, &e)) return;
  const bool direct = paged_partitions_of(len, a.partition) == 1;
  const int hk = blockIdx.y / a.head_chunks;
  const int h0 = hk * a.group + (blockIdx.y % a.head_chunks) * a.heads;
  const int ng = min(a.heads, (hk + 1) * a.group - h0);
  float* qs = smem;                           // (heads, D)
  float* ks = qs + a.heads * D + warp * 32 * Dp;  // this warp's key tile (32, D + 1)
  for (int i = threadIdx.x; i < ng * D; i += kPagedThreads) qs[i] = a.q[(r * a.H + h0) * D + i];
  __syncthreads();
  const float sl2 = a.scale * kLog2e;
  const int64_t row = static_cast<int64_t>(a.Hkv) * D;  // elements per cache slot
  const int32_t* table = a.tables + s * a.max_blocks;
  float m[GMAX], l[GMAX], acc[GMAX][NC];
#pragma unroll
  for (int g = 0; g < GMAX; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[g][c] = 0.0f;
  }
  for (int64_t t0 = b + warp * 32; t0 < e; t0 += kPagedWarps * 32) {
    const int n = static_cast<int>(min(e - t0, int64_t{32}));
    // This lane's token: where its keys and values start in the caches.
    const int64_t t = t0 + lane;
    int64_t at = 0;
    if (lane < n) at = (static_cast<int64_t>(table[t / a.block_size]) * a.block_size + t % a.block_size) * row + hk * D;
    __syncwarp();  // the previous tile's keys are consumed
    for (int j = 0; j < n; ++j) {
      const int64_t aj = __shfl_sync(0xffffffffu, at, j);
      for (int d = lane; d < D; d += 32) ks[j * Dp + d] = load_kv(a.k_cache, a.dtype, aj + d);
    }
    __syncwarp();
    float sc[GMAX];
#pragma unroll
    for (int g = 0; g < GMAX; ++g) sc[g] = 0.0f;
    const float* kr = ks + lane * Dp;
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      const float kd = kr[d];
#pragma unroll
      for (int g = 0; g < GMAX; ++g)
        if (g < ng) sc[g] = fmaf(qs[g * D + d], kd, sc[g]);
    }
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
      if (g >= ng) continue;
      const float x = lane < n ? sc[g] * sl2 : -INFINITY;
      const float mnew = fmaxf(m[g], warp_max(x));  // finite: the tile has a token
      const float p = exp2f(x - mnew), corr = exp2f(m[g] - mnew);
      l[g] = l[g] * corr + warp_sum(p);
      m[g] = mnew;
#pragma unroll
      for (int c = 0; c < NC; ++c) acc[g][c] *= corr;
      sc[g] = p;
    }
    for (int j = 0; j < n; ++j) {
      const int64_t aj = __shfl_sync(0xffffffffu, at, j);
      float vd[NC];
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int d = lane + 32 * c;
        vd[c] = d < D ? load_kv(a.v_cache, a.dtype, aj + d) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < GMAX; ++g) {
        if (g >= ng) continue;
        const float pj = __shfl_sync(0xffffffffu, sc[g], j);
#pragma unroll
        for (int c = 0; c < NC; ++c) acc[g][c] = fmaf(pj, vd[c], acc[g][c]);
      }
    }
  }
  // The warps' partials (warps, heads, D + 2: sums, max, exp-sum) in place of the key tiles.
  __syncthreads();
  float* part = qs + a.heads * D;
#pragma unroll
  for (int g = 0; g < GMAX; ++g) {
    if (g >= ng) continue;
    float* w = part + (warp * a.heads + g) * (D + 2);
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      if (d < D) w[d] = acc[g][c];
    }
    if (lane == 0) {
      w[D] = m[g];
      w[D + 1] = l[g];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < ng * D; i += kPagedThreads) {
    const int g = i / D, d = i - g * D;
    float M = -INFINITY;
    for (int w = 0; w < kPagedWarps; ++w) M = fmaxf(M, part[(w * a.heads + g) * (D + 2) + D]);
    float L = 0.0f, A = 0.0f;
    for (int w = 0; w < kPagedWarps; ++w) {
      const float* pw = part + (w * a.heads + g) * (D + 2);
      if (pw[D] == -INFINITY) continue;  // a warp that had no tokens
      const float f = exp2f(pw[D] - M);
      L = fmaf(f, pw[D + 1], L);
      A = fmaf(f, pw[d], A);
    }
    const int64_t rh = r * a.H + h0 + g;
    if (direct) {
      a.out[rh * D + d] = A / L;
    } else {
      const int64_t at = rh * a.max_partitions + blockIdx.z;
      a.part_out[at * D + d] = A;
      if (d == 0) {
        a.part_stats[at * 2] = M * kLn2;  // natural log, as the CPU kernel keeps it
        a.part_stats[at * 2 + 1] = L;
      }
    }
  }
}

// out (D) = sum_p exp(m_p - M) part_out_p / sum_p exp(m_p - M) l_p over a row's partitions, for
// rows of more than one (a row of one was finished by its partition).
__global__ void __launch_bounds__(kMergeThreads) paged_merge_kernel(Paged a, int64_t rows) {
  constexpr int NC = kAttnMaxHeadDim / 32;
  const int64_t rh = (static_cast<int64_t>(blockIdx.x) * kMergeThreads + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (rh >= rows * a.H || *a.halt) return;
  const int64_t r = rh / a.H;
  const int64_t s = paged_row_sequence(a.cu, a.nseq, r);
  const int64_t qlen = a.cu[s + 1] - a.cu[s], len = a.ctx[s] - qlen + (r - a.cu[s]) + 1;
  const int64_t n = paged_partitions_of(len, a.partition);
  if (n <= 1) return;
  const float* stats = a.part_stats + rh * a.max_partitions * 2;
  const float* po = a.part_out + rh * a.max_partitions * a.D;
  float M = -INFINITY;
  for (int64_t p = 0; p < n; ++p) M = fmaxf(M, stats[2 * p]);
  float L = 0.0f, acc[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) acc[c] = 0.0f;
  for (int64_t p = 0; p < n; ++p) {
    const float w = expf(stats[2 * p] - M);
    L = fmaf(w, stats[2 * p + 1], L);
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      if (d < a.D) acc[c] = fmaf(w, po[p * a.D + d], acc[c]);
    }
  }
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int d = lane + 32 * c;
    if (d < a.D) a.out[rh * a.D + d] = acc[c] / L;
  }
}

template <int DMAX, int GMAX>
void launch_partitions(const PagedPlan& plan, const Paged& a, const std::string& what) {
  allow_smem(paged_partition_kernel<DMAX, GMAX>, plan.smem, what);
  paged_partition_kernel<DMAX, GMAX>
      <<<dim3(static_cast<unsigned>(plan.grid_x), static_cast<unsigned>(plan.grid_y),
              static_cast<unsigned>(plan.grid_z)),
         kPagedThreads, plan.smem, st()>>>(a);
}

}  // namespace

void paged_kv_store(void* k_cache, void* v_cache, KvDType dtype, const float* k, const float* v,
                    const int32_t* slot_mapping, int64_t T, int64_t Hkv, int64_t D) {
  const int64_t n = T * Hkv * D;
  if (n == 0) return;
  paged_kv_store_kernel<<<blocks_for(n, kStoreThreads), kStoreThreads, 0, st()>>>(
      k_cache, v_cache, static_cast<int>(dtype), k, v, slot_mapping, n, Hkv * D, index_halt());
  check_launch(describe("pagedKvStore", {{"T", T}, {"Hkv", Hkv}, {"D", D}}));
}

void paged_attention_forward(const PagedAttention& call, const int32_t* cu_host, const int32_t* ctx_host) {
  const std::string what = describe("pagedAttention", {{"nseq", call.nseq}, {"Tq", call.Tq}, {"H", call.H},
                                                       {"Hkv", call.Hkv}, {"D", call.D}});
  if (call.Tq == 0) return;
  // The longest row: the last query row of a sequence attends all its context_lens tokens. Without
  // host copies (the bindings check the indices on the device), the most a valid call allows.
  int64_t max_len = 0;
  if (cu_host && ctx_host) {
    for (int64_t s = 0; s < call.nseq; ++s)
      if (cu_host[s + 1] > cu_host[s]) max_len = std::max<int64_t>(max_len, ctx_host[s]);
  } else {
    max_len = std::min(call.max_blocks * call.block_size, call.max_partitions * call.partition_size);
  }
  PagedPlan plan;
  const std::string err = plan_paged(call.Tq, call.H, call.Hkv, call.D, call.partition_size, call.max_partitions,
                                     max_len, sm_count(), plan);
  if (!err.empty()) throw Error(what + ": " + err, /*bad_argument=*/true);
  if (plan.split && (!call.part_out || !call.part_stats))
    throw Error(what + ": partition scratch is missing", /*bad_argument=*/true);
  const Paged a{call.out, call.part_out, call.part_stats, call.q, call.k_cache, call.v_cache, call.block_tables,
                call.cu_q, call.context_lens, index_halt(), call.nseq, call.max_blocks, plan.partition, call.max_partitions,
                static_cast<int>(call.H), static_cast<int>(call.Hkv), static_cast<int>(call.D),
                static_cast<int>(call.H / call.Hkv), plan.heads, static_cast<int>(plan.head_chunks),
                static_cast<int>(call.block_size), static_cast<int>(call.kv_dtype), call.scale};
  switch (plan.dmax) {
    case 64: launch_partitions<64, 8>(plan, a, what); break;
    case 128: launch_partitions<128, 8>(plan, a, what); break;
    default: launch_partitions<256, 4>(plan, a, what); break;
  }
  if (plan.split) {
    // One warp per (row, head).
    const int64_t blocks = (call.Tq * call.H * 32 + kMergeThreads - 1) / kMergeThreads;
    paged_merge_kernel<<<static_cast<unsigned>(blocks), kMergeThreads, 0, st()>>>(a, call.Tq);
  }
  check_launch(what);
}

}  // namespace pg::cuda
