// Host-side launch planning of the CUDA attention, paged-attention and MoE kernels
// (patentgpt/cuda_plan.h). Compiled into every build: the plans are tested without a GPU.
#include "patentgpt/cuda_plan.h"

#include <algorithm>

namespace pg::cuda_plan {

namespace {
constexpr int64_t kMaxGridX = 0x7fffffff, kMaxGridYZ = 65535;
std::string S(int64_t v) { return std::to_string(v); }
}  // namespace

std::string plan_attention(const int32_t* cu, int64_t nseq, int64_t H, int64_t Hkv, int64_t D, AttentionPlan& plan) {
  plan = AttentionPlan{};
  plan.dmax = attention_dmax(D);
  if (plan.dmax == 0) return "head dim D = " + S(D) + " is outside [1, " + S(kAttnMaxHeadDim) + "] on cuda";
  if (H > kMaxGridYZ) return "H = " + S(H) + " heads exceed the grid's " + S(kMaxGridYZ) + " on cuda";
  for (int64_t s = 0; s < nseq; ++s) plan.max_len = std::max<int64_t>(plan.max_len, cu[s + 1] - cu[s]);
  plan.tiles = (plan.max_len + kAttnRows - 1) / kAttnRows;
  plan.grid_x = nseq * plan.tiles;
  if (plan.grid_x > kMaxGridX) return "nseq * tiles = " + S(plan.grid_x) + " blocks exceed the grid on cuda";
  plan.grid_y_q = H;
  plan.grid_y_kv = Hkv;
  plan.smem_forward = static_cast<size_t>(attention_forward_smem_floats(D)) * sizeof(float);
  plan.smem_dq = static_cast<size_t>(attention_dq_smem_floats(D)) * sizeof(float);
  plan.smem_dkdv = static_cast<size_t>(attention_dkdv_smem_floats(D)) * sizeof(float);
  return "";
}

std::string plan_paged(int64_t Tq, int64_t H, int64_t Hkv, int64_t D, int64_t partition_size, int64_t max_partitions,
                       int64_t max_len, int sm_count, PagedPlan& plan) {
  plan = PagedPlan{};
  plan.dmax = attention_dmax(D);
  if (plan.dmax == 0) return "head dim D = " + S(D) + " is outside [1, " + S(kAttnMaxHeadDim) + "] on cuda";
  if (Tq > kMaxGridX) return "Tq = " + S(Tq) + " rows exceed the grid on cuda";
  const int64_t group = H / Hkv;
  plan.heads = static_cast<int>(std::min<int64_t>(group, paged_heads_per_block(plan.dmax)));
  plan.head_chunks = (group + plan.heads - 1) / plan.heads;
  // Caller partitions the longest row spans (the scratch holds max_partitions of them).
  const int64_t spans = std::max<int64_t>(1, std::min(max_partitions, paged_partitions_of(max_len, partition_size)));
  // Enough blocks for a few waves of the device, each partition long enough to be worth a merge.
  const int64_t blocks = std::max<int64_t>(1, Tq * Hkv * plan.head_chunks);
  const int64_t want_waves = 4 * std::max(1, sm_count);
  int64_t want = std::max<int64_t>(1, (want_waves + blocks - 1) / blocks);
  want = std::min(want, std::max<int64_t>(1, max_len / kPagedMinPartitionTokens));
  want = std::min(want, spans);
  plan.chunk = (spans + want - 1) / want;
  plan.partitions = (spans + plan.chunk - 1) / plan.chunk;
  plan.partition = plan.chunk * partition_size;
  // A single partition takes every token a row may attend, whatever the caller's partitions.
  if (plan.partitions == 1) plan.partition = std::max<int64_t>(plan.partition, std::max<int64_t>(max_len, 1));
  plan.split = plan.partitions > 1;
  plan.grid_x = Tq;
  plan.grid_y = Hkv * plan.head_chunks;
  plan.grid_z = plan.partitions;
  if (plan.grid_y > kMaxGridYZ || plan.grid_z > kMaxGridYZ)
    return "Hkv * head chunks = " + S(plan.grid_y) + " or partitions = " + S(plan.grid_z) + " exceed the grid on cuda";
  plan.smem = static_cast<size_t>(paged_smem_floats(plan.heads, D)) * sizeof(float);
  return "";
}

}  // namespace pg::cuda_plan
