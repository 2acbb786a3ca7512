// Fused causal attention (FlashAttention-2 on CPU) over packed variable-length sequences with
// grouped-query heads: the entry points, work lists and dispatch. The tile loops live in
// attention_tiles.h, compiled here for baseline x86-64 and in attention_avx512.cpp /
// attention_avx2.cpp for those ISAs; pg::simd_level() picks one per call.
//
// Forward saves only lse (H, T); memory is linear in T (no (T, T) buffer anywhere). Backward
// recomputes the probabilities tile by tile from lse. dq, dk, dv are activation gradients and
// are written (=), never accumulated. No atomics on gradients: either one task owns a whole
// (sequence, kv head) and everything it writes (when that splits evenly over the threads), or
// a key-side pass over (sequence, kv head, block of key tiles) writes dk/dv and a query-side pass over
// (sequence, head, query tile) writes dq, recomputing P.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "patentgpt/workspace.h"
#include "simd.h"

#define PG_ATTN_ISA scalar
#include "attention_tiles.h"

namespace pg {

namespace attn {

void run_tasks(const Task* tasks, int64_t n, const std::function<void(const Task&)>& fn) {
  std::atomic<int64_t> next{0};
  // One chunk per thread; tasks are handed out dynamically since their costs differ.
  parallel_for(num_threads(), 1, [&](int64_t, int64_t) {
    for (int64_t t = next.fetch_add(1); t < n; t = next.fetch_add(1)) fn(tasks[t]);
  });
}

float* thread_scratch() { return thread_workspace().attn; }

}  // namespace attn

size_t attention_workspace_floats() {
  using namespace attn;
  constexpr int64_t D = kMaxHeadDim, Dp = (D + kMaxVectorWidth - 1) / kMaxVectorWidth * kMaxVectorWidth;
  return static_cast<size_t>(
      std::max({forward_scratch(D, Dp), backward_kv_scratch(D, Dp, kKvTiles), backward_q_scratch(D, Dp)}));
}

namespace attn {

// Head dims above kMaxHeadDim have no reserved scratch; the bindings refuse them, and a direct
// call gets NaN outputs rather than a write past the scratch.
bool head_dim_unsupported(int64_t D, std::initializer_list<std::pair<float*, int64_t>> outputs) {
  if (D <= kMaxHeadDim) return false;
  for (const auto& o : outputs) std::fill(o.first, o.first + o.second, std::numeric_limits<float>::quiet_NaN());
  return true;
}

}  // namespace attn

namespace {

using attn::Task;

// Largest first, so the dynamic hand-out ends with small tasks and the threads finish together.
void sort_by_cost(std::vector<Task>& tasks) {
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.cost > b.cost; });
}

// Tasks over (sequence, head, tile of `tile` rows); a tile's cost is the key (or query) tiles it
// visits: under causal masking, only those on or before (after) the diagonal.
std::vector<Task> tile_tasks(const int32_t* cu, int64_t nseq, int64_t heads, int64_t tile, bool causal,
                             bool key_side) {
  std::vector<Task> tasks;
  for (int64_t s = 0; s < nseq; ++s) {
    const int64_t len = cu[s + 1] - cu[s];
    const int64_t ntiles = (len + tile - 1) / tile;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < ntiles; ++i) {
        const int64_t visits = !causal ? ntiles : key_side ? ntiles - i : i + 1;
        tasks.push_back({static_cast<int32_t>(s), static_cast<int32_t>(h), static_cast<int32_t>(i), visits});
      }
  }
  sort_by_cost(tasks);
  return tasks;
}

struct Isa {
  void (*forward)(const attn::Args&, const Task*, int64_t);
  void (*backward_kv)(const attn::Args&, const Task*, int64_t, bool);
  void (*backward_q)(const attn::Args&, const Task*, int64_t);
};

Isa isa() {
  switch (simd_level()) {
#if PG_X86_KERNELS  // the AVX kernels are compiled on x86-64 only (native/CMakeLists.txt)
    case SimdLevel::AVX512: return {attn::avx512::forward, attn::avx512::backward_kv, attn::avx512::backward_q};
    case SimdLevel::AVX2: return {attn::avx2::forward, attn::avx2::backward_kv, attn::avx2::backward_q};
#endif
    default: return {attn::scalar::forward, attn::scalar::backward_kv, attn::scalar::backward_q};
  }
}

PG_CLONES void delta_rows(float* delta, const float* dout, const float* out, int64_t t0, int64_t t1,
                          int64_t T, int64_t H, int64_t D) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const float* a = dout + (t * H + h) * D;
      const float* b = out + (t * H + h) * D;
      float acc = 0.0f;
      for (int64_t d = 0; d < D; ++d) acc += a[d] * b[d];
      delta[h * T + t] = acc;
    }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t nseq, int64_t T, int64_t H, int64_t Hkv,
                       int64_t D, float scale, bool causal) {
  if (T <= 0 || H <= 0 || D <= 0) return;
  if (attn::head_dim_unsupported(D, {{out, T * H * D}, {lse, H * T}})) return;
  attn::Args a{};
  a.out = out, a.lse = lse, a.q = q, a.k = k, a.v = v, a.cu = cu_seqlens;
  a.nseq = nseq, a.T = T, a.H = H, a.Hkv = Hkv, a.D = D, a.scale = scale, a.causal = causal;
  std::vector<Task> tasks = tile_tasks(cu_seqlens, nseq, H, attn::kBr, causal, false);
  isa().forward(a, tasks.data(), static_cast<int64_t>(tasks.size()));
}

void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                        const float* out, const float* lse, const float* q, const float* k,
                        const float* v, const int32_t* cu_seqlens, int64_t nseq, int64_t T,
                        int64_t H, int64_t Hkv, int64_t D, float scale, bool causal) {
  if (T <= 0 || H <= 0 || D <= 0) return;
  if (attn::head_dim_unsupported(D, {{dq, T * H * D}, {dk, T * Hkv * D}, {dv, T * Hkv * D}})) return;
  parallel_for(T, std::max<int64_t>(1, 4096 / (H * D)), [&](int64_t t0, int64_t t1) {
    delta_rows(delta, dout, out, t0, t1, T, H, D);  // (H, T)
  });
  attn::Args a{};
  a.dq = dq, a.dk = dk, a.dv = dv, a.delta = delta, a.dout = dout, a.o = out, a.lse_in = lse;
  a.q = q, a.k = k, a.v = v, a.cu = cu_seqlens;
  a.nseq = nseq, a.T = T, a.H = H, a.Hkv = Hkv, a.D = D, a.scale = scale, a.causal = causal;
  const Isa fns = isa();

  // Fused (one task per (sequence, kv head), 5 tile products per tile pair) when those tasks
  // split evenly over the threads; otherwise the two passes (7 products, fine-grained).
  std::vector<Task> whole;
  int64_t total = 0;
  for (int64_t s = 0; s < nseq; ++s) {
    const int64_t len = cu_seqlens[s + 1] - cu_seqlens[s];
    const int64_t cost = (causal ? len * (len + 1) / 2 : len * len) * (H / Hkv) + 1;
    for (int64_t g = 0; g < Hkv; ++g) whole.push_back({static_cast<int32_t>(s), static_cast<int32_t>(g), 0, cost});
    total += cost * Hkv;
  }
  sort_by_cost(whole);
  const int nt = num_threads();
  std::vector<int64_t> load(static_cast<size_t>(nt), 0);  // largest-first greedy makespan
  for (const Task& t : whole) *std::min_element(load.begin(), load.end()) += t.cost;
  const double makespan = static_cast<double>(*std::max_element(load.begin(), load.end()));
  if (makespan * 5.0 <= 7.0 * 0.9 * static_cast<double>(total) / nt) {
    fns.backward_kv(a, whole.data(), static_cast<int64_t>(whole.size()), true);
    return;
  }
  std::vector<Task> kv = tile_tasks(cu_seqlens, nseq, Hkv, attn::kKvTiles * attn::kBc, causal, true);
  fns.backward_kv(a, kv.data(), static_cast<int64_t>(kv.size()), false);
  std::vector<Task> qt = tile_tasks(cu_seqlens, nseq, H, attn::kBr, causal, false);
  fns.backward_q(a, qt.data(), static_cast<int64_t>(qt.size()));
}

}  // namespace pg
