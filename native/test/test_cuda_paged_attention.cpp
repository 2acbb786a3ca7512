// The CUDA paged KV cache kernels (native/cuda/paged_attention.cu) against their CPU twins
// (paged_attention.h): stores into f32, bf16 and f16 caches bit for bit, and decode attention
// over scattered blocks, split in partitions (one long sequence: the split-K path and its merge)
// and not (short rows), with GQA and a prefill chunk of several rows. Runs where a GPU is present
// (scripts/gpu-check.sh); elsewhere it says why it skipped.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/runtime.h"

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_ops.h"
#include "patentgpt/cuda_paged_attention.h"
#include "cuda_test_util.h"

namespace {

using pgtest::down;
using pgtest::Pool;

}  // namespace

TEST(cuda_paged_store_and_decode_match_cpu) {
  NEED_GPU();
  const int64_t H = 8, Hkv = 2, D = 128, bs = 16, numBlocks = 300;
  const std::vector<int32_t> ctx = {3000, 40}, cu = {0, 1, 4};  // a decode row, then a 3-row prefill chunk
  const int64_t nseq = 2, Tq = 4, maxBlocks = (3000 + bs - 1) / bs;
  std::vector<int32_t> tables(nseq * maxBlocks, 0);
  for (int64_t b = 0; b < maxBlocks; ++b) tables[b] = static_cast<int32_t>((b * 7) % numBlocks);  // scattered
  for (int64_t b = 0; b < 3; ++b) tables[maxBlocks + b] = static_cast<int32_t>(((maxBlocks + b) * 7) % numBlocks);
  std::vector<int32_t> slots;
  for (int64_t s = 0; s < nseq; ++s)
    for (int64_t t = 0; t < ctx[s]; ++t) slots.push_back(tables[s * maxBlocks + t / bs] * static_cast<int32_t>(bs) + t % bs);
  slots.push_back(-1);  // padding is skipped
  const int64_t T = static_cast<int64_t>(slots.size()), cache = numBlocks * bs * Hkv * D;
  auto k = pgtest::randn(T * Hkv * D, 1), v = pgtest::randn(T * Hkv * D, 2), q = pgtest::randn(Tq * H * D, 3);
  for (pg::KvDType dtype : {pg::KvDType::F32, pg::KvDType::BF16, pg::KvDType::F16}) {
    Pool pool;
    const size_t bytes = static_cast<size_t>(cache * pg::kv_dtype_bytes(dtype));
    std::vector<uint8_t> kc(bytes, 0), vc(bytes, 0);
    pg::paged_kv_store(kc.data(), vc.data(), dtype, k.data(), v.data(), slots.data(), T, Hkv, D);
    uint8_t *dkc = pool.up(std::vector<uint8_t>(bytes, 0)), *dvc = pool.up(std::vector<uint8_t>(bytes, 0));
    float *dk = pool.up(k), *dv = pool.up(v), *dq = pool.up(q);
    int32_t *dslots = pool.up(slots), *dtables = pool.up(tables), *dcu = pool.up(cu), *dctx = pool.up(ctx);
    pg::cuda::paged_kv_store(dkc, dvc, dtype, dk, dv, dslots, T, Hkv, D);
    CHECK(down(dkc, bytes) == kc && down(dvc, bytes) == vc);
    for (int64_t partition : {256, 1024}) {
      const int64_t maxParts = (3000 + partition - 1) / partition;
      std::vector<float> out(Tq * H * D), po(Tq * H * maxParts * D), ps(Tq * H * maxParts * 2);
      pg::paged_attention_forward({out.data(), po.data(), ps.data(), q.data(), kc.data(), vc.data(), tables.data(),
                                   cu.data(), ctx.data(), nseq, Tq, H, Hkv, D, bs, maxBlocks, partition, maxParts,
                                   0.088f, dtype});
      float *dout = pool.up(std::vector<float>(out.size())), *dpo = pool.up(po), *dps = pool.up(ps);
      pg::cuda::paged_attention_forward({dout, dpo, dps, dq, dkc, dvc, dtables, dcu, dctx, nseq, Tq, H, Hkv, D, bs,
                                         maxBlocks, partition, maxParts, 0.088f, dtype},
                                        cu.data(), ctx.data());
      const auto got = down(dout, out.size());
      CHECK_CLOSE(got, out, out.size(), 1e-5, 1e-4);
    }
  }
}

#else
TEST(cuda_paged_attention_not_compiled) { std::printf("skip: built without CUDA\n"); }
#endif
