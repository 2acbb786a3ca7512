// Host-side logic of the CUDA MoE kernels (patentgpt/cuda_plan.h), tested on the CPU: offsets
// from a histogram and the grouped GEMM's map from blocks to (expert, row tile).
#include <vector>

#include "check.h"
#include "patentgpt/cuda_plan.h"

using namespace pg::cuda_plan;

TEST(moe_offsets_are_the_exclusive_sum_of_the_histogram) {
  const std::vector<int32_t> counts = {3, 0, 0, 7, 1};
  std::vector<int32_t> off(6, -1);
  moe_offsets_from_histogram(off.data(), counts.data(), 5);
  const int32_t want[6] = {0, 3, 3, 3, 10, 11};
  for (int i = 0; i < 6; ++i) CHECK(off[i] == want[i]);
}

TEST(moe_row_tiles_cover_every_row_once_with_its_expert) {
  // Experts of 0, 130, 64, 0, 1 and 65 rows with tiles of 64.
  const std::vector<int32_t> counts = {0, 130, 64, 0, 1, 65};
  const int64_t E = 6;
  std::vector<int32_t> off(E + 1);
  moe_offsets_from_histogram(off.data(), counts.data(), E);
  const int64_t M = off[E], grid = moe_max_row_tiles(M, E, kMoeTile);
  std::vector<int> owner(M, -1);
  int64_t used = 0;
  for (int64_t b = 0; b < grid; ++b) {
    int64_t e, r0, r1;
    if (!moe_tile_of_block(off.data(), E, kMoeTile, b, &e, &r0, &r1)) continue;
    ++used;
    CHECK(r1 > r0 && r1 - r0 <= kMoeTile && r0 >= off[e] && r1 <= off[e + 1]);
    for (int64_t r = r0; r < r1; ++r) {
      CHECK(owner[r] == -1);
      owner[r] = static_cast<int>(e);
    }
  }
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = off[e]; r < off[e + 1]; ++r) CHECK(owner[r] == e);
  CHECK(used == 3 + 1 + 1 + 2);  // ceil(130/64) + 1 + 1 + ceil(65/64)
  int64_t e, r0, r1;
  CHECK(!moe_tile_of_block(off.data(), E, kMoeTile, used, &e, &r0, &r1));
}
