// The device index checks (native/cuda/index_check.cu, cuda_index_check.h) with the kernels they
// guard: a bad cu_seqlens, paged block table / context length, expert id or permutation fills the
// process's error record with the violation the CPU binding would name first (lowest position),
// the op's kernels then leave their outputs untouched, and taking the record clears it; good
// indices record nothing and the ops run as before. Runs where a GPU is present
// (scripts/gpu-check.sh) and under the CPU emulator (scripts/cuda-emulate.sh).
#include <cstdio>
#include <string>
#include <vector>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/runtime.h"

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_attention.h"
#include "patentgpt/cuda_index_check.h"
#include "patentgpt/cuda_moe.h"
#include "patentgpt/cuda_ops.h"
#include "patentgpt/cuda_paged_attention.h"
#include "cuda_test_util.h"

namespace {

using pgtest::down;
using pgtest::Pool;

bool has(const std::string& s, const std::string& part) {
  if (s.find(part) != std::string::npos) return true;
  std::fprintf(stderr, "  expected \"%s\" in \"%s\"\n", part.c_str(), s.c_str());
  return false;
}

constexpr float kSentinel = -12345.0f;

// What a synchronisation point reports: synchronize() waits for the stream and throws the recorded
// violation as a bad argument (cuda::Error), clearing it; "" when nothing was recorded.
std::string sync_violation() {
  try {
    pg::cuda::synchronize("index check test");
  } catch (const pg::cuda::Error& e) {
    return (e.bad_argument ? "" : "not a bad argument: ") + std::string(e.what());
  }
  return "";
}

struct Run {
  std::string violation;
  std::vector<float> out;
};

// Attention forward over cu (device), out prefilled with kSentinel: the violation, then out.
Run attention_after_check(Pool& pool, const std::vector<int32_t>& cu, int64_t T) {
  const int64_t H = 2, Hkv = 1, D = 64, nseq = static_cast<int64_t>(cu.size()) - 1;
  const auto q = pgtest::randn(T * H * D, 1), k = pgtest::randn(T * Hkv * D, 2), v = pgtest::randn(T * Hkv * D, 3);
  float* out = pool.up(std::vector<float>(T * H * D, kSentinel));
  float* lse = pool.up(std::vector<float>(H * T, kSentinel));
  const int32_t* dcu = pool.up(cu);
  pg::cuda::check_cu_seqlens("attention forward", "cuSeqlens", dcu, nseq, T);
  pg::cuda::attention_forward(out, lse, pool.up(q), pool.up(k), pool.up(v), dcu, nseq, T, H, Hkv, D, 0.125f,
                              true);
  std::string m = sync_violation();
  return {m, down(out, T * H * D)};
}

bool untouched(const std::vector<float>& x) {
  for (float v : x)
    if (v != kSentinel) return false;
  return true;
}

}  // namespace

TEST(cuda_index_check_attention_bad_cu_seqlens_recorded_and_kernels_halted) {
  NEED_GPU();
  CHECK(sync_violation().empty());
  Pool pool;
  const uint64_t before = pg::cuda::index_checks_enqueued();
  // Ends at 8, not T = 10: every row the kernel would write is in bounds, so only the halt flag
  // keeps the output untouched.
  Run r = attention_after_check(pool, {0, 4, 8}, 10);
  CHECK(pg::cuda::index_checks_enqueued() == before + 1);
  CHECK(has(r.violation, "attention forward: cuSeqlens[2] = 8 must equal T = 10"));
  CHECK(untouched(r.out));
  CHECK(sync_violation().empty());  // reported once
  // The lowest violation wins: a start and a decrease, the start is named.
  r = attention_after_check(pool, {3, 2, 1, 10}, 10);
  CHECK(has(r.violation, "cuSeqlens[0] must be 0, got 3"));
  CHECK(untouched(r.out));
  r = attention_after_check(pool, {0, 6, 5, 2, 10}, 10);
  CHECK(has(r.violation, "cuSeqlens must not decrease: cuSeqlens[2] = 5 < 6"));
  CHECK(untouched(r.out));
}

TEST(cuda_index_check_attention_good_cu_seqlens_run_as_the_cpu) {
  NEED_GPU();
  Pool pool;
  const std::vector<int32_t> cu = {0, 17, 17, 40};  // an empty sequence between two
  const int64_t T = 40, H = 2, Hkv = 1, D = 64;
  const Run got = attention_after_check(pool, cu, T);
  CHECK(got.violation.empty());
  const auto q = pgtest::randn(T * H * D, 1), k = pgtest::randn(T * Hkv * D, 2), v = pgtest::randn(T * Hkv * D, 3);
  std::vector<float> want(T * H * D), lse(H * T);
  pg::attention_forward(want.data(), lse.data(), q.data(), k.data(), v.data(), cu.data(), 3, T, H, Hkv, D, 0.125f,
                        true);
  CHECK_CLOSE(got.out, want, want.size(), 1e-5, 1e-4);
}

TEST(cuda_index_check_first_violation_wins_until_taken) {
  NEED_GPU();
  Pool pool;
  // Both checks enqueued before the stream is synchronised: the second does not overwrite the first.
  const int64_t T = 10, H = 2, D = 64;
  float* out = pool.up(std::vector<float>(T * H * D, kSentinel));
  float* lse = pool.up(std::vector<float>(H * T));
  const float *q = pool.up(pgtest::randn(T * H * D, 1)), *kv = pool.up(pgtest::randn(T * D, 2));
  const int32_t *first = pool.up(std::vector<int32_t>{0, 4, 8}), *second = pool.up(std::vector<int32_t>{1, 4, 10});
  pg::cuda::check_cu_seqlens("attention forward", "cuSeqlens", first, 2, T);
  pg::cuda::check_cu_seqlens("attention backward", "cuSeqlens", second, 2, T);
  pg::cuda::attention_forward(out, lse, q, kv, kv, second, 2, T, H, 1, D, 0.125f, true);
  CHECK(has(sync_violation(), "attention forward: cuSeqlens[2] = 8 must equal T = 10"));
  CHECK(untouched(down(out, T * H * D)));  // still halted: the flag clears in stream order
  // After it was reported, the next good call runs.
  const Run r = attention_after_check(pool, {0, 4, 10}, 10);
  CHECK(r.violation.empty());
  CHECK(!untouched(r.out));
}

TEST(cuda_index_check_paged_tables_and_context_lengths) {
  NEED_GPU();
  Pool pool;
  const int64_t H = 2, Hkv = 1, D = 64, bs = 16, numBlocks = 8, maxBlocks = 4, Tq = 2, nseq = 2;
  const auto k = pgtest::randn(numBlocks * bs * Hkv * D, 4), v = pgtest::randn(numBlocks * bs * Hkv * D, 5);
  const auto q = pgtest::randn(Tq * H * D, 6);
  const float *dk = pool.up(k), *dv = pool.up(v), *dq = pool.up(q);
  const std::vector<int32_t> cu = {0, 1, 2};
  const auto run = [&](const std::vector<int32_t>& tables, const std::vector<int32_t>& ctx) {
    float* out = pool.up(std::vector<float>(Tq * H * D, kSentinel));
    const int32_t *dt = pool.up(tables), *dcu = pool.up(cu), *dctx = pool.up(ctx);
    pg::cuda::check_paged("pagedAttention", dcu, dctx, dt, nseq, Tq, numBlocks, bs, maxBlocks, 64, 1);
    pg::cuda::paged_attention_forward({out, nullptr, nullptr, dq, dk, dv, dt, dcu, dctx, nseq, Tq, H, Hkv, D, bs,
                                       maxBlocks, 64, 1, 0.125f, pg::KvDType::F32},
                                      nullptr, nullptr);
    std::string m = sync_violation();
    return Run{m, down(out, Tq * H * D)};
  };
  // Row 1 reads blocks 0 and 1 of its table; its block 1 is out of range.
  Run r = run({0, 1, 2, 3, 4, 99, -5, -5}, {40, 20});
  CHECK(has(r.violation, "pagedAttention: blockTables[1][1] = 99 is outside [0, 8)"));
  CHECK(untouched(r.out));
  r = run({0, 1, 2, 3, 4, 5, 6, 7}, {40, 65});
  CHECK(has(r.violation, "contextLens[1] = 65 exceeds maxBlocks * blockSize = 64"));
  CHECK(untouched(r.out));
  // Entries past a row's blocks are not read, so they are not checked (as on the CPU).
  const std::vector<int32_t> tables = {0, 1, 2, -1, 4, 5, 99, 99}, ctx = {40, 20};
  r = run(tables, ctx);
  CHECK(r.violation.empty());
  std::vector<float> want(Tq * H * D);
  pg::paged_attention_forward({want.data(), nullptr, nullptr, q.data(), k.data(), v.data(), tables.data(), cu.data(),
                               ctx.data(), nseq, Tq, H, Hkv, D, bs, maxBlocks, 64, 1, 0.125f, pg::KvDType::F32});
  CHECK_CLOSE(r.out, want, want.size(), 1e-5, 1e-4);
}

// Without host copies of cuQ and contextLens the split-K plan assumes the longest context the
// arguments allow: a row's own length still picks its partitions, and the merge agrees with the CPU.
TEST(cuda_index_check_paged_split_plan_without_host_copies) {
  NEED_GPU();
  Pool pool;
  const int64_t H = 4, Hkv = 2, D = 64, bs = 16, numBlocks = 80, maxBlocks = 40, Tq = 3, nseq = 2;
  const int64_t psize = 256, parts = 3;  // maxBlocks * bs = 640 tokens: 3 partitions of 256
  const std::vector<int32_t> cu = {0, 1, 3}, ctx = {600, 20};  // a decode row and a 2-row prefill chunk
  std::vector<int32_t> tables(nseq * maxBlocks, -1);
  for (int64_t b = 0; b < 38; ++b) tables[b] = static_cast<int32_t>((b * 7) % numBlocks);
  tables[maxBlocks] = 3;
  tables[maxBlocks + 1] = 10;
  const auto k = pgtest::randn(numBlocks * bs * Hkv * D, 4), v = pgtest::randn(numBlocks * bs * Hkv * D, 5);
  const auto q = pgtest::randn(Tq * H * D, 6);
  std::vector<float> want(Tq * H * D), po(Tq * H * parts * D), ps(Tq * H * parts * 2);
  pg::paged_attention_forward({want.data(), po.data(), ps.data(), q.data(), k.data(), v.data(), tables.data(),
                               cu.data(), ctx.data(), nseq, Tq, H, Hkv, D, bs, maxBlocks, psize, parts, 0.125f,
                               pg::KvDType::F32});
  float* out = pool.up(std::vector<float>(Tq * H * D, kSentinel));
  const int32_t *dt = pool.up(tables), *dcu = pool.up(cu), *dctx = pool.up(ctx);
  pg::cuda::check_paged("pagedAttention", dcu, dctx, dt, nseq, Tq, numBlocks, bs, maxBlocks, psize, parts);
  pg::cuda::paged_attention_forward({out, pool.up(po), pool.up(ps), pool.up(q), pool.up(k), pool.up(v), dt, dcu, dctx,
                                     nseq, Tq, H, Hkv, D, bs, maxBlocks, psize, parts, 0.125f, pg::KvDType::F32},
                                    nullptr, nullptr);
  CHECK(sync_violation().empty());
  const auto got = down(out, Tq * H * D);
  CHECK_CLOSE(got, want, want.size(), 1e-5, 1e-4);
}

TEST(cuda_index_check_moe_expert_ids_and_permutations) {
  NEED_GPU();
  Pool pool;
  const int64_t M = 6, E = 4;
  int32_t* order = pool.up(std::vector<int32_t>(M, -7));
  int32_t* slot_pos = pool.up(std::vector<int32_t>(M, -7));
  int32_t* offsets = pool.up(std::vector<int32_t>(E + 1, -7));
  // Slot 3 routes to expert 7, slot 5 to -1: slot 3 is named; the dispatch writes nothing.
  const int32_t* bad = pool.up(std::vector<int32_t>{0, 1, 2, 7, 3, -1});
  pg::cuda::check_expert_ids("moe dispatch", bad, M, E);
  pg::cuda::moe_dispatch(order, slot_pos, offsets, bad, M, E);
  CHECK(has(sync_violation(), "moe dispatch: expert 7 at slot 3 is outside [0, E = 4)"));
  CHECK(down(offsets, E + 1) == std::vector<int32_t>(E + 1, -7));
  CHECK(down(order, M) == std::vector<int32_t>(M, -7));
  // A repeated slot: the second occurrence (position 4) is named, and combine writes nothing.
  const int64_t N = 3, C = 5, k = 2;
  float* out = pool.up(std::vector<float>(N * C, kSentinel));
  const float* y = pool.up(pgtest::randn(M * C, 7));
  const float* w = pool.up(pgtest::randn(M, 8));
  const int32_t* dup = pool.up(std::vector<int32_t>{5, 0, 2, 1, 2, 4});
  pg::cuda::check_permutation("moe combine", "slotPos", dup, M);
  pg::cuda::moe_combine_forward(out, y, w, dup, N, C, k);
  CHECK(has(sync_violation(), "moe combine: slotPos is not a permutation of [0, M = 6): 2 at 4"));
  CHECK(untouched(down(out, N * C)));
  // Good ids and a good permutation: nothing recorded, the kernels run.
  const int32_t* good = pool.up(std::vector<int32_t>{0, 1, 2, 3, 3, 0});
  pg::cuda::check_expert_ids("moe dispatch", good, M, E);
  pg::cuda::moe_dispatch(order, slot_pos, offsets, good, M, E);
  CHECK(sync_violation().empty());
  CHECK(down(offsets, E + 1) == (std::vector<int32_t>{0, 2, 3, 4, 6}));
  const int32_t* perm = pool.up(std::vector<int32_t>{5, 0, 2, 1, 3, 4});
  pg::cuda::check_permutation("moe combine", "slotPos", perm, M);
  pg::cuda::moe_combine_forward(out, y, w, perm, N, C, k);
  CHECK(sync_violation().empty());
  CHECK(!untouched(down(out, N * C)));
}

#else
TEST(cuda_index_check_not_compiled) { std::printf("skip: built without CUDA\n"); }
#endif
