// Launch planning of the CUDA fused attention (patentgpt/cuda_plan.h), tested on the CPU: the
// head-dim buckets, the grid's map onto (sequence, row tile), the causal key ranges and the
// shared memory each kernel asks for.
#include <vector>

#include "check.h"
#include "patentgpt/cuda_plan.h"

using namespace pg::cuda_plan;

TEST(attention_head_dims_pick_their_bucket_or_are_refused) {
  CHECK(attention_dmax(64) == 64 && attention_dmax(1) == 64 && attention_dmax(65) == 128);
  CHECK(attention_dmax(128) == 128 && attention_dmax(80) == 128 && attention_dmax(200) == 256);
  CHECK(attention_dmax(256) == 256 && attention_dmax(257) == 0 && attention_dmax(0) == 0);
  const int32_t cu[2] = {0, 10};
  AttentionPlan plan;
  CHECK(plan_attention(cu, 1, 4, 2, 320, plan).find("head dim") != std::string::npos);
  CHECK(plan_attention(cu, 1, 4, 2, 96, plan).empty() && plan.dmax == 128);
}

TEST(attention_grid_covers_every_sequence_tile_once_heaviest_first) {
  // Sequences of 5, 0 (empty), 95, 33 and 16 tokens.
  const std::vector<int32_t> cu = {0, 5, 5, 100, 133, 149};
  const int64_t nseq = 5;
  AttentionPlan plan;
  CHECK(plan_attention(cu.data(), nseq, 8, 2, 64, plan).empty());
  CHECK(plan.max_len == 95 && plan.tiles == 6 && plan.grid_x == nseq * 6);
  CHECK(plan.grid_y_q == 8 && plan.grid_y_kv == 2);
  for (bool last_first : {true, false}) {
    std::vector<std::vector<int>> seen(nseq, std::vector<int>(plan.tiles, 0));
    std::vector<int64_t> first_tile(nseq, -1);
    for (int64_t x = 0; x < plan.grid_x; ++x) {
      int64_t s, t;
      attention_block_tile(x, plan.tiles, last_first, &s, &t);
      CHECK(s >= 0 && s < nseq && t >= 0 && t < plan.tiles);
      const int64_t len = cu[s + 1] - cu[s];
      if (t * kAttnRows >= len) continue;  // a block past its sequence's end exits at once
      ++seen[s][t];
      if (first_tile[s] < 0) first_tile[s] = t;
    }
    for (int64_t s = 0; s < nseq; ++s) {
      const int64_t len = cu[s + 1] - cu[s], tiles = (len + kAttnRows - 1) / kAttnRows;
      for (int64_t t = 0; t < plan.tiles; ++t) CHECK(seen[s][t] == (t < tiles ? 1 : 0));
      // The heaviest tile of each sequence comes first: the last query tile, or the first key tile.
      if (tiles > 0) CHECK(first_tile[s] == (last_first ? tiles - 1 : 0));
    }
  }
}

TEST(attention_causal_ranges_stop_at_the_diagonal) {
  CHECK(attention_key_end(0, 100, true) == kAttnRows);       // first tile: keys up to its last query
  CHECK(attention_key_end(16, 20, true) == 20);              // a short last tile stops at the end
  CHECK(attention_key_end(16, 100, false) == 100);           // without masking: every key
  CHECK(attention_query_begin(64, true) == 64 && attention_query_begin(64, false) == 0);
}

TEST(attention_shared_memory_fits_the_devices_opt_in_limit) {
  // A100's opt-in limit per block (163 KB) is the smallest of sm_80..sm_90; above 48 KB the
  // launcher raises the kernel's limit first.
  const int32_t cu[2] = {0, 1};
  for (int64_t D : {1, 64, 100, 128, 256}) {
    AttentionPlan plan;
    CHECK(plan_attention(cu, 1, 1, 1, D, plan).empty());
    CHECK(plan.smem_forward <= 163 * 1024 && plan.smem_dq <= 163 * 1024 && plan.smem_dkdv <= 163 * 1024);
    // The padded column tiles: 2 * 32 * (D + 4) floats in every kernel, their rows 16-byte
    // aligned (float4 reads) whenever D is a multiple of 4, as are the row blocks after them.
    CHECK(plan.smem_forward == static_cast<size_t>(16 * D + 64 * (D + 4)) * 4);
    if (D % 4 == 0) CHECK(attention_col_stride(D) % 4 == 0 && (16 * D) % 4 == 0);
  }
  AttentionPlan plan;
  CHECK(plan_attention(cu, 1, 1, 1, 64, plan).empty() && plan.smem_dkdv <= 48 * 1024);
}
