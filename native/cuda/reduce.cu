// CUDA twin of native/cpu/reduce.cpp: reductions over one dimension of x viewed as
// (outer, D, inner), softmax / log-softmax over rows, gather / scatter-add along a dimension.
// Sums accumulate in f64 as on CPU. scatter_add uses atomicAdd (the order of additions may vary
// from run to run, unlike the CPU's). Indices are checked on the device (IndexCheck).
#include "common.cuh"

namespace pg::cuda {

namespace {

#define PG_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// out (outer, inner) = scale * sum over D: a thread per output (coalesced across inner).
__global__ void __launch_bounds__(kElementwiseThreads) sum_dim_kernel(float* out, const float* x, int64_t outer,
                                                                      int64_t D, int64_t inner, float scale) {
  PG_GRID_STRIDE(t, outer * inner) {
    const int64_t o = t / inner, j = t - o * inner;
    const float* p = x + o * D * inner + j;
    double acc = 0;
    for (int64_t d = 0; d < D; ++d) acc += p[d * inner];
    out[t] = static_cast<float>(scale * acc);
  }
}

// inner == 1: a block per row of D.
__global__ void __launch_bounds__(kRowThreads) sum_rows_kernel(float* out, const float* x, int64_t D, float scale) {
  __shared__ double shared[32];
  const float* row = x + blockIdx.x * D;
  double acc = 0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) acc += row[d];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<float>(scale * acc);
}

__global__ void __launch_bounds__(kElementwiseThreads) sum_dim_backward_kernel(float* dx, const float* dout,
                                                                               int64_t D, int64_t inner, int64_t n,
                                                                               float scale) {
  PG_GRID_STRIDE(i, n) {
    const int64_t j = i % inner, o = i / (D * inner);
    dx[i] = scale * dout[o * inner + j];
  }
}

// values, indices (outer, inner): first maximum over D, a NaN wins (torch).
__global__ void __launch_bounds__(kElementwiseThreads) max_dim_kernel(float* values, int32_t* indices, const float* x,
                                                                      int64_t outer, int64_t D, int64_t inner) {
  PG_GRID_STRIDE(t, outer * inner) {
    const int64_t o = t / inner, j = t - o * inner;
    const float* p = x + o * D * inner + j;
    float best = p[0];
    int32_t at = 0;
    for (int64_t d = 1; d < D && best == best; ++d) {
      const float v = p[d * inner];
      if (v > best || v != v) best = v, at = static_cast<int32_t>(d);
    }
    values[t] = best;
    indices[t] = at;
  }
}

// Grid-stride over the m = outer x K x inner positions of index: in_range(i, e) where index[i] is in
// [0, D) (e: the element of the (outer, D, inner) tensor it selects), else i is reported.
template <typename InRange>
__device__ __forceinline__ void for_each_index(const int32_t* index, int64_t D, int64_t K, int64_t inner, int64_t m,
                                               unsigned long long* bad, InRange in_range) {
  PG_GRID_STRIDE(i, m) {
    const int32_t d = index[i];
    if (d < 0 || d >= D) {
      report_bad(bad, i);
      continue;
    }
    const int64_t j = i % inner, o = i / (K * inner);
    in_range(i, (o * D + d) * inner + j);
  }
}

__global__ void __launch_bounds__(kElementwiseThreads) gather_kernel(float* out, const float* x, const int32_t* index,
                                                                     int64_t D, int64_t K, int64_t inner, int64_t m,
                                                                     unsigned long long* bad) {
  for_each_index(index, D, K, inner, m, bad, [&](int64_t i, int64_t e) { out[i] = x[e]; });
}

__global__ void __launch_bounds__(kElementwiseThreads) scatter_add_kernel(float* dst, const float* src,
                                                                          const int32_t* index, int64_t D, int64_t K,
                                                                          int64_t inner, int64_t m,
                                                                          unsigned long long* bad) {
  for_each_index(index, D, K, inner, m, bad, [&](int64_t i, int64_t e) { atomicAdd(dst + e, src[i]); });
}

// A block per row of C: softmax (log = false) or log-softmax, the row max subtracted.
__global__ void __launch_bounds__(kRowThreads) softmax_kernel(float* out, const float* x, int64_t C, bool log) {
  __shared__ float smax[32];
  __shared__ float ssum[32];
  const float* row = x + blockIdx.x * C;
  float* o = out + blockIdx.x * C;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, row[c]);
  m = block_max(m, smax);
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(row[c] - m);
  s = block_sum(s, ssum);
  const float logs = logf(s), inv = 1.0f / s;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = log ? row[c] - m - logs : expf(row[c] - m) * inv;
}

// softmax: dx = out * (dout - sum(dout * out)); log-softmax: dx = dout - exp(out) * sum(dout).
__global__ void __launch_bounds__(kRowThreads) softmax_backward_kernel(float* dx, const float* dout, const float* out,
                                                                       int64_t C, bool log) {
  __shared__ float shared[32];
  const int64_t base = blockIdx.x * C;
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += log ? dout[base + c] : dout[base + c] * out[base + c];
  s = block_sum(s, shared);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float g = dout[base + c], y = out[base + c];
    dx[base + c] = log ? g - expf(y) * s : y * (g - s);
  }
}

void index_error(IndexCheck& check, const int32_t* index, int64_t D) {
  const int64_t bad = check.first_bad();
  if (bad < 0) return;
  throw Error("index[" + std::to_string(bad) + "] = " + std::to_string(check.value_at(index, bad)) +
                  " is outside [0, " + std::to_string(D) + ")",
              true);
}

// gather_kernel or scatter_add_kernel over the outer x K x inner index under an index check; throws
// on the first index outside [0, D).
using IndexedKernel = void (*)(float*, const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t,
                               unsigned long long*);
void indexed(const char* name, IndexedKernel kernel, float* dst, const float* src, const int32_t* index,
             int64_t outer, int64_t D, int64_t K, int64_t inner) {
  const int64_t m = outer * K * inner;
  if (m <= 0) return;
  const std::string what = describe(name, {{"outer", outer}, {"D", D}, {"K", K}, {"inner", inner}});
  IndexCheck check(what);
  kernel<<<blocks_for(m), kElementwiseThreads, 0, st()>>>(dst, src, index, D, K, inner, m, check.flag());
  check_launch(what);
  index_error(check, index, D);
}

void rows(const char* name, float* out, const float* x, int64_t N, int64_t C, bool log) {
  if (N <= 0 || C <= 0) return;
  softmax_kernel<<<static_cast<unsigned>(N), kRowThreads, 0, st()>>>(out, x, C, log);
  check_launch(describe(name, {{"N", N}, {"C", C}}));
}

void rows_backward(const char* name, float* dx, const float* dout, const float* out, int64_t N, int64_t C, bool log) {
  if (N <= 0 || C <= 0) return;
  softmax_backward_kernel<<<static_cast<unsigned>(N), kRowThreads, 0, st()>>>(dx, dout, out, C, log);
  check_launch(describe(name, {{"N", N}, {"C", C}}));
}

}  // namespace

void sum_dim_forward(float* out, const float* x, int64_t outer, int64_t D, int64_t inner, float scale) {
  const int64_t m = outer * inner;
  if (m <= 0) return;
  if (D == 0) {
    fill(out, 0.0f, m);
    return;
  }
  if (inner == 1 && D >= 1024 && outer <= cuda_host::kMaxGridX)
    sum_rows_kernel<<<static_cast<unsigned>(outer), kRowThreads, 0, st()>>>(out, x, D, scale);
  else
    sum_dim_kernel<<<blocks_for(m), kElementwiseThreads, 0, st()>>>(out, x, outer, D, inner, scale);
  check_launch(describe("sumDimForward", {{"outer", outer}, {"D", D}, {"inner", inner}}));
}

void sum_dim_backward(float* dx, const float* dout, int64_t outer, int64_t D, int64_t inner, float scale) {
  const int64_t n = outer * D * inner;
  if (n <= 0) return;
  sum_dim_backward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(dx, dout, D, inner, n, scale);
  check_launch(describe("sumDimBackward", {{"outer", outer}, {"D", D}, {"inner", inner}}));
}

void max_dim_forward(float* values, int32_t* indices, const float* x, int64_t outer, int64_t D, int64_t inner) {
  const int64_t m = outer * inner;
  if (m <= 0 || D <= 0) return;
  max_dim_kernel<<<blocks_for(m), kElementwiseThreads, 0, st()>>>(values, indices, x, outer, D, inner);
  check_launch(describe("maxDimForward", {{"outer", outer}, {"D", D}, {"inner", inner}}));
}

void gather_forward(float* out, const float* x, const int32_t* index, int64_t outer, int64_t D, int64_t K,
                    int64_t inner) {
  indexed("gatherForward", gather_kernel, out, x, index, outer, D, K, inner);
}

void scatter_add(float* dst, const float* src, const int32_t* index, int64_t outer, int64_t D, int64_t K,
                 int64_t inner) {
  indexed("scatterAdd", scatter_add_kernel, dst, src, index, outer, D, K, inner);
}

void softmax_forward(float* out, const float* x, int64_t N, int64_t C) { rows("softmaxForward", out, x, N, C, false); }
void log_softmax_forward(float* out, const float* x, int64_t N, int64_t C) {
  rows("logSoftmaxForward", out, x, N, C, true);
}
void softmax_backward(float* dx, const float* dout, const float* out, int64_t N, int64_t C) {
  rows_backward("softmaxBackward", dx, dout, out, N, C, false);
}
void log_softmax_backward(float* dx, const float* dout, const float* out, int64_t N, int64_t C) {
  rows_backward("logSoftmaxBackward", dx, dout, out, N, C, true);
}

}  // namespace pg::cuda
