// Token embedding: a row gather forward and its scatter-add backward.
// dtable is a parameter gradient, so backward accumulates (+=) into it.
#include <cstring>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

// Columns are handed to threads in blocks of one cache line, so two threads never write the
// same line of dtable.
constexpr int64_t kColBlock = 16;

PG_CLONES void add_row(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace

// out (N, C), ids (N), table (V, C)
void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C) {
  if (C == 0) return;
  const int64_t grain = C >= kElementwiseGrain ? 1 : kElementwiseGrain / C;
  parallel_for(N, grain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      std::memcpy(out + n * C, table + static_cast<int64_t>(ids[n]) * C, static_cast<size_t>(C) * sizeof(float));
  });
}

// dtable (V, C), dout (N, C), ids (N)
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t C) {
  if (N == 0 || C == 0) return;
  // Split over columns, every thread walking all rows for its own columns: repeated ids never
  // race, and each element sums its rows in order n = 0..N-1 whatever the thread count.
  const int64_t blocks = (C + kColBlock - 1) / kColBlock;
  const int64_t per_block = N * kColBlock;
  const int64_t grain = per_block >= kElementwiseGrain ? 1 : kElementwiseGrain / per_block;
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    const int64_t c0 = b0 * kColBlock, c1 = b1 * kColBlock < C ? b1 * kColBlock : C;
    for (int64_t n = 0; n < N; ++n)
      add_row(dtable + static_cast<int64_t>(ids[n]) * C + c0, dout + n * C + c0, c1 - c0);
  });
}

}  // namespace pg
