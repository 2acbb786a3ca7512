// Bit-for-bit stability of the GEMM and attention outputs across a change of where their scratch
// lives (workspace.h): the outputs of the shapes test_gemm.cpp and test_attention.cpp use, plus
// the few-rows GEMM at the presets' K (dim/ffnDim up to the 70B's 28672, the 55,296 vocabulary),
// are hashed per SIMD level and compared with the hashes the kernels gave before the change
// (recorded with GCC 12 -O3; a level the CPU lacks is skipped). A hash that moves means a kernel
// now sums in another order: re-record only for an intended numerical change, and say so.
// The hashes depend on the CPU as well as on the level: the loops of simd.h (PG_CLONES: softmax,
// norms, reductions inside attention) run the clone the loader picks for the CPU (x86-64-v4 or
// -v3), whatever level is forced, and the clones contract and vectorize differently. So each
// clone tier has its own hashes: v4 recorded on an Intel Xeon with AMX, v3 on an AMD EPYC (Zen 3,
// AVX2 only), both before this file learnt of the tiers; another tier has none and is skipped.
// Uses only ops.h/runtime.h, so the same file builds against the old kernels to record them:
//   PG_GOLDEN_PRINT=1 ./test_kernel_golden
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

namespace {

struct Hash {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the output bytes
  void add(const void* p, size_t bytes) {
    const unsigned char* c = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < bytes; ++i) h = (h ^ c[i]) * 1099511628211ull;
  }
  void add(const std::vector<float>& v) { add(v.data(), v.size() * sizeof(float)); }
};

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

struct GemmCase {
  int64_t M, N, K;
  int64_t pad = 0, batch = 1;
  bool bcast_a = false, bcast_b = false;
  float alpha = 1.0f, beta = 0.0f;
};

void hash_gemm(Hash& hash, const GemmCase& c, bool ta, bool tb, bool bf16, unsigned seed) {
  const int64_t arows = ta ? c.K : c.M, acols = ta ? c.M : c.K, brows = tb ? c.N : c.K, bcols = tb ? c.K : c.N;
  const int64_t lda = acols + c.pad, ldb = bcols + c.pad, ldc = c.N + c.pad;
  const int64_t sa = c.bcast_a ? 0 : arows * lda, sb = c.bcast_b ? 0 : brows * ldb, sc = c.M * ldc;
  const int64_t na = c.bcast_a ? arows * lda : sa * c.batch, nb = c.bcast_b ? brows * ldb : sb * c.batch;
  std::vector<float> A = pgtest::randn(static_cast<size_t>(na), seed), B = pgtest::randn(static_cast<size_t>(nb), seed + 1);
  std::vector<float> C = pgtest::randn(static_cast<size_t>(sc * c.batch), seed + 2);
  if (bf16) {
    std::vector<uint16_t> Ah(A.size()), Bh(B.size());
    for (size_t i = 0; i < A.size(); ++i) Ah[i] = to_bf16(A[i]);
    for (size_t i = 0; i < B.size(); ++i) Bh[i] = to_bf16(B[i]);
    pg::gemm_bf16(ta, tb, c.M, c.N, c.K, c.alpha, Ah.data(), lda, sa, Bh.data(), ldb, sb, c.beta, C.data(), ldc, sc,
                  c.batch);
  } else {
    pg::gemm(ta, tb, c.M, c.N, c.K, c.alpha, A.data(), lda, sa, B.data(), ldb, sb, c.beta, C.data(), ldc, sc, c.batch);
  }
  hash.add(C);
}

struct AttnCase {
  std::vector<int32_t> cu;
  int64_t H, Hkv, D;
  bool causal;
};

void hash_attention(Hash& hash, const AttnCase& c, unsigned seed) {
  const int64_t T = c.cu.back(), nseq = static_cast<int64_t>(c.cu.size()) - 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  auto q = pgtest::randn(T * c.H * c.D, seed), k = pgtest::randn(T * c.Hkv * c.D, seed + 1);
  auto v = pgtest::randn(T * c.Hkv * c.D, seed + 2), dout = pgtest::randn(T * c.H * c.D, seed + 3);
  std::vector<float> out(q.size()), lse(c.H * T), delta(c.H * T), dq(q.size()), dk(k.size()), dv(v.size());
  pg::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), c.cu.data(), nseq, T, c.H, c.Hkv, c.D,
                        scale, c.causal);
  pg::attention_backward(dq.data(), dk.data(), dv.data(), delta.data(), dout.data(), out.data(), lse.data(), q.data(),
                         k.data(), v.data(), c.cu.data(), nseq, T, c.H, c.Hkv, c.D, scale, c.causal);
  for (auto* x : {&out, &lse, &dq, &dk, &dv}) hash.add(*x);
}

uint64_t hash_level(int threads) {
  pg::set_num_threads(threads);
  Hash hash;
  unsigned seed = 1;
  std::vector<GemmCase> gemms;
  const int64_t sizes[][3] = {{1, 1, 1},   {1, 37, 5},   {37, 1, 5},    {3, 5, 1},    {14, 32, 7},
                              {15, 33, 9}, {13, 31, 17}, {29, 65, 100}, {64, 64, 64}, {2, 200, 3},
                              {1, 300, 700}, {2, 129, 513}, {3, 64, 33}, {4, 200, 1000}, {4, 1, 17}, {1, 70, 64}};
  for (auto& s : sizes) gemms.push_back({s[0], s[1], s[2]});
  gemms.push_back({2, 129, 513, 2, 2, false, true, 0.5f, 0.5f});
  gemms.push_back({131, 1003, 777});
  gemms.push_back({300, 517, 401, 3});
  gemms.push_back({45, 97, 1200});
  gemms.push_back({2100, 40, 20});
  gemms.push_back({23, 45, 67, 5, 1, false, false, 0.5f, 1.0f});
  gemms.push_back({17, 19, 23, 0, 5});
  gemms.push_back({17, 19, 23, 2, 4, false, true, 1.0f, 0.5f});
  gemms.push_back({70, 90, 50, 0, 3, true, false});
  gemms.push_back({5, 3, 400, 3, 2, false, true, 0.5f, 2.0f});
  // The few-rows path at the presets' depths: one token through a 70B down projection, a
  // 55,296-vocabulary input gradient.
  gemms.push_back({1, 96, 28672});
  gemms.push_back({4, 70, 55296, 0, 1, false, false, 1.0f, 0.5f});
  for (const GemmCase& c : gemms)
    for (int t = 0; t < 4; ++t)
      for (bool bf16 : {false, true}) hash_gemm(hash, c, (t & 1) != 0, (t & 2) != 0, bf16, seed += 3);
  const std::vector<AttnCase> attns = {
      {{0, 200}, 4, 2, 64, true},  {{0, 130}, 2, 1, 128, true}, {{0, 200}, 4, 2, 64, false},
      {{0, 77}, 8, 1, 5, true},    {{0, 65}, 4, 4, 24, true},   {{0, 33}, 8, 2, 17, false},
      {{0, 1}, 1, 1, 3, true},     {{0, 1, 70, 71, 200, 203}, 2, 1, 40, true},
      {{0, 64, 65, 193}, 4, 2, 32, false}, {{0, 5, 5, 12}, 2, 2, 8, true},
      {{0, 600}, 2, 1, 24, true},  {{0, 300, 833}, 4, 2, 16, true}, {{0, 520}, 2, 2, 8, false}};
  for (const AttnCase& c : attns) hash_attention(hash, c, seed += 5);
  return hash.h;
}

// The clone the loader picks for simd.h's PG_CLONES functions on this CPU.
const char* clone_tier() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
#endif
  return "default";
}

}  // namespace

TEST(outputs_bit_identical_to_before_the_workspace) {
  struct Golden {
    const char* tier;  // the clone tier the loader picks on this CPU (simd.h)
    pg::SimdLevel level;
    uint64_t one_thread, two_threads;  // attention's backward schedule depends on the thread count
  };
  const Golden golden[] = {{"x86-64-v4", pg::SimdLevel::AVX512, 0x2d04542d01334aa1ull, 0x0205f1e405f301b3ull},
                           {"x86-64-v4", pg::SimdLevel::AVX2, 0xafd11c37247ab704ull, 0x35ed43da8cd9a372ull},
                           {"x86-64-v4", pg::SimdLevel::Scalar, 0x3e3adc564c76a876ull, 0x0506c020c10727ecull},
                           {"x86-64-v3", pg::SimdLevel::AVX2, 0x53d20548dc4296f8ull, 0x54e687936b9963aeull},
                           {"x86-64-v3", pg::SimdLevel::Scalar, 0xc3de326b8f941878ull, 0x58de8c75e422183eull}};
  const char* tier = clone_tier();
  const bool print = std::getenv("PG_GOLDEN_PRINT") != nullptr;
  int compared = 0;
  for (const Golden& g : golden) {
    if (std::strcmp(g.tier, tier) != 0) continue;
    pg::force_simd_level(g.level);
    if (pg::simd_level() != g.level) {
      std::fprintf(stderr, "  %s: not on this CPU, skipped\n", pg::simd_level_name(g.level));
      continue;
    }
    const uint64_t one = hash_level(1), two = hash_level(2);
    ++compared;
    if (print) std::printf("%s %s 0x%016llxull, 0x%016llxull\n", tier, pg::simd_level_name(g.level), (unsigned long long)one, (unsigned long long)two);
    if (one != g.one_thread || two != g.two_threads)
      std::fprintf(stderr, "  %s %s: hashes 0x%016llx 0x%016llx, recorded 0x%016llx 0x%016llx\n", tier,
                   pg::simd_level_name(g.level), (unsigned long long)one, (unsigned long long)two,
                   (unsigned long long)g.one_thread, (unsigned long long)g.two_threads);
    CHECK(one == g.one_thread);
    CHECK(two == g.two_threads);
  }
  if (compared == 0) std::fprintf(stderr, "  no hashes recorded for clone tier %s: nothing compared\n", tier);
  pg::force_simd_level(pg::SimdLevel::AVX512);
  pg::set_num_threads(0);
}
