// Split-K planning of the CUDA paged decode attention (patentgpt/cuda_plan.h), tested on the
// CPU: how many partitions a call is split in, their token ranges, the head chunks of a block
// and the row-to-sequence lookup.
#include <vector>

#include "check.h"
#include "patentgpt/cuda_plan.h"

using namespace pg::cuda_plan;

TEST(paged_plan_splits_a_lone_long_decode_and_not_a_full_batch) {
  PagedPlan plan;
  // One sequence decoding at 32k context on 132 SMs: 8 KV heads are 8 blocks, far too few.
  CHECK(plan_paged(1, 32, 8, 128, 512, 64, 32768, 132, plan).empty());
  CHECK(plan.split && plan.partitions > 1 && plan.partitions <= 64);
  CHECK(plan.partition % 512 == 0 && plan.partition * plan.partitions >= 32768);
  CHECK(plan.grid_x == 1 && plan.grid_y == 8 && plan.grid_z == plan.partitions);
  // Two partitions are a split too (partials and the merge).
  CHECK(plan_paged(1, 32, 8, 128, 512, 2, 1024, 132, plan).empty());
  CHECK(plan.partitions == 2 && plan.split);
  // 256 rows already fill the device: one partition per row, covering the longest row.
  CHECK(plan_paged(256, 32, 8, 128, 512, 64, 32768, 132, plan).empty());
  CHECK(!plan.split && plan.partitions == 1 && plan.partition >= 32768);
  // A short context is never split below kPagedMinPartitionTokens per partition.
  CHECK(plan_paged(1, 32, 8, 128, 16, 64, 300, 132, plan).empty());
  CHECK(plan.partitions == 1 && !plan.split);
  CHECK(plan_paged(1, 32, 8, 128, 16, 64, 1024, 132, plan).empty());
  CHECK(plan.partitions <= 1024 / kPagedMinPartitionTokens);
  // Without partition scratch (max_partitions 1) nothing is split.
  CHECK(plan_paged(1, 4, 4, 64, 1024, 1, 1000, 132, plan).empty());
  CHECK(!plan.split && plan.partition >= 1000);
}

TEST(paged_partitions_cover_each_row_exactly) {
  for (int64_t max_len : {1, 255, 256, 1000, 4097, 20000}) {
    PagedPlan plan;
    CHECK(plan_paged(1, 8, 1, 64, 128, 200, max_len, 132, plan).empty());
    CHECK(plan.partitions <= 200);
    // Every row up to max_len: partitions [0, n) tile [0, len), the rest are empty.
    for (int64_t len : {int64_t{1}, max_len / 2 + 1, max_len}) {
      int64_t next = 0, n = 0;
      for (int64_t p = 0; p < plan.partitions; ++p) {
        int64_t b, e;
        if (!paged_partition_range(len, plan.partition, p, &b, &e)) continue;
        CHECK(b == next && e > b);
        next = e;
        ++n;
      }
      CHECK(next == len && n == paged_partitions_of(len, plan.partition));
    }
  }
}

TEST(paged_heads_are_chunked_to_what_a_block_holds) {
  PagedPlan plan;
  CHECK(plan_paged(4, 32, 1, 128, 256, 8, 2048, 132, plan).empty());  // multi-query: 32 heads share one
  CHECK(plan.heads == 8 && plan.head_chunks == 4 && plan.grid_y == 4);
  CHECK(plan_paged(4, 12, 4, 256, 256, 8, 2048, 132, plan).empty());  // group of 3 at D 256
  CHECK(plan.heads == 3 && plan.head_chunks == 1 && plan.dmax == 256);
  CHECK(plan_paged(4, 10, 1, 256, 256, 8, 2048, 132, plan).empty());  // 10 heads in chunks of 4: the last has 2
  CHECK(plan.heads == 4 && plan.head_chunks == 3 && plan.grid_y == 3);
  CHECK(plan_paged(4, 12, 4, 300, 256, 8, 2048, 132, plan).find("head dim") != std::string::npos);
}

TEST(paged_shared_memory_holds_the_partials_and_fits_the_device) {
  for (int64_t D : {1, 64, 96, 128, 200, 256}) {
    PagedPlan plan;
    CHECK(plan_paged(1, 64, 1, D, 256, 8, 2048, 132, plan).empty());  // the most heads a block takes
    CHECK(plan.heads == paged_heads_per_block(attention_dmax(D)));
    CHECK(paged_partials_fit(plan.heads, D));
    CHECK(plan.smem <= 163 * 1024);  // A100's opt-in limit, the smallest of sm_80..sm_90
  }
  CHECK(!paged_partials_fit(64, 128));  // the check itself can fail
}

TEST(paged_rows_find_their_sequence_past_empty_ones) {
  const std::vector<int32_t> cu = {0, 2, 2, 2, 5, 6};
  const int64_t want[6] = {0, 0, 3, 3, 3, 4};
  for (int64_t r = 0; r < 6; ++r) CHECK(paged_row_sequence(cu.data(), 5, r) == want[r]);
}
