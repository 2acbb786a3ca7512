// CUDA twin of native/cpu/rmsnorm.cpp: out = (x * rstd) * w with rstd = 1 / sqrt(mean(x^2) + eps),
// as LlamaRMSNorm rounds it. dx is written (=); dw accumulates (+=), in two passes with a fixed
// order (partial sums per chunk of rows, then the chunks in order): deterministic, no atomics.
#include "common.cuh"

namespace pg::cuda {

namespace {

constexpr int64_t kMaxRowChunks = 256;  // partial dw rows: (chunks, C) floats of scratch

// A block per row: rstd[n], out[n, :].
__global__ void __launch_bounds__(kRowThreads) rmsnorm_forward_kernel(float* out, float* rstd, const float* x,
                                                                      const float* w, int64_t C, float eps) {
  __shared__ double shared[32];
  const int64_t base = blockIdx.x * C;
  double acc = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = x[base + c];
    acc += static_cast<double>(v * v);
  }
  acc = block_sum(acc, shared);
  const float ms = static_cast<float>(acc / static_cast<double>(C));
  const float r = static_cast<float>(1.0 / sqrt(static_cast<double>(ms + eps)));
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) out[base + c] = (x[base + c] * r) * w[c];
}

// A block per row: dx = r * (w * dout - xhat * k), k = mean(w * dout * xhat).
__global__ void __launch_bounds__(kRowThreads) rmsnorm_dx_kernel(float* dx, const float* dout, const float* x,
                                                                 const float* w, const float* rstd, int64_t C) {
  __shared__ double shared[32];
  const int64_t base = blockIdx.x * C;
  const float r = rstd[blockIdx.x];
  double acc = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    acc += static_cast<double>(w[c] * dout[base + c] * (x[base + c] * r));
  acc = block_sum(acc, shared);
  const float k = static_cast<float>(acc / static_cast<double>(C));
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dx[base + c] = r * (w[c] * dout[base + c] - (x[base + c] * r) * k);
}

// partial (chunks, C): column sums of dout * (x * r) over each chunk's rows; grid (column blocks, chunks).
__global__ void __launch_bounds__(kElementwiseThreads) rmsnorm_dw_partial_kernel(float* partial, const float* dout,
                                                                                 const float* x, const float* rstd,
                                                                                 int64_t N, int64_t C,
                                                                                 int64_t rows_per_chunk) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  const int64_t n0 = blockIdx.y * rows_per_chunk;
  const int64_t n1 = n0 + rows_per_chunk < N ? n0 + rows_per_chunk : N;
  float acc = 0.0f;
  for (int64_t n = n0; n < n1; ++n) acc += dout[n * C + c] * (x[n * C + c] * rstd[n]);
  partial[blockIdx.y * C + c] = acc;
}

// dw[c] += sum over chunks of partial[chunk, c], in chunk order.
__global__ void __launch_bounds__(kElementwiseThreads) rmsnorm_dw_final_kernel(float* dw, const float* partial,
                                                                               int64_t chunks, int64_t C) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double acc = 0;
  for (int64_t k = 0; k < chunks; ++k) acc += partial[k * C + c];
  dw[c] += static_cast<float>(acc);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps) {
  if (N <= 0 || C <= 0) return;
  rmsnorm_forward_kernel<<<static_cast<unsigned>(N), kRowThreads, 0, st()>>>(out, rstd, x, w, C, eps);
  check_launch(describe("rmsnorm_forward", {{"N", N}, {"C", C}}));
}

void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  const std::string what = describe("rmsnorm_backward", {{"N", N}, {"C", C}});
  const cuda_host::RowChunks rc = cuda_host::row_chunks(N, kMaxRowChunks);
  Scratch partial(static_cast<size_t>(rc.chunks * C) * sizeof(float), what);
  const unsigned col_blocks = static_cast<unsigned>((C + kElementwiseThreads - 1) / kElementwiseThreads);
  rmsnorm_dw_partial_kernel<<<dim3(col_blocks, static_cast<unsigned>(rc.chunks)), kElementwiseThreads, 0, st()>>>(
      partial.as<float>(), dout, x, rstd, N, C, rc.rows_per_chunk);
  rmsnorm_dw_final_kernel<<<col_blocks, kElementwiseThreads, 0, st()>>>(dw, partial.as<float>(), rc.chunks, C);
  rmsnorm_dx_kernel<<<static_cast<unsigned>(N), kRowThreads, 0, st()>>>(dx, dout, x, w, rstd, C);
  check_launch(what);
}

}  // namespace pg::cuda
