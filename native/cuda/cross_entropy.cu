// CUDA twin of native/cpu/cross_entropy.cpp: softmax cross-entropy and log-prob gather over rows
// of logits, a block per row (max, then the sum of exp(x - max); lse = max + log(sum)). Backward
// writes dlogits (=), which may alias logits (each element is read then written by one thread).
// Targets and ids live on the device: the kernels check them (ignore_index allowed for targets)
// and the launcher reports the first one out of range as an argument error.
#include "common.cuh"

namespace pg::cuda {

namespace {

// lse of a row of V >= 1 logits, to every thread of the block.
__device__ float row_lse(const float* row, int64_t V, float* smax, double* ssum) {
  float m = -INFINITY;
  bool nan = false;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    const float v = row[i];
    nan |= v != v;
    m = fmaxf(m, v);
  }
  m = block_max(m, smax);
  const float any_nan = block_max(nan ? 1.0f : 0.0f, smax);
  if (any_nan > 0.0f) return NAN;
  if (m == INFINITY || m == -INFINITY) return m;
  double s = 0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) s += static_cast<double>(expf(row[i] - m));
  s = block_sum(s, ssum);
  return static_cast<float>(static_cast<double>(m) + log(s));
}

// mode 0: cross-entropy (loss = lse - x[t], ignore_index rows 0); mode 1: log-prob (out = x[t] - lse).
__global__ void __launch_bounds__(kRowThreads) ce_forward_kernel(float* out, float* lse, const float* logits,
                                                                 const int32_t* targets, int64_t V, int32_t ignore,
                                                                 bool logprob, unsigned long long* bad) {
  __shared__ float smax[32];
  __shared__ double ssum[32];
  const int64_t n = blockIdx.x;
  const int32_t t = targets[n];
  if (!logprob && t == ignore) {
    if (threadIdx.x == 0) out[n] = 0.0f, lse[n] = 0.0f;
    return;
  }
  if (t < 0 || t >= V) {  // uniform across the block: no thread reaches the reductions
    if (threadIdx.x == 0) report_bad(bad, n), out[n] = 0.0f, lse[n] = 0.0f;
    return;
  }
  const float* row = logits + n * V;
  const float l = row_lse(row, V, smax, ssum);
  if (threadIdx.x == 0) {
    lse[n] = l;
    out[n] = logprob ? row[t] - l : l - row[t];
  }
}

// cross-entropy: dlogits = dloss (softmax - onehot); log-prob: dlogits = dout (onehot - softmax).
__global__ void __launch_bounds__(kRowThreads) ce_backward_kernel(float* dlogits, const float* dscale,
                                                                  const float* logits, const float* lse,
                                                                  const int32_t* targets, int64_t V, int32_t ignore,
                                                                  bool logprob, unsigned long long* bad) {
  const int64_t n = blockIdx.x;
  const int32_t t = targets[n];
  float* out = dlogits + n * V;
  const float* row = logits + n * V;
  const bool ignored = !logprob && t == ignore;
  const bool invalid = !ignored && (t < 0 || t >= V);
  if (invalid && threadIdx.x == 0) report_bad(bad, n);
  if (ignored || invalid) {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) out[i] = 0.0f;
    return;
  }
  const float g = dscale[n], l = lse[n];
  const float scale = logprob ? -g : g;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    float d = scale * expf(row[i] - l);
    if (i == t) d -= scale;
    out[i] = d;
  }
}

void target_error(IndexCheck& check, const int32_t* targets, int64_t V, bool logprob, int32_t ignore) {
  const int64_t bad = check.first_bad();
  if (bad < 0) return;
  throw Error(std::string(logprob ? "id " : "target ") + std::to_string(check.value_at(targets, bad)) +
                  " at position " + std::to_string(bad) + " is outside [0, V = " + std::to_string(V) + ")" +
                  (logprob ? std::string() : " and is not ignore_index " + std::to_string(ignore)),
              true);
}

void forward(const char* name, float* out, float* lse, const float* logits, const int32_t* targets, int64_t N,
             int64_t V, int32_t ignore, bool logprob) {
  if (N <= 0) return;
  const std::string what = describe(name, {{"N", N}, {"V", V}});
  IndexCheck check(what);
  ce_forward_kernel<<<static_cast<unsigned>(N), kRowThreads, 0, st()>>>(out, lse, logits, targets, V, ignore, logprob,
                                                                        check.flag());
  check_launch(what);
  target_error(check, targets, V, logprob, ignore);
}

void backward(const char* name, float* dlogits, const float* dscale, const float* logits, const float* lse,
              const int32_t* targets, int64_t N, int64_t V, int32_t ignore, bool logprob) {
  if (N <= 0 || V <= 0) return;
  const std::string what = describe(name, {{"N", N}, {"V", V}});
  IndexCheck check(what);
  ce_backward_kernel<<<static_cast<unsigned>(N), kRowThreads, 0, st()>>>(dlogits, dscale, logits, lse, targets, V,
                                                                         ignore, logprob, check.flag());
  check_launch(what);
  target_error(check, targets, V, logprob, ignore);
}

}  // namespace

void cross_entropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                           int32_t ignore_index) {
  forward("cross_entropy_forward", loss, lse, logits, targets, N, V, ignore_index, false);
}

void cross_entropy_backward(float* dlogits, const float* dloss, const float* logits, const float* lse,
                            const int32_t* targets, int64_t N, int64_t V, int32_t ignore_index) {
  backward("cross_entropy_backward", dlogits, dloss, logits, lse, targets, N, V, ignore_index, false);
}

void logprob_forward(float* out, float* lse, const float* logits, const int32_t* ids, int64_t N, int64_t V) {
  forward("logprob_forward", out, lse, logits, ids, N, V, 0, true);
}

void logprob_backward(float* dlogits, const float* dout, const float* logits, const float* lse, const int32_t* ids,
                      int64_t N, int64_t V) {
  backward("logprob_backward", dlogits, dout, logits, lse, ids, N, V, 0, true);
}

}  // namespace pg::cuda
