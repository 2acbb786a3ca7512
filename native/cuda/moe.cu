// Dropless sparse mixture of experts on CUDA: the twin of native/cpu/moe.cpp (router top-k with
// Mixtral's renormalisation, dispatch by a stable counting sort, permute / un-permute, grouped
// expert GEMM, weighted combine), checked against it by the op suites. Same slots, orders and
// offsets as the CPU; every index the kernels read has been checked by the bindings.
//
// - Router: one warp per token; k rounds of a warp arg-max over the experts not yet chosen, in
//   the CPU's order (descending, NaN first, ties to the lower id); softmax sums in f64 as there.
// - Dispatch: deterministic, no atomics on positions: a block per expert counts its slots, one
//   thread turns the histogram into offsets (cuda_plan::moe_offsets_from_histogram), then a
//   block per expert walks the slots in order and places its own with a block-wide prefix sum,
//   which keeps the order stable.
// - Grouped GEMM: one cuBLASLt GEMM (f32 compute, cuda::gemm) per non-empty expert group, as the
//   CPU runs one packed GEMM per group; where cuBLASLt cannot be opened, one tiled f32 kernel
//   (64 x 64 output tiles, 4 x 4 per thread) over row tiles that never straddle experts
//   (cuda_plan::moe_tile_of_block maps a block to its expert and rows), and weight gradients per
//   expert over its rows.
// - Data movement: gathers through order / slot_pos, so backward never scatters with atomics and
//   every result is deterministic.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "attention_common.cuh"
#include "patentgpt/cuda_moe.h"
#include "patentgpt/cuda_index_check.h"
#include "patentgpt/cuda_plan.h"

namespace pg::cuda {

namespace {

using namespace pg::cuda_plan;

constexpr int kRouterThreads = 128;  // 4 warps, one token each
constexpr int kDispatchThreads = 256;
constexpr int kMoveThreads = 256;
constexpr int BM = kMoeTile, BN = kMoeTile, BK = 16;
static_assert(kMoeThreads == 256 && BM == 64, "the GEMM tile is 16 x 16 threads of 4 x 4 outputs");

// The CPU router's order: v before u when it ranks above (NaN above numbers), ties to the lower id.
__device__ __forceinline__ bool ranks_above(float v, float u) { return v > u || (isnan(v) && !isnan(u)); }
__device__ __forceinline__ bool before(float va, int ia, float vb, int ib) {
  return ranks_above(va, vb) || (!ranks_above(vb, va) && ia < ib);
}

// indices, weights (N, k) from logits (N, E).
__global__ void __launch_bounds__(kRouterThreads) moe_router_forward_kernel(int32_t* __restrict__ indices,
                                                                            float* __restrict__ weights,
                                                                            const float* __restrict__ logits,
                                                                            int64_t N, int E, int k, bool normalize) {
  const int64_t n = (static_cast<int64_t>(blockIdx.x) * kRouterThreads + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const float* l = logits + n * E;
  int32_t* idx = indices + n * k;
  float* w = weights + n * k;  // holds the chosen logits until the softmax
  float pv = 0.0f;
  int pi = -1;  // the previous round's choice (none in round 0)
  for (int j = 0; j < k; ++j) {
    float bv = 0.0f;
    int bi = -1;
    for (int e = lane; e < E; e += 32) {
      const float v = l[e];
      if (pi >= 0 && !before(pv, pi, v, e)) continue;  // chosen in an earlier round
      if (bi < 0 || before(v, e, bv, bi)) {
        bv = v;
        bi = e;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (oi >= 0 && (bi < 0 || before(ov, oi, bv, bi))) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      idx[j] = bi;
      w[j] = bv;
    }
    pv = bv;
    pi = bi;
  }
  __syncwarp();
  const double m = __shfl_sync(0xffffffffu, static_cast<double>(w[0]), 0);  // the row's maximum
  double z = 0.0;
  if (normalize) {
    for (int j = lane; j < k; j += 32) z += exp(static_cast<double>(w[j]) - m);
  } else {
    for (int e = lane; e < E; e += 32) z += exp(static_cast<double>(l[e]) - m);
  }
  z = warp_sum(z);
  __syncwarp();
  for (int j = lane; j < k; j += 32) w[j] = static_cast<float>(exp(static_cast<double>(w[j]) - m) / z);
}

// dlogits (N, E) written from dweights (N, k).
__global__ void __launch_bounds__(kRouterThreads) moe_router_backward_kernel(
    float* __restrict__ dlogits, const float* __restrict__ dweights, const float* __restrict__ weights,
    const int32_t* __restrict__ indices, const float* __restrict__ logits, int64_t N, int E, int k, bool normalize,
    const int* __restrict__ halt) {
  if (*halt) return;  // an index check failed: touch nothing
  const int64_t n = (static_cast<int64_t>(blockIdx.x) * kRouterThreads + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const float* g = dweights + n * k;
  const float* w = weights + n * k;
  const int32_t* idx = indices + n * k;
  float* dl = dlogits + n * E;
  double dot = 0.0;
  for (int j = lane; j < k; j += 32) dot += static_cast<double>(w[j]) * g[j];
  dot = warp_sum(dot);
  if (normalize) {
    // w = softmax over the k selected logits: the others get no gradient.
    for (int e = lane; e < E; e += 32) dl[e] = 0.0f;
  } else {
    // w = p at the selected experts, p = softmax over all E: every logit moves p's sum.
    const float* l = logits + n * E;
    const double m = l[idx[0]];
    double z = 0.0;
    for (int e = lane; e < E; e += 32) z += exp(static_cast<double>(l[e]) - m);
    z = warp_sum(z);
    for (int e = lane; e < E; e += 32) dl[e] = static_cast<float>(-exp(static_cast<double>(l[e]) - m) / z * dot);
  }
  __syncwarp();  // the writes above are seen before the chosen experts add to them
  for (int j = lane; j < k; j += 32)  // the k ids are distinct: no two lanes add to one logit
    dl[idx[j]] += static_cast<float>(normalize ? w[j] * (g[j] - dot) : static_cast<double>(w[j]) * g[j]);
}

// counts[e] = slots routed to expert e (one block per expert).
__global__ void __launch_bounds__(kDispatchThreads) moe_count_kernel(int32_t* __restrict__ counts,
                                                                     const int32_t* __restrict__ indices, int64_t M) {
  __shared__ int32_t part[32];
  const int e = blockIdx.x;
  int32_t c = 0;
  for (int64_t s = threadIdx.x; s < M; s += kDispatchThreads) c += indices[s] == e;
  c = block_sum(c, part);
  if (threadIdx.x == 0) counts[e] = c;
}

__global__ void __launch_bounds__(32) moe_offsets_kernel(int32_t* __restrict__ offsets,
                                                         const int32_t* __restrict__ counts, int64_t E,
                                                         const int* __restrict__ halt) {
  if (threadIdx.x == 0 && !*halt) moe_offsets_from_histogram(offsets, counts, E);
}

// order, slot_pos for expert e's slots in slot order (one block per expert).
__global__ void __launch_bounds__(kDispatchThreads) moe_place_kernel(int32_t* __restrict__ order,
                                                                     int32_t* __restrict__ slot_pos,
                                                                     const int32_t* __restrict__ offsets,
                                                                     const int32_t* __restrict__ indices, int64_t M,
                                                                     const int* __restrict__ halt) {
  __shared__ int32_t warp_total[kDispatchThreads / 32];
  if (*halt) return;  // uniform over the block: before any barrier
  const int e = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int32_t base = offsets[e];
  for (int64_t s0 = 0; s0 < M; s0 += kDispatchThreads) {
    const int64_t s = s0 + threadIdx.x;
    const bool mine = s < M && indices[s] == e;
    const unsigned mask = __ballot_sync(0xffffffffu, mine);
    __syncthreads();  // the previous chunk's totals are read
    if (lane == 0) warp_total[warp] = __popc(mask);
    __syncthreads();
    int32_t before_warp = 0, chunk = 0;
    for (int w = 0; w < kDispatchThreads / 32; ++w) {
      before_warp += w < warp ? warp_total[w] : 0;
      chunk += warp_total[w];
    }
    if (mine) {
      const int32_t p = base + before_warp + __popc(mask & ((1u << lane) - 1u));
      order[p] = static_cast<int32_t>(s);
      slot_pos[s] = p;
    }
    base += chunk;
  }
}

// xs (M, C) = x (N, C) at row order[p] / k.
__global__ void __launch_bounds__(kMoveThreads) moe_permute_forward_kernel(float* __restrict__ xs,
                                                                           const float* __restrict__ x,
                                                                           const int32_t* __restrict__ order,
                                                                           int64_t M, int64_t C, int64_t k,
                                                                           const int* __restrict__ halt) {
  if (*halt) return;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kMoveThreads + threadIdx.x; i < M * C;
       i += static_cast<int64_t>(gridDim.x) * kMoveThreads) {
    const int64_t p = i / C, c = i - p * C;
    xs[i] = x[(order[p] / k) * C + c];
  }
}

// Element c of row n's k slots (rows slot_pos[n * k + j] of src) summed in j order, as the CPU adds
// them; kWeighted: each times weights[n * k + j] (a template flag, so neither kernel carries both loops).
template <bool kWeighted>
__device__ __forceinline__ float sum_slots(const float* __restrict__ src, const float* __restrict__ weights,
                                           const int32_t* __restrict__ slot_pos, int64_t n, int64_t c, int64_t C,
                                           int64_t k) {
  const auto slot = [&](int64_t j) { return src[static_cast<int64_t>(slot_pos[n * k + j]) * C + c]; };
  float acc = 0.0f;
  for (int64_t j = 0; j < k; ++j) {
    if constexpr (kWeighted)
      acc += weights[n * k + j] * slot(j);
    else
      acc += slot(j);
  }
  return acc;
}

// dx (N, C) = sum over j of dxs[slot_pos[n * k + j]], in j order as the CPU adds them.
__global__ void __launch_bounds__(kMoveThreads) moe_permute_backward_kernel(float* __restrict__ dx,
                                                                            const float* __restrict__ dxs,
                                                                            const int32_t* __restrict__ slot_pos,
                                                                            int64_t N, int64_t C, int64_t k,
                                                                            const int* __restrict__ halt) {
  if (*halt) return;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kMoveThreads + threadIdx.x; i < N * C;
       i += static_cast<int64_t>(gridDim.x) * kMoveThreads) {
    const int64_t n = i / C, c = i - n * C;
    dx[i] = sum_slots<false>(dxs, nullptr, slot_pos, n, c, C, k);
  }
}

// out (N, C) = sum over j of weights[n, j] * y[slot_pos[n * k + j]].
__global__ void __launch_bounds__(kMoveThreads) moe_combine_forward_kernel(float* __restrict__ out,
                                                                           const float* __restrict__ y,
                                                                           const float* __restrict__ weights,
                                                                           const int32_t* __restrict__ slot_pos,
                                                                           int64_t N, int64_t C, int64_t k,
                                                                           const int* __restrict__ halt) {
  if (*halt) return;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kMoveThreads + threadIdx.x; i < N * C;
       i += static_cast<int64_t>(gridDim.x) * kMoveThreads) {
    const int64_t n = i / C, c = i - n * C;
    out[i] = sum_slots<true>(y, weights, slot_pos, n, c, C, k);
  }
}

// dy (M, C): row slot_pos[s] = weights[s] * dout[s / k].
__global__ void __launch_bounds__(kMoveThreads) moe_combine_dy_kernel(float* __restrict__ dy,
                                                                      const float* __restrict__ dout,
                                                                      const float* __restrict__ weights,
                                                                      const int32_t* __restrict__ slot_pos,
                                                                      int64_t M, int64_t C, int64_t k,
                                                                      const int* __restrict__ halt) {
  if (*halt) return;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kMoveThreads + threadIdx.x; i < M * C;
       i += static_cast<int64_t>(gridDim.x) * kMoveThreads) {
    const int64_t s = i / C, c = i - s * C;
    dy[static_cast<int64_t>(slot_pos[s]) * C + c] = weights[s] * dout[(s / k) * C + c];
  }
}

// dweights (N, k): slot s = dot(dout[s / k], y[slot_pos[s]]), one warp per slot.
__global__ void __launch_bounds__(kMoveThreads) moe_combine_dweights_kernel(float* __restrict__ dweights,
                                                                            const float* __restrict__ dout,
                                                                            const float* __restrict__ y,
                                                                            const int32_t* __restrict__ slot_pos,
                                                                            int64_t M, int64_t C, int64_t k,
                                                                            const int* __restrict__ halt) {
  const int64_t s = (static_cast<int64_t>(blockIdx.x) * kMoveThreads + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (s >= M || *halt) return;
  const float* g = dout + (s / k) * C;
  const float* yr = y + static_cast<int64_t>(slot_pos[s]) * C;
  float acc = 0.0f;
  for (int64_t c = lane; c < C; c += 32) acc = fmaf(g[c], yr[c], acc);
  acc = warp_sum(acc);
  if (lane == 0) dweights[s] = acc;
}

// ---- the tiled GEMM: C (M, N) (+)= A (M, K) B (K, N), any strides ----
// Element (i, j) of a matrix at p[i * rs + j * cs].
struct Mat {
  const float* p;
  int64_t rs, cs;
};

// One 64 x 64 tile of C from (m0, n0); loads are coalesced along whichever index of A and B is
// contiguous. accumulate: C += A B, else C = A B (zeros when K == 0).
__device__ __forceinline__ void gemm_tile(float* C, int64_t ldc, Mat A, Mat B, int M, int N, int K, int m0, int n0,
                                          bool accumulate) {
  __shared__ float As[BK][BM + 4];
  __shared__ float Bs[BK][BN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (int k0 = 0; k0 < K; k0 += BK) {
    __syncthreads();
#pragma unroll
    for (int l = 0; l < BM * BK / kMoeThreads; ++l) {
      const int x = tid + l * kMoeThreads;
      int i, kk;
      if (A.cs == 1) { kk = x % BK; i = x / BK; }  // rows of A contiguous along k
      else { i = x % BM; kk = x / BM; }
      const int gi = m0 + i, gk = k0 + kk;
      As[kk][i] = gi < M && gk < K ? A.p[gi * A.rs + gk * A.cs] : 0.0f;
    }
#pragma unroll
    for (int l = 0; l < BN * BK / kMoeThreads; ++l) {
      const int x = tid + l * kMoeThreads;
      int j, kk;
      if (B.cs == 1) { j = x % BN; kk = x / BN; }  // rows of B contiguous along n
      else { kk = x % BK; j = x / BK; }
      const int gj = n0 + j, gk = k0 + kk;
      Bs[kk][j] = gj < N && gk < K ? B.p[gk * B.rs + gj * B.cs] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gi = m0 + ty + 16 * i;
    if (gi >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gj = n0 + tx + 16 * j;
      if (gj >= N) continue;
      float* c = C + static_cast<int64_t>(gi) * ldc + gj;
      *c = accumulate ? *c + acc[i][j] : acc[i][j];
    }
  }
}

// Expert e's weight: a slice of a stacked (E, O, I) tensor, or the e-th of a pointer list.
struct Weights {
  const float* stacked;
  const float* const* list;
  int64_t size;  // O * I
  __device__ const float* at(int64_t e) const { return list ? list[e] : stacked + e * size; }
};

// Row-group products over the experts' row tiles (blockIdx.x: moe_tile_of_block) and output
// column tiles (blockIdx.y). transpose_w: y = xs W^T (forward, N = O, K = I); else
// dxs = dy W (N = I, K = O).
__global__ void __launch_bounds__(kMoeThreads) moe_rows_gemm_kernel(float* __restrict__ out,
                                                                    const float* __restrict__ in, Weights w,
                                                                    const int32_t* __restrict__ offsets, int64_t E,
                                                                    int O, int I, bool transpose_w) {
  int64_t e, r0, r1;
  if (!moe_tile_of_block(offsets, E, BM, blockIdx.x, &e, &r0, &r1)) return;
  const int N = transpose_w ? O : I, K = transpose_w ? I : O;
  const int n0 = blockIdx.y * BN;
  if (n0 >= N) return;
  const float* we = w.at(e);
  const Mat A{in + r0 * K, K, 1};
  const Mat B = transpose_w ? Mat{we, 1, I} : Mat{we, I, 1};
  gemm_tile(out + r0 * N, N, A, B, static_cast<int>(r1 - r0), N, K, 0, n0, false);
}

// dW_e (O, I) (+)= dy_e^T xs_e over expert e's rows (blockIdx.z = e; x, y: the tile of dW).
__global__ void __launch_bounds__(kMoeThreads) moe_weight_grad_kernel(float* dw_stacked, float* const* dw_list,
                                                                      const float* __restrict__ dy,
                                                                      const float* __restrict__ xs,
                                                                      const int32_t* __restrict__ offsets, int O,
                                                                      int I, bool accumulate) {
  const int64_t e = blockIdx.z;
  const int64_t r0 = offsets[e], rows = offsets[e + 1] - r0;
  float* dw = dw_list ? dw_list[e] : dw_stacked + e * static_cast<int64_t>(O) * I;
  const Mat A{dy + r0 * O, 1, O};   // dy_e^T: (O, rows)
  const Mat B{xs + r0 * I, I, 1};   // xs_e: (rows, I)
  gemm_tile(dw, I, A, B, O, I, static_cast<int>(rows), blockIdx.y * BM, blockIdx.x * BN, accumulate);
}

unsigned move_blocks(int64_t n) { return blocks_for(n, kMoveThreads); }

unsigned warp_blocks(int64_t warps, int threads) {
  return static_cast<unsigned>((warps * 32 + threads - 1) / threads);
}

std::string moe_sizes(const char* op, int64_t a, int64_t b, int64_t c, const char* na, const char* nb,
                      const char* nc) {
  return describe(op, {{na, a}, {nb, b}, {nc, c}});
}

// Row tiles of the experts' groups (host offsets): the grid of moe_rows_gemm_kernel.
int64_t row_tiles(const int32_t* offsets_host, int64_t E) {
  int64_t n = 0;
  for (int64_t e = 0; e < E; ++e) n += (static_cast<int64_t>(offsets_host[e + 1]) - offsets_host[e] + BM - 1) / BM;
  return n;
}

void zero_fill(float* p, int64_t n) {
  const cudaError_t status = cudaMemsetAsync(p, 0, static_cast<size_t>(n) * sizeof(float), st());
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw Error(std::string("moe gemm: zero fill of ") + std::to_string(n) + " floats: " + cudaGetErrorString(status));
  }
}

// cuBLASLt per expert where it loads (cached: opening it is tried once).
bool use_cublaslt() {
  static const bool ok = cublaslt_status().empty();
  return ok;
}

// Per expert group through cuBLASLt: forward y_e = xs_e W_e^T, else dxs_e = dy_e W_e.
void rows_gemm_lt(float* out, const float* in, const float* const* w, const int32_t* off, int64_t E, int64_t O,
                  int64_t I, bool forward) {
  const int64_t N = forward ? O : I, K = forward ? I : O;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = off[e], rows = off[e + 1] - r0;
    if (rows == 0 || N == 0) continue;
    if (K == 0) {  // nothing flows through an empty weight: zeros, as the CPU writes
      zero_fill(out + r0 * N, rows * N);
      continue;
    }
    cuda::gemm(false, forward, rows, N, K, 1.0f, in + r0 * K, K, 0, w[e], I, 0, 0.0f, out + r0 * N, N, 0, 1);
  }
}

// dW_e (+)= dy_e^T xs_e per expert through cuBLASLt; written zeros for an expert without rows.
void weight_grad_lt(float* const* dw, const float* dy, const float* xs, const int32_t* off, int64_t E, int64_t O,
                    int64_t I, bool accumulate) {
  if (O == 0 || I == 0) return;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = off[e], rows = off[e + 1] - r0;
    if (rows == 0) {
      if (!accumulate) zero_fill(dw[e], O * I);
      continue;
    }
    cuda::gemm(true, false, O, I, rows, 1.0f, dy + r0 * O, O, 0, xs + r0 * I, I, 0, accumulate ? 1.0f : 0.0f, dw[e], I, 0, 1);
  }
}

// The experts' weights as a host array of pointers (a stacked tensor's slices, or the list).
template <typename T>
std::vector<T*> expert_pointers(T* stacked, int64_t E, int64_t size) {
  std::vector<T*> p(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) p[static_cast<size_t>(e)] = stacked + e * size;
  return p;
}

void rows_gemm(float* out, const float* in, Weights w, const int32_t* offsets, const int32_t* offsets_host,
               int64_t E, int64_t O, int64_t I, bool forward, const std::string& what) {
  const int64_t tiles = row_tiles(offsets_host, E), N = forward ? O : I;
  if (tiles == 0 || N == 0) return;
  if (tiles > 0x7fffffff || (N + BN - 1) / BN > 65535) throw Error(what + ": too many tiles for the grid", true);
  moe_rows_gemm_kernel<<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>((N + BN - 1) / BN)), kMoeThreads,
                         0, st()>>>(out, in, w, offsets, E, static_cast<int>(O), static_cast<int>(I), forward);
}

void weight_grad(float* dw_stacked, float* const* dw_list, const float* dy, const float* xs, const int32_t* offsets,
                 int64_t E, int64_t O, int64_t I, bool accumulate, const std::string& what) {
  if (E == 0 || O == 0 || I == 0) return;
  if ((O + BM - 1) / BM > 65535 || E > 65535) throw Error(what + ": too many tiles for the grid", true);
  moe_weight_grad_kernel<<<dim3(static_cast<unsigned>((I + BN - 1) / BN), static_cast<unsigned>((O + BM - 1) / BM),
                                static_cast<unsigned>(E)),
                           kMoeThreads, 0, st()>>>(dw_stacked, dw_list, dy, xs, offsets, static_cast<int>(O),
                                                   static_cast<int>(I), accumulate);
}

// The experts' pointers on the device, for the kernels to index.
template <typename T>
class DevicePointers {
 public:
  DevicePointers(T* const* host, int64_t E, const std::string& what)
      : scratch_(static_cast<size_t>(E) * sizeof(T*), what) {
    std::string err;
    if (E > 0 && !cuda_memcpy(scratch_.as<T*>(), host, static_cast<size_t>(E) * sizeof(T*), 0, err))
      throw Error(what + ": " + err);
  }
  T* const* get() const { return scratch_.as<T*>(); }

 private:
  Scratch scratch_;
};

}  // namespace

void moe_router_forward(int32_t* indices, float* weights, const float* logits, int64_t N, int64_t E, int64_t k,
                        bool normalize) {
  if (N == 0) return;
  moe_router_forward_kernel<<<warp_blocks(N, kRouterThreads), kRouterThreads, 0, st()>>>(
      indices, weights, logits, N, static_cast<int>(E), static_cast<int>(k), normalize);
  check_launch(moe_sizes("moe router", N, E, k, "N", "E", "k"));
}

void moe_router_backward(float* dlogits, const float* dweights, const float* weights, const int32_t* indices,
                         const float* logits, int64_t N, int64_t E, int64_t k, bool normalize) {
  if (N == 0) return;
  moe_router_backward_kernel<<<warp_blocks(N, kRouterThreads), kRouterThreads, 0, st()>>>(
      dlogits, dweights, weights, indices, logits, N, static_cast<int>(E), static_cast<int>(k), normalize,
      index_halt());
  check_launch(moe_sizes("moe router backward", N, E, k, "N", "E", "k"));
}

void moe_dispatch(int32_t* order, int32_t* slot_pos, int32_t* offsets, const int32_t* indices, int64_t M, int64_t E) {
  const std::string what = describe("moe dispatch", {{"M", M}, {"E", E}});
  if (E > 0x7fffffff) throw Error(what + ": too many experts for the grid", true);
  Scratch counts(static_cast<size_t>(E > 0 ? E : 1) * sizeof(int32_t), what);
  if (E > 0)
    moe_count_kernel<<<static_cast<unsigned>(E), kDispatchThreads, 0, st()>>>(counts.as<int32_t>(), indices, M);
  moe_offsets_kernel<<<1, 32, 0, st()>>>(offsets, counts.as<int32_t>(), E, index_halt());
  if (E > 0 && M > 0)
    moe_place_kernel<<<static_cast<unsigned>(E), kDispatchThreads, 0, st()>>>(order, slot_pos, offsets, indices, M,
                                                                             index_halt());
  check_launch(what);
}

void moe_permute_forward(float* xs, const float* x, const int32_t* order, int64_t M, int64_t C, int64_t k) {
  if (M * C == 0) return;
  moe_permute_forward_kernel<<<move_blocks(M * C), kMoveThreads, 0, st()>>>(xs, x, order, M, C, k, index_halt());
  check_launch(moe_sizes("moe permute", M, C, k, "M", "C", "k"));
}

void moe_permute_backward(float* dx, const float* dxs, const int32_t* slot_pos, int64_t N, int64_t C, int64_t k) {
  if (N * C == 0) return;
  moe_permute_backward_kernel<<<move_blocks(N * C), kMoveThreads, 0, st()>>>(dx, dxs, slot_pos, N, C, k,
                                                                             index_halt());
  check_launch(moe_sizes("moe permute backward", N, C, k, "N", "C", "k"));
}

void moe_grouped_gemm_forward(float* y, const float* xs, const float* w, const int32_t* offsets,
                              const int32_t* offsets_host, int64_t E, int64_t O, int64_t I) {
  const std::string what = describe("moe grouped gemm", {{"M", offsets_host[E]}, {"E", E}, {"O", O}, {"I", I}});
  if (use_cublaslt()) {
    const std::vector<const float*> ws = expert_pointers(w, E, O * I);
    rows_gemm_lt(y, xs, ws.data(), offsets_host, E, O, I, true);
  } else {
    rows_gemm(y, xs, Weights{w, nullptr, O * I}, offsets, offsets_host, E, O, I, true, what);
  }
  check_launch(what);
}

void moe_grouped_gemm_backward(float* dxs, float* dw, const float* dy, const float* xs, const float* w,
                               const int32_t* offsets, const int32_t* offsets_host, int64_t E, int64_t O, int64_t I) {
  const std::string what =
      describe("moe grouped gemm backward", {{"M", offsets_host[E]}, {"E", E}, {"O", O}, {"I", I}});
  // dxs_e = dy_e W_e (zeros when O = 0); dW_e += dy_e^T xs_e
  if (use_cublaslt()) {
    const std::vector<const float*> ws = expert_pointers(w, E, O * I);
    if (dxs) rows_gemm_lt(dxs, dy, ws.data(), offsets_host, E, O, I, false);
    if (dw) weight_grad_lt(expert_pointers(dw, E, O * I).data(), dy, xs, offsets_host, E, O, I, true);
  } else {
    if (dxs) rows_gemm(dxs, dy, Weights{w, nullptr, O * I}, offsets, offsets_host, E, O, I, false, what);
    if (dw) weight_grad(dw, nullptr, dy, xs, offsets, E, O, I, true, what);
  }
  check_launch(what);
}

void moe_experts_gemm_forward(float* y, const float* xs, const float* const* w, const int32_t* offsets,
                              const int32_t* offsets_host, int64_t E, int64_t O, int64_t I) {
  const std::string what = describe("moe experts gemm", {{"M", offsets_host[E]}, {"E", E}, {"O", O}, {"I", I}});
  if (use_cublaslt()) {
    rows_gemm_lt(y, xs, w, offsets_host, E, O, I, true);
  } else {
    const DevicePointers<const float> wd(w, E, what);
    rows_gemm(y, xs, Weights{nullptr, wd.get(), O * I}, offsets, offsets_host, E, O, I, true, what);
  }
  check_launch(what);
}

void moe_experts_gemm_backward(float* dxs, float* const* dw, const float* dy, const float* xs, const float* const* w,
                               const int32_t* offsets, const int32_t* offsets_host, int64_t E, int64_t O, int64_t I) {
  const std::string what =
      describe("moe experts gemm backward", {{"M", offsets_host[E]}, {"E", E}, {"O", O}, {"I", I}});
  // dW_e written (=) for every expert, zeros for one without rows.
  if (use_cublaslt()) {
    if (dxs) rows_gemm_lt(dxs, dy, w, offsets_host, E, O, I, false);
    if (dw) weight_grad_lt(dw, dy, xs, offsets_host, E, O, I, false);
  } else {
    const DevicePointers<const float> wd(w, E, what);
    if (dxs) rows_gemm(dxs, dy, Weights{nullptr, wd.get(), O * I}, offsets, offsets_host, E, O, I, false, what);
    if (dw) {
      const DevicePointers<float> dwd(dw, E, what);  // K = 0 (no rows) writes zeros
      weight_grad(nullptr, dwd.get(), dy, xs, offsets, E, O, I, false, what);
    }
  }
  check_launch(what);
}

void moe_combine_forward(float* out, const float* y, const float* weights, const int32_t* slot_pos, int64_t N,
                         int64_t C, int64_t k) {
  if (N * C == 0) return;
  moe_combine_forward_kernel<<<move_blocks(N * C), kMoveThreads, 0, st()>>>(out, y, weights, slot_pos, N, C, k,
                                                                            index_halt());
  check_launch(moe_sizes("moe combine", N, C, k, "N", "C", "k"));
}

void moe_combine_backward(float* dy, float* dweights, const float* dout, const float* y, const float* weights,
                          const int32_t* slot_pos, int64_t N, int64_t C, int64_t k) {
  const int64_t M = N * k;
  if (M == 0) return;
  if (C > 0)
    moe_combine_dy_kernel<<<move_blocks(M * C), kMoveThreads, 0, st()>>>(dy, dout, weights, slot_pos, M, C, k,
                                                                         index_halt());
  moe_combine_dweights_kernel<<<warp_blocks(M, kMoveThreads), kMoveThreads, 0, st()>>>(dweights, dout, y, slot_pos,
                                                                                        M, C, k, index_halt());
  check_launch(moe_sizes("moe combine backward", N, C, k, "N", "C", "k"));
}

}  // namespace pg::cuda
