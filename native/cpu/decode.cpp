// A decoder layer's pieces for decoding (a few rows), fused around the GEMVs of gemv.cpp: one
// parallel region per piece, the threads meeting at spin barriers between its phases; the whole
// layer (decode_layer) is one region, so a layer wakes the pool once instead of a dozen times. The arithmetic is that of the separate
// ops (rmsnorm_forward, rope_forward, swiglu_forward are called on each thread's share), so the
// fused path gives the same results as the module path up to the GEMV's summation order. A layer
// whose feed-forward is a sparse MoE (decode_layer_moe) routes its rows, groups them by expert
// and multiplies only the chosen experts, each read from its own storage (moe_experts.h).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "gemv_kernels.h"
#include "patentgpt/gemv.h"
#include "patentgpt/moe_experts.h"
#include "patentgpt/ops.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/quant.h"
#include "patentgpt/runtime.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pg {

namespace {

// All `parts` threads of a region wait until each has arrived.
class SpinBarrier {
 public:
  explicit SpinBarrier(int parts) : parts_(parts) {}
  void wait() {
    if (parts_ <= 1) return;
    const int phase = phase_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == parts_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      phase_.store(phase + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; phase_.load(std::memory_order_acquire) == phase; ++spins) {
#if defined(__x86_64__) || defined(__i386__)
      _mm_pause();
#endif
      if (spins > 2048) std::this_thread::yield();  // the other thread was descheduled
    }
  }

 private:
  const int parts_;
  std::atomic<int> count_{0};
  std::atomic<int> phase_{0};
};

// Runs body(part, parts, barrier) once on each of `parts` threads at once (parts = 1 when the
// work is small or this is already inside a parallel region).
template <class Body>
void region(bool parallel, Body&& body) {
  const int nt = parallel ? num_threads() : 1;
  if (nt <= 1) {
    SpinBarrier one(1);
    body(0, 1, one);
    return;
  }
  SpinBarrier barrier(nt);
  parallel_for(nt, 1, [&](int64_t b, int64_t e) {
    if (e - b == 1) {
      body(static_cast<int>(b), nt, barrier);
    } else {  // nested: the pool ran the whole range on this thread
      SpinBarrier one(1);
      body(0, 1, one);
    }
  });
}

inline int64_t share(int64_t n, int part, int parts) { return n * part / parts; }

// As gemv.cpp: below this much weight, the pool costs more than it saves.
bool worth_threads(int64_t M, int64_t weights) { return 4.0 * weights >= 256 * 1024 || 2.0 * M * weights >= 4e6; }

void norm_rows(float* h, const float* x, const float* w, float eps, int64_t M, int64_t C, int part, int parts) {
  const int64_t r0 = share(M, part, parts), r1 = share(M, part + 1, parts);
  float rstd[64];
  for (int64_t r = r0; r < r1; r += 64) {
    const int64_t n = std::min<int64_t>(64, r1 - r);
    rmsnorm_forward(h + r * C, rstd, x + r * C, w, n, C, eps);
  }
}

// Rows [j0, j1) of t on this thread, its weights f32 or quantized rows of type wt (t.w points at
// them; the quantized GEMV quantizes x itself, as llama.cpp does before its dot products).
void weight_rows(QuantType wt, const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0,
                 int64_t j1) {
  if (wt == QuantType::F32)
    gemv_rows(t, x, ldx, M, K, j0, j1);
  else if (M > 0 && j0 < j1)
    quant_gemv_rows(wt, reinterpret_cast<const uint8_t*>(t.w), t.y, t.ldy, t.accumulate, x, ldx, M, K, j0, j1);
}

// This thread's columns [begin, end) of N, split by whole GEMV tiles (empty when it has none).
struct Cols {
  int64_t begin, end;
};
inline Cols tile_share(int64_t N, int part, int parts) {
  using gemv_detail::kTileRows;
  const int64_t tiles = (N + kTileRows - 1) / kTileRows;
  return {std::min(N, share(tiles, part, parts) * kTileRows), std::min(N, share(tiles, part + 1, parts) * kTileRows)};
}

// y (M, N) += x (M, K) @ W (N, K)^T over this thread's tiles of y's columns.
void linear_share(int part, int parts, float* y, const float* x, const float* w, int64_t M, int64_t N, int64_t K,
                  QuantType wt) {
  const Cols c = tile_share(N, part, parts);
  weight_rows(wt, GemvTarget{w, N, K, y, N, true}, x, K, M, K, c.begin, c.end);
}

// g = silu(x @ w1^T) * (x @ w3^T) on columns [j0, j1) of F, for `rows` rows of x (M, C); u (rows, F)
// holds the up projection.
void swiglu_cols(float* g, float* u, const float* x, const float* w1, const float* w3, int64_t rows, int64_t C,
                 int64_t F, int64_t j0, int64_t j1, QuantType wt = QuantType::F32) {
  weight_rows(wt, GemvTarget{w1, F, C, g, F, false}, x, C, rows, C, j0, j1);
  weight_rows(wt, GemvTarget{w3, F, C, u, F, false}, x, C, rows, C, j0, j1);
  for (int64_t r = 0; r < rows; ++r) swiglu_forward(g + r * F + j0, g + r * F + j0, u + r * F + j0, j1 - j0);
}

// Phase helpers: each runs this thread's share (part of parts) of one piece, the threads meeting
// at `barrier` where a phase reads what the others wrote.

// h = rmsnorm(x); q, k, v with RoPE; k, v into the caches. Split by heads.
void qkv_share(int part, int parts, SpinBarrier& barrier, const DecodeQkvArgs& a) {
  norm_rows(a.h, a.x, a.norm_w, a.eps, a.M, a.C, part, parts);
  barrier.wait();
  const int64_t D = a.D, H = a.H, Hkv = a.Hkv;
  const int64_t units = H + 2 * Hkv;  // heads of q, then k, then v: D rows of weights each
  const int64_t u0 = share(units, part, parts), u1 = share(units, part + 1, parts);
  // This thread's heads of each projection: [a, b) of q, of k, of v.
  struct Part {
    const float* w;
    float* y;
    int64_t heads, first;
  } parts3[3] = {{a.wq, a.q, H, 0}, {a.wk, a.k, Hkv, H}, {a.wv, a.v, Hkv, H + Hkv}};
  for (int i = 0; i < 3; ++i) {
    const Part& p = parts3[i];
    const int64_t h0 = std::max(u0, p.first) - p.first, h1 = std::min(u1, p.first + p.heads) - p.first;
    if (h0 >= h1) continue;
    const GemvTarget t{p.w, p.heads * D, a.C, p.y, p.heads * D, false};
    weight_rows(a.wtype, t, a.h, a.C, a.M, a.C, h0 * D, h1 * D);
    for (int64_t m = 0; m < a.M; ++m) {
      float* row = p.y + m * p.heads * D + h0 * D;
      if (i < 2) rope_forward(row, row, a.pos + m, 1, h1 - h0, D, a.theta, a.pos_scale);
      const int64_t s = a.slot_mapping[m];
      if (i > 0 && s >= 0)  // converted to the cache's element type
        kv_store_rows(i == 1 ? a.k_cache : a.v_cache, a.kv_dtype, (s * Hkv + h0) * D, row, (h1 - h0) * D);
    }
  }
}

// x += down(silu(gate(h)) * up(h)), h = rmsnorm(x). Gate/up split by their rows, down by x's columns.
void mlp_share(int part, int parts, SpinBarrier& barrier, float* x, const DecodeMlpArgs& a) {
  const int64_t M = a.M, C = a.C, F = a.F;
  norm_rows(a.h, x, a.norm_w, a.eps, M, C, part, parts);
  barrier.wait();
  // Gate and up over the same rows, then silu(gate) * up on them, into g.
  const Cols j = tile_share(F, part, parts);
  if (j.begin < j.end) swiglu_cols(a.g, a.u, a.h, a.wg, a.wu, M, C, F, j.begin, j.end, a.wtype);
  barrier.wait();
  // x += g @ Wd^T over this thread's columns of x.
  linear_share(part, parts, x, a.g, a.wd, M, C, F, a.wtype);
}

// decode_qkv, paged attention of q over the caches into attn.out, then x += attn.out @ wo^T.
void attention_share(int part, int parts, SpinBarrier& barrier, float* x, const DecodeQkvArgs& qkv,
                     const PagedAttention& attn, const float* wo) {
  qkv_share(part, parts, barrier, qkv);
  barrier.wait();
  paged_attention_tasks(attn, share(attn.tasks(), part, parts), share(attn.tasks(), part + 1, parts));
  if (attn.merges() > 0) {
    barrier.wait();
    paged_attention_merges(attn, share(attn.merges(), part, parts), share(attn.merges(), part + 1, parts));
  }
  barrier.wait();
  linear_share(part, parts, x, attn.out, wo, qkv.M, qkv.C, qkv.H * qkv.D, qkv.wtype);  // x += o @ Wo^T
}

// The sparse MoE feed-forward (moe_experts.h): x += the routed experts' weighted outputs plus
// the shared experts'. Phases: norm (rows) | router logits (E columns) | routing and the counting
// sort (one thread: M * k slots) | gather h into expert order (positions) | gate and up of every
// group with rows, as if their matrices were stacked (F tiles) | down into y and the weighted
// combine into x (C columns: each thread owns its columns of y and x, so no further barrier).
// A group is a routed expert with rows, or a shared expert (all M rows, reading h itself).
struct MoeScratch {
  float *logits, *rw, *xs, *g, *u, *y;  // (M, E), (M, k), (M * k, C), (R, F) twice, (R, C)
  int32_t *idx, *order, *slot_pos, *offsets;  // (M * k) three times, (E + 1)
  int64_t R;  // rows of g, u, y: M * k routed, then S * M shared
};

MoeScratch moe_scratch(const DecodeMoeArgs& a) {
  const int64_t Mk = a.M * a.k, R = Mk + a.S * a.M;
  MoeScratch s{};
  float* f = a.scratch;
  s.logits = f, f += a.M * a.E;
  s.rw = f, f += Mk;
  s.xs = f, f += Mk * a.C;
  s.g = f, f += R * a.F;
  s.u = f, f += R * a.F;
  s.y = f;
  int32_t* i = a.index;
  s.idx = i, i += Mk;
  s.order = i, i += Mk;
  s.slot_pos = i, i += Mk;
  s.offsets = i;
  s.R = R;
  return s;
}

// Group q of the E + S: its first row in g/u/y, its row count and its input rows (ld C).
struct MoeGroup {
  int64_t r0, rows;
  const float* in;
  const float* const* w;  // w1, w3, w2
};
inline MoeGroup moe_group(const DecodeMoeArgs& a, const MoeScratch& s, int64_t q) {
  if (q < a.E) {
    const int64_t r0 = s.offsets[q];
    return {r0, s.offsets[q + 1] - r0, s.xs + r0 * a.C, a.experts + 3 * q};
  }
  const int64_t r0 = a.M * a.k + (q - a.E) * a.M;
  return {r0, a.M, a.h, a.experts + 3 * q};
}

void moe_share(int part, int parts, SpinBarrier& barrier, float* x, const DecodeMoeArgs& a) {
  using gemv_detail::kTileRows;
  const int64_t M = a.M, C = a.C, F = a.F, E = a.E, k = a.k, Mk = M * k, groups = a.E + a.S;
  const MoeScratch s = moe_scratch(a);
  norm_rows(a.h, x, a.norm_w, a.eps, M, C, part, parts);
  barrier.wait();
  {  // router logits (M, E) = h @ gate^T, by tiles of E
    const Cols j = tile_share(E, part, parts);
    if (j.begin < j.end) gemv_rows(GemvTarget{a.gate, E, C, s.logits, E, false}, a.h, C, M, C, j.begin, j.end);
  }
  barrier.wait();
  if (part == 0) {  // top-k, renormalised (moeRouter's rule), then the slots sorted by expert
    for (int64_t m = 0; m < M; ++m) moe_router_row(s.idx + m * k, s.rw + m * k, s.logits + m * E, E, k, true);
    moe_dispatch(s.order, s.slot_pos, s.offsets, s.idx, Mk, E);
  }
  barrier.wait();
  for (int64_t p = share(Mk, part, parts), p1 = share(Mk, part + 1, parts); p < p1; ++p)
    std::memcpy(s.xs + p * C, a.h + (s.order[p] / k) * C, static_cast<size_t>(C) * sizeof(float));
  barrier.wait();
  {  // g = silu(h_q @ w1^T) * (h_q @ w3^T) for every group with rows: F tiles of the groups, stacked
    const int64_t tilesF = (F + kTileRows - 1) / kTileRows;
    int64_t active = 0;
    for (int64_t q = 0; q < groups; ++q) active += moe_group(a, s, q).rows > 0;
    const int64_t u0 = share(active * tilesF, part, parts), u1 = share(active * tilesF, part + 1, parts);
    int64_t seen = 0;  // active groups before q
    for (int64_t q = 0; q < groups && seen * tilesF < u1; ++q) {
      const MoeGroup g = moe_group(a, s, q);
      if (g.rows == 0) continue;
      const int64_t t0 = std::max(u0, seen * tilesF) - seen * tilesF, t1 = std::min(u1, (seen + 1) * tilesF) - seen * tilesF;
      ++seen;
      if (t0 >= t1) continue;
      swiglu_cols(s.g + g.r0 * F, s.u + g.r0 * F, g.in, g.w[0], g.w[1], g.rows, C, F, std::min(F, t0 * kTileRows),
                  std::min(F, t1 * kTileRows));
    }
  }
  barrier.wait();
  // y = g_q @ w2^T on this thread's columns of C, then x += the rows' weighted sums on them.
  const auto [c0, c1] = tile_share(C, part, parts);
  if (c0 >= c1) return;
  for (int64_t q = 0; q < groups; ++q) {
    const MoeGroup g = moe_group(a, s, q);
    if (g.rows > 0) gemv_rows(GemvTarget{g.w[2], C, F, s.y + g.r0 * C, C, false}, s.g + g.r0 * F, F, g.rows, F, c0, c1);
  }
  // Per row, moeCombine's order: the k choices from the first, then each shared expert, summed
  // in place in the row of the first choice (rows are the slots' own; columns this thread's).
  const int64_t n = c1 - c0;
  for (int64_t m = 0; m < M; ++m) {
    float* acc = s.y + static_cast<int64_t>(s.slot_pos[m * k]) * C + c0;
    const float w0 = s.rw[m * k];
    for (int64_t c = 0; c < n; ++c) acc[c] *= w0;
    for (int64_t j = 1; j < k; ++j) {
      const float* yj = s.y + static_cast<int64_t>(s.slot_pos[m * k + j]) * C + c0;
      const float wj = s.rw[m * k + j];
      for (int64_t c = 0; c < n; ++c) acc[c] += wj * yj[c];
    }
    for (int64_t q = 0; q < a.S; ++q) {
      const float* ys = s.y + (Mk + q * M + m) * C + c0;
      for (int64_t c = 0; c < n; ++c) acc[c] += ys[c];
    }
    float* xr = x + m * C + c0;
    for (int64_t c = 0; c < n; ++c) xr[c] += acc[c];
  }
}

}  // namespace

void decode_qkv(const DecodeQkvArgs& a) {
  if (a.M <= 0) return;
  region(worth_threads(a.M, (a.H + 2 * a.Hkv) * a.D * a.C),
         [&](int part, int parts, SpinBarrier& barrier) { qkv_share(part, parts, barrier, a); });
}

void decode_swiglu_mlp(float* x, const DecodeMlpArgs& a) {
  if (a.M <= 0) return;
  region(worth_threads(a.M, 3 * a.F * a.C),
         [&](int part, int parts, SpinBarrier& barrier) { mlp_share(part, parts, barrier, x, a); });
}

void decode_layer(float* x, const DecodeQkvArgs& qkv, const PagedAttention& attn, const float* wo,
                  const DecodeMlpArgs& mlp) {
  if (qkv.M <= 0) return;
  region(true, [&](int part, int parts, SpinBarrier& barrier) {
    attention_share(part, parts, barrier, x, qkv, attn, wo);
    barrier.wait();
    mlp_share(part, parts, barrier, x, mlp);
  });
}

int64_t decode_moe_scratch_floats(int64_t M, int64_t C, int64_t F, int64_t E, int64_t k, int64_t S) {
  const int64_t Mk = M * k, R = Mk + S * M;
  return M * E + Mk + Mk * C + 2 * R * F + R * C;
}

int64_t decode_moe_index_ints(int64_t M, int64_t E, int64_t k) { return 3 * M * k + E + 1; }

void decode_moe_ffn(float* x, const DecodeMoeArgs& a) {
  if (a.M <= 0) return;
  const int64_t read = std::min(a.E, a.M * a.k) + a.S;  // experts at most: their 3 F x C matrices each
  region(worth_threads(a.M, 3 * read * a.F * a.C + a.E * a.C),
         [&](int part, int parts, SpinBarrier& barrier) { moe_share(part, parts, barrier, x, a); });
}

void decode_layer_moe(float* x, const DecodeQkvArgs& qkv, const PagedAttention& attn, const float* wo,
                      const DecodeMoeArgs& moe) {
  if (qkv.M <= 0) return;
  region(true, [&](int part, int parts, SpinBarrier& barrier) {
    attention_share(part, parts, barrier, x, qkv, attn, wo);
    barrier.wait();
    moe_share(part, parts, barrier, x, moe);
  });
}

void decode_logits(float* logits, float* h, const float* x, const float* norm_w, float eps, const float* w, int64_t M,
                   int64_t C, int64_t V, QuantType wtype) {
  if (M <= 0) return;
  region(worth_threads(M, V * C), [&](int part, int parts, SpinBarrier& barrier) {
    norm_rows(h, x, norm_w, eps, M, C, part, parts);
    barrier.wait();
    const Cols j = tile_share(V, part, parts);
    weight_rows(wtype, GemvTarget{w, V, C, logits, V, false}, h, C, M, C, j.begin, j.end);
  });
}

}  // namespace pg
