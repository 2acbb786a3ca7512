// Fused attention on CUDA in the FlashAttention-2 manner: the twin of native/cpu/attention.cpp
// (same buffers, same packed variable-length sequences, grouped-query heads, causal or not),
// checked against it by the op suites. Q, K, V, O and the gradients in f32, bf16 or fp16 (the
// kernels are templates on that element type T: tiles are converted to f32 as they are loaded into
// shared memory, outputs rounded to nearest even as they are stored), softmax statistics, the
// accumulation, lse and delta always in f32.
//
// One structure serves all three kernels: a block of kAttnWarps warps owns kAttnRows rows (4 per
// warp) and walks tiles of kAttnCols columns through shared memory, one column per lane. A lane
// computes the dot products of its column with the warp's rows (the rows read by broadcast, the
// column tile padded to D + 4 floats per row: float4 reads on distinct banks when D is a multiple
// of 4, see cuda_plan::attention_col_stride); then the warp
// accumulates columns into its rows' outputs, each lane holding the head-dim slice
// d = lane + 32 c. Forward and dq: rows are queries, columns keys. dk/dv: rows are keys, columns
// queries, summed over the query heads of the group (no atomics: every output element has one
// owner, so results are deterministic). Forward saves lse (H, T) = m + log(l), natural log, as
// the CPU op does; backward recomputes P from it.
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "attention_common.cuh"
#include "half16.cuh"
#include "patentgpt/cuda_attention.h"
#include "patentgpt/cuda_index_check.h"
#include "patentgpt/cuda_plan.h"

namespace pg::cuda {

namespace {

using namespace pg::cuda_plan;

constexpr int R = kAttnRowsPerWarp;
constexpr int BC = kAttnCols;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Shape {
  const int32_t* cu;  // (nseq + 1) on the device
  const int* halt;    // non-zero: an index check failed (cuda_index_check.h); touch nothing
  int64_t T, nseq;
  int H, Hkv, D;
  float scale;
  bool causal;
};

// Block x of the grid over the packed row-tile space, found on the device from cu (no host copy
// of cu_seqlens sizes the grid): sequence s owns the kAttnRows-row tiles from cu[s] / kAttnRows + s,
// ceil(len / kAttnRows) of them, which never reach the next sequence's first, so the space has at
// most T / kAttnRows + nseq tiles. Within a sequence the tiles go heaviest first as in
// attention_block_tile. False for a block between two sequences' tiles (or when a check halted).
__device__ __forceinline__ bool packed_tile(const Shape& a, int64_t x, bool last_first, int64_t* seq, int64_t* tile) {
  if (*a.halt) return false;
  int64_t lo = 0, hi = a.nseq;  // the last s with cu[s] / kAttnRows + s <= x lies in [lo, hi)
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (a.cu[mid] / kAttnRows + mid <= x) lo = mid;
    else hi = mid;
  }
  const int64_t i = x - (a.cu[lo] / kAttnRows + lo), n = (a.cu[lo + 1] - a.cu[lo] + kAttnRows - 1) / kAttnRows;
  if (i >= n) return false;
  *seq = lo;
  *tile = last_first ? n - 1 - i : i;
  return true;
}

// rows (n, D) of a (T, heads, D) tensor from token t0, head h into dst (f32) with row stride `ld`;
// zeros for rows at or past `valid`.
template <typename T>
__device__ __forceinline__ void load_rows(float* dst, int ld, const T* src, int64_t t0, int heads, int h, int D,
                                          int n, int valid) {
  const T* base = src + (t0 * heads + h) * static_cast<int64_t>(D);
  const int stride = heads * D;  // < 2^31: the bindings bound T * H * D, and heads * D <= that
  for (int i = threadIdx.x; i < n * D; i += kAttnThreads) {
    const int r = i / D, d = i - r * D;
    dst[r * ld + d] = r < valid ? to_f32(base[static_cast<int64_t>(r) * stride + d]) : 0.0f;
  }
}

// s[r] += rows[r * D + d] * col[d] over d for the warp's R rows (read by broadcast) and this
// lane's column: float4 reads when D is a multiple of 4 (rows and padded columns are then 16-byte
// aligned), single floats otherwise.
__device__ __forceinline__ void dot_rows(float (&s)[R], const float* rows, const float* col, int D) {
  if ((D & 3) == 0) {
#pragma unroll 2
    for (int d = 0; d < D; d += 4) {
      const float4 c = *reinterpret_cast<const float4*>(col + d);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float4 x = *reinterpret_cast<const float4*>(rows + r * D + d);
        s[r] = fmaf(x.x, c.x, fmaf(x.y, c.y, fmaf(x.z, c.z, fmaf(x.w, c.w, s[r]))));
      }
    }
  } else {
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      const float c = col[d];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = fmaf(rows[r * D + d], c, s[r]);
    }
  }
}

// acc[r][c] += w[r] of lane j * rows[j * ld + lane + 32 c] over the tile's cols rows: each lane's
// weight (a probability or a ds) broadcast in turn to the warp, which walks row j's D values.
template <int NC>
__device__ __forceinline__ void accumulate_rows(float (&acc)[R][NC], const float (&w)[R], const float* rows, int ld,
                                                int cols, int D, int lane) {
  for (int j = 0; j < cols; ++j) {
    const float* rj = rows + j * ld;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float wj = __shfl_sync(0xffffffffu, w[r], j);
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int d = lane + 32 * c;
        if (d < D) acc[r][c] = fmaf(wj, rj[d], acc[r][c]);
      }
    }
  }
}

// ---- forward: out (T, H, D) = softmax(scale q k^T) v per sequence, lse (H, T) ----
// dynamic smem: (kAttnRows * 256 + 2 * kAttnCols * 260) * 4 bytes at most (attention_forward_smem_floats)
template <typename T, int DMAX>
__global__ void __launch_bounds__(kAttnThreads, 1) attention_forward_kernel(T* __restrict__ out,
                                                                         float* __restrict__ lse,
                                                                         const T* __restrict__ q,
                                                                         const T* __restrict__ k,
                                                                         const T* __restrict__ v, Shape a) {
  constexpr int NC = DMAX / 32;
  extern __shared__ float4 smem4[];  // 16-byte aligned
  float* smem = reinterpret_cast<float*>(smem4);
  const int D = a.D, Dp = static_cast<int>(attention_col_stride(D));
  float* qs = smem;                 // (kAttnRows, D)
  float* ks = qs + kAttnRows * D;   // (BC, D + 4)
  float* vs = ks + BC * Dp;         // (BC, D + 4)
  int64_t seq, tile;
  if (!packed_tile(a, blockIdx.x, true, &seq, &tile)) return;
  const int h = blockIdx.y, hk = h / (a.H / a.Hkv);
  const int64_t s0 = a.cu[seq];
  const int len = a.cu[seq + 1] - a.cu[seq], r0 = static_cast<int>(tile) * kAttnRows;
  if (r0 >= len) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rows = min(len - r0, kAttnRows);
  load_rows(qs, D, q, s0 + r0, a.H, h, D, kAttnRows, rows);
  const float sl2 = a.scale * kLog2e;  // scores in log2 units: exp2 instead of exp
  float m[R], l[R], acc[R][NC];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;
  }
  const int kend = static_cast<int>(attention_key_end(r0, len, a.causal));
  for (int c0 = 0; c0 < kend; c0 += BC) {
    const int cols = min(kend - c0, BC);
    __syncthreads();  // the previous tile is consumed
    load_rows(ks, Dp, k, s0 + c0, a.Hkv, hk, D, BC, cols);
    load_rows(vs, Dp, v, s0 + c0, a.Hkv, hk, D, BC, cols);
    __syncthreads();
    float s[R];
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = 0.0f;
    dot_rows(s, qs + warp * R * D, ks + lane * Dp, D);
    const int col = c0 + lane;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int row = r0 + warp * R + r;
      const bool ok = lane < cols && row < len && (!a.causal || col <= row);
      s[r] = ok ? s[r] * sl2 : -INFINITY;
      const float mnew = fmaxf(m[r], warp_max(s[r]));
      const float base = mnew == -INFINITY ? 0.0f : mnew;  // a row with no key yet stays at zero
      const float p = exp2f(s[r] - base), corr = exp2f(m[r] - base);
      l[r] = l[r] * corr + warp_sum(p);
      m[r] = mnew;
#pragma unroll
      for (int c = 0; c < NC; ++c) acc[r][c] *= corr;
      s[r] = p;
    }
    accumulate_rows(acc, s, vs, Dp, cols, D, lane);  // acc += p v
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int row = r0 + warp * R + r;
    if (row >= len) continue;
    const int64_t t = s0 + row;
    const float inv = 1.0f / l[r];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      if (d < D) out[(t * a.H + h) * static_cast<int64_t>(D) + d] = from_f32<T>(acc[r][c] * inv);
    }
    if (lane == 0) lse[h * a.T + t] = (m[r] + log2f(l[r])) * kLn2;
  }
}

// ---- backward, step 1: delta (H, T) = rowsum(dout * out), one warp per (token, head) ----
template <typename E>
__global__ void __launch_bounds__(kAttnThreads, 1) attention_delta_kernel(float* __restrict__ delta,
                                                                       const E* __restrict__ dout,
                                                                       const E* __restrict__ out, int64_t T,
                                                                       int H, int D) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * kAttnThreads + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= T * H) return;
  const E* g = dout + row * D;
  const E* o = out + row * D;
  float acc = 0.0f;
  for (int d = lane; d < D; d += 32) acc = fmaf(to_f32(g[d]), to_f32(o[d]), acc);
  acc = warp_sum(acc);
  const int64_t t = row / H, h = row - t * H;
  if (lane == 0) delta[h * T + t] = acc;
}

// ---- backward, step 2: dq (T, H, D) = scale * sum_j ds_ij k_j, ds = p (dout.v - delta) ----
// dynamic smem: (2 * kAttnRows * 256 + 2 * kAttnCols * 260) * 4 bytes at most (attention_dq_smem_floats)
template <typename T, int DMAX>
__global__ void __launch_bounds__(kAttnThreads, 1) attention_dq_kernel(T* __restrict__ dq,
                                                                    const T* __restrict__ dout,
                                                                    const float* __restrict__ lse,
                                                                    const float* __restrict__ delta,
                                                                    const T* __restrict__ q,
                                                                    const T* __restrict__ k,
                                                                    const T* __restrict__ v, Shape a) {
  constexpr int NC = DMAX / 32;
  extern __shared__ float4 smem4[];  // 16-byte aligned
  float* smem = reinterpret_cast<float*>(smem4);
  const int D = a.D, Dp = static_cast<int>(attention_col_stride(D));
  float* qs = smem;                  // (kAttnRows, D)
  float* gs = qs + kAttnRows * D;    // (kAttnRows, D): dout rows
  float* ks = gs + kAttnRows * D;    // (BC, D + 4)
  float* vs = ks + BC * Dp;          // (BC, D + 4)
  int64_t seq, tile;
  if (!packed_tile(a, blockIdx.x, true, &seq, &tile)) return;
  const int h = blockIdx.y, hk = h / (a.H / a.Hkv);
  const int64_t s0 = a.cu[seq];
  const int len = a.cu[seq + 1] - a.cu[seq], r0 = static_cast<int>(tile) * kAttnRows;
  if (r0 >= len) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rows = min(len - r0, kAttnRows);
  load_rows(qs, D, q, s0 + r0, a.H, h, D, kAttnRows, rows);
  load_rows(gs, D, dout, s0 + r0, a.H, h, D, kAttnRows, rows);
  const float sl2 = a.scale * kLog2e;
  float L[R], dl[R], acc[R][NC];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int row = r0 + warp * R + r;
    L[r] = row < len ? lse[h * a.T + s0 + row] * kLog2e : 0.0f;
    dl[r] = row < len ? delta[h * a.T + s0 + row] : 0.0f;
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;
  }
  const int kend = static_cast<int>(attention_key_end(r0, len, a.causal));
  for (int c0 = 0; c0 < kend; c0 += BC) {
    const int cols = min(kend - c0, BC);
    __syncthreads();
    load_rows(ks, Dp, k, s0 + c0, a.Hkv, hk, D, BC, cols);
    load_rows(vs, Dp, v, s0 + c0, a.Hkv, hk, D, BC, cols);
    __syncthreads();
    float s[R], dp[R];
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.0f;
    dot_rows(s, qs + warp * R * D, ks + lane * Dp, D);   // q.k
    dot_rows(dp, gs + warp * R * D, vs + lane * Dp, D);  // dout.v
    const int col = c0 + lane;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int row = r0 + warp * R + r;
      const bool ok = lane < cols && row < len && (!a.causal || col <= row);
      const float p = ok ? exp2f(s[r] * sl2 - L[r]) : 0.0f;
      s[r] = p * (dp[r] - dl[r]);  // ds
    }
    accumulate_rows(acc, s, ks, Dp, cols, D, lane);  // acc += ds k
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int row = r0 + warp * R + r;
    if (row >= len) continue;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      if (d < D) dq[((s0 + row) * a.H + h) * static_cast<int64_t>(D) + d] = from_f32<T>(acc[r][c] * a.scale);
    }
  }
}

// ---- backward, step 3: dk, dv (T, Hkv, D) over the group's query heads ----
// dv_j = sum_i p_ij dout_i, dk_j = scale * sum_i ds_ij q_i; rows are keys, columns queries.
// dynamic smem: (2 * kAttnRows * 256 + 2 * kAttnCols * 260 + 2 * kAttnCols) * 4 bytes at most
template <typename T, int DMAX>
__global__ void __launch_bounds__(kAttnThreads, 1) attention_dkdv_kernel(T* __restrict__ dk,
                                                                      T* __restrict__ dv,
                                                                      const T* __restrict__ dout,
                                                                      const float* __restrict__ lse,
                                                                      const float* __restrict__ delta,
                                                                      const T* __restrict__ q,
                                                                      const T* __restrict__ k,
                                                                      const T* __restrict__ v, Shape a) {
  constexpr int NC = DMAX / 32;
  extern __shared__ float4 smem4[];  // 16-byte aligned
  float* smem = reinterpret_cast<float*>(smem4);
  const int D = a.D, Dp = static_cast<int>(attention_col_stride(D));
  float* ks = smem;                  // (kAttnRows, D)
  float* vs = ks + kAttnRows * D;    // (kAttnRows, D)
  float* qs = vs + kAttnRows * D;    // (BC, D + 4)
  float* gs = qs + BC * Dp;          // (BC, D + 4): dout
  float* ls = gs + BC * Dp;          // (BC): lse in log2 units
  float* es = ls + BC;               // (BC): delta
  int64_t seq, tile;
  if (!packed_tile(a, blockIdx.x, false, &seq, &tile)) return;
  const int hk = blockIdx.y, group = a.H / a.Hkv;
  const int64_t s0 = a.cu[seq];
  const int len = a.cu[seq + 1] - a.cu[seq], k0 = static_cast<int>(tile) * kAttnRows;
  if (k0 >= len) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rows = min(len - k0, kAttnRows);
  load_rows(ks, D, k, s0 + k0, a.Hkv, hk, D, kAttnRows, rows);
  load_rows(vs, D, v, s0 + k0, a.Hkv, hk, D, kAttnRows, rows);
  const float sl2 = a.scale * kLog2e;
  float adk[R][NC], adv[R][NC];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) adk[r][c] = adv[r][c] = 0.0f;
  const int qbegin = static_cast<int>(attention_query_begin(k0, a.causal));
  for (int h = hk * group; h < (hk + 1) * group; ++h) {
    for (int c0 = qbegin; c0 < len; c0 += BC) {
      const int cols = min(len - c0, BC);
      __syncthreads();
      load_rows(qs, Dp, q, s0 + c0, a.H, h, D, BC, cols);
      load_rows(gs, Dp, dout, s0 + c0, a.H, h, D, BC, cols);
      if (threadIdx.x < BC) {
        const bool in = static_cast<int>(threadIdx.x) < cols;
        ls[threadIdx.x] = in ? lse[h * a.T + s0 + c0 + threadIdx.x] * kLog2e : 0.0f;
        es[threadIdx.x] = in ? delta[h * a.T + s0 + c0 + threadIdx.x] : 0.0f;
      }
      __syncthreads();
      float p[R], ds[R];
#pragma unroll
      for (int r = 0; r < R; ++r) p[r] = ds[r] = 0.0f;
      dot_rows(p, ks + warp * R * D, qs + lane * Dp, D);   // s = q.k
      dot_rows(ds, vs + warp * R * D, gs + lane * Dp, D);  // dp = dout.v
      const int col = c0 + lane;  // this lane's query
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int key = k0 + warp * R + r;
        const bool ok = lane < cols && key < len && (!a.causal || key <= col);
        p[r] = ok ? exp2f(p[r] * sl2 - ls[lane]) : 0.0f;
        ds[r] = p[r] * (ds[r] - es[lane]);
      }
      for (int j = 0; j < cols; ++j) {
        const float* qj = qs + j * Dp;
        const float* gj = gs + j * Dp;
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float pj = __shfl_sync(0xffffffffu, p[r], j), dsj = __shfl_sync(0xffffffffu, ds[r], j);
#pragma unroll
          for (int c = 0; c < NC; ++c) {
            const int d = lane + 32 * c;
            if (d < D) {
              adv[r][c] = fmaf(pj, gj[d], adv[r][c]);
              adk[r][c] = fmaf(dsj, qj[d], adk[r][c]);
            }
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int key = k0 + warp * R + r;
    if (key >= len) continue;
    const int64_t base = ((s0 + key) * a.Hkv + hk) * static_cast<int64_t>(D);
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      if (d < D) {
        dk[base + d] = from_f32<T>(adk[r][c] * a.scale);
        dv[base + d] = from_f32<T>(adv[r][c]);
      }
    }
  }
}

std::string describe_call(const char* op, int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D) {
  return describe(op, {{"nseq", nseq}, {"T", T}, {"H", H}, {"Hkv", Hkv}, {"D", D}});
}

template <typename T, int DMAX>
void launch_forward(const AttentionPlan& p, T* out, float* lse, const T* q, const T* k, const T* v, const Shape& s,
                    const std::string& what) {
  allow_smem(attention_forward_kernel<T, DMAX>, p.smem_forward, what);
  attention_forward_kernel<T, DMAX><<<dim3(static_cast<unsigned>(p.grid_x), static_cast<unsigned>(p.grid_y_q)),
                                      kAttnThreads, p.smem_forward, st()>>>(out, lse, q, k, v, s);
}

template <typename T, int DMAX>
void launch_backward(const AttentionPlan& p, T* dq, T* dk, T* dv, const T* dout, const float* lse, const float* delta,
                     const T* q, const T* k, const T* v, const Shape& s, const std::string& what) {
  allow_smem(attention_dq_kernel<T, DMAX>, p.smem_dq, what);
  allow_smem(attention_dkdv_kernel<T, DMAX>, p.smem_dkdv, what);
  attention_dq_kernel<T, DMAX><<<dim3(static_cast<unsigned>(p.grid_x), static_cast<unsigned>(p.grid_y_q)),
                                 kAttnThreads, p.smem_dq, st()>>>(dq, dout, lse, delta, q, k, v, s);
  attention_dkdv_kernel<T, DMAX><<<dim3(static_cast<unsigned>(p.grid_x), static_cast<unsigned>(p.grid_y_kv)),
                                   kAttnThreads, p.smem_dkdv, st()>>>(dk, dv, dout, lse, delta, q, k, v, s);
}

// The plan of one sequence of T tokens (head-dim bucket, shared memory, heads), its grid widened to
// the packed tile space (packed_tile): sized from T and nseq only, never from cu_seqlens' values.
AttentionPlan plan_or_throw(int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D, const std::string& what) {
  AttentionPlan plan;
  const int32_t one[2] = {0, static_cast<int32_t>(T)};
  std::string err = plan_attention(one, 1, H, Hkv, D, plan);
  plan.grid_x = nseq == 0 ? 0 : T / kAttnRows + nseq;
  if (err.empty() && plan.grid_x > 0x7fffffff)
    err = "T / 16 + nseq = " + std::to_string(plan.grid_x) + " blocks exceed the grid on cuda";
  if (!err.empty()) throw Error(what + ": " + err, /*bad_argument=*/true);
  return plan;
}

template <typename T>
void forward(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* cu,
             int64_t nseq, int64_t T_, int64_t H, int64_t Hkv, int64_t D, float scale, bool causal, const char* op) {
  const std::string what = describe_call(op, nseq, T_, H, Hkv, D);
  const AttentionPlan plan = plan_or_throw(nseq, T_, H, Hkv, D, what);
  if (plan.grid_x == 0 || T_ == 0) return;
  const Shape s{cu, index_halt(), T_, nseq, static_cast<int>(H), static_cast<int>(Hkv), static_cast<int>(D),
                scale, causal};
  switch (plan.dmax) {
    case 64: launch_forward<T, 64>(plan, out, lse, q, k, v, s, what); break;
    case 128: launch_forward<T, 128>(plan, out, lse, q, k, v, s, what); break;
    default: launch_forward<T, 256>(plan, out, lse, q, k, v, s, what); break;
  }
  check_launch(what);
}

template <typename T>
void backward(T* dq, T* dk, T* dv, float* delta, const T* dout, const T* out, const float* lse, const T* q,
              const T* k, const T* v, const int32_t* cu, int64_t nseq, int64_t T_, int64_t H,
              int64_t Hkv, int64_t D, float scale, bool causal, const char* op) {
  const std::string what = describe_call(op, nseq, T_, H, Hkv, D);
  const AttentionPlan plan = plan_or_throw(nseq, T_, H, Hkv, D, what);
  if (plan.grid_x == 0 || T_ == 0) return;
  const int64_t blocks = (T_ * H * 32 + kAttnThreads - 1) / kAttnThreads;
  attention_delta_kernel<T><<<static_cast<unsigned>(blocks), kAttnThreads, 0, st()>>>(delta, dout, out, T_,
                                                                                        static_cast<int>(H),
                                                                                        static_cast<int>(D));
  const Shape s{cu, index_halt(), T_, nseq, static_cast<int>(H), static_cast<int>(Hkv), static_cast<int>(D),
                scale, causal};
  switch (plan.dmax) {
    case 64: launch_backward<T, 64>(plan, dq, dk, dv, dout, lse, delta, q, k, v, s, what); break;
    case 128: launch_backward<T, 128>(plan, dq, dk, dv, dout, lse, delta, q, k, v, s, what); break;
    default: launch_backward<T, 256>(plan, dq, dk, dv, dout, lse, delta, q, k, v, s, what); break;
  }
  check_launch(what);
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* cu,
                       int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                       float scale, bool causal) {
  forward(out, lse, q, k, v, cu, nseq, T, H, Hkv, D, scale, causal, "attention forward");
}

void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, const int32_t* cu,
                        int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                        float scale, bool causal) {
  backward(dq, dk, dv, delta, dout, out, lse, q, k, v, cu, nseq, T, H, Hkv, D, scale, causal,
           "attention backward");
}

void attention_forward_16(Half16 dtype, uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k,
                          const uint16_t* v, const int32_t* cu, int64_t nseq, int64_t T,
                          int64_t H, int64_t Hkv, int64_t D, float scale, bool causal) {
  if (dtype == Half16::BF16)
    forward(as<__nv_bfloat16>(out), lse, as<__nv_bfloat16>(q), as<__nv_bfloat16>(k), as<__nv_bfloat16>(v), cu,
            nseq, T, H, Hkv, D, scale, causal, "attention forward (bf16)");
  else
    forward(as<__half>(out), lse, as<__half>(q), as<__half>(k), as<__half>(v), cu, nseq, T, H, Hkv, D,
            scale, causal, "attention forward (fp16)");
}

void attention_backward_16(Half16 dtype, uint16_t* dq, uint16_t* dk, uint16_t* dv, float* delta,
                           const uint16_t* dout, const uint16_t* out, const float* lse, const uint16_t* q,
                           const uint16_t* k, const uint16_t* v, const int32_t* cu,
                           int64_t nseq, int64_t T, int64_t H, int64_t Hkv, int64_t D, float scale, bool causal) {
  using B = __nv_bfloat16;
  if (dtype == Half16::BF16)
    backward(as<B>(dq), as<B>(dk), as<B>(dv), delta, as<B>(dout), as<B>(out), lse, as<B>(q), as<B>(k), as<B>(v), cu,
             nseq, T, H, Hkv, D, scale, causal, "attention backward (bf16)");
  else
    backward(as<__half>(dq), as<__half>(dk), as<__half>(dv), delta, as<__half>(dout), as<__half>(out), lse,
             as<__half>(q), as<__half>(k), as<__half>(v), cu, nseq, T, H, Hkv, D, scale, causal,
             "attention backward (fp16)");
}

}  // namespace pg::cuda
