// Paged attention over an f32, a bf16 and an f16 KV cache at long context (llama-110m's heads:
// 12 of 64), one decode row and 16: milliseconds per call, best of 40, and the ratio to f32.
// A 16-bit cache halves the bytes a decode row streams. Run: build-native/bench_paged_kv16 [ctx]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "patentgpt/ops.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/runtime.h"

int main(int argc, char** argv) {
  pg::set_num_threads(2);
  const int64_t H = 12, Hkv = 12, D = 64, bs = 16, ctx = argc > 1 ? std::atol(argv[1]) : 2048;
  const int64_t maxb = (ctx + bs - 1) / bs, nb = 16 * maxb + 16, P = (ctx + 511) / 512, n = nb * bs * Hkv * D;
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  std::vector<float> kf(n), vf(n);
  for (auto& x : kf) x = normal(gen);
  for (auto& x : vf) x = normal(gen);
  std::vector<uint16_t> kb(n), vb(n), kh(n), vh(n);
  pg::cast_f32_to_bf16(kb.data(), kf.data(), n);
  pg::cast_f32_to_bf16(vb.data(), vf.data(), n);
  pg::cast_f32_to_f16(kh.data(), kf.data(), n);
  pg::cast_f32_to_f16(vh.data(), vf.data(), n);
  struct Cache {
    const char* name;
    pg::KvDType t;
    const void *k, *v;
  } caches[] = {{"f32", pg::KvDType::F32, kf.data(), vf.data()},
                {"bf16", pg::KvDType::BF16, kb.data(), vb.data()},
                {"f16", pg::KvDType::F16, kh.data(), vh.data()}};
  std::printf("| rows | context | KV cache | ms | vs f32 |\n|---:|---:|---|---:|---:|\n");
  for (int64_t M : {1, 16}) {
    std::vector<int32_t> tables(M * maxb), cu(M + 1), lens(M, static_cast<int32_t>(ctx));
    for (int64_t s = 0; s < M; ++s) {
      cu[s + 1] = static_cast<int32_t>(s + 1);
      for (int64_t b = 0; b < maxb; ++b) tables[s * maxb + b] = static_cast<int32_t>((s * maxb + 7 * b) % nb);
    }
    std::vector<float> q(M * H * D), out(M * H * D), part_out(M * H * P * D), part_stats(M * H * P * 2);
    for (auto& x : q) x = normal(gen);
    double best[3] = {1e9, 1e9, 1e9};
    for (int r = 0; r < 40; ++r)  // the types take turns: the same machine load for each
      for (int c = 0; c < 3; ++c) {
        const pg::PagedAttention a{out.data(), P > 1 ? part_out.data() : nullptr, P > 1 ? part_stats.data() : nullptr,
                                   q.data(), caches[c].k, caches[c].v, tables.data(), cu.data(), lens.data(), M, M, H, Hkv,
                                   D, bs, maxb, 512, P, 0.125f, caches[c].t};
        const auto t0 = std::chrono::steady_clock::now();
        pg::paged_attention_forward(a);
        best[c] = std::min(best[c], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    for (int c = 0; c < 3; ++c)
      std::printf("| %ld | %ld | %s | %.3f | %.2fx |\n", static_cast<long>(M), static_cast<long>(ctx), caches[c].name,
                  best[c] * 1e3, best[0] / best[c]);
  }
}
